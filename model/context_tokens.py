"""Query-independent context tokens for the FAISS shortlist.

A proposal (a window of frames) is summarised at index time, before any query
is known, into k L2-normalised tokens that live in the backbone's joint
text-image embedding space. At query time the shortlist scores a proposal by
the best of its k tokens against the query's sentence embedding, so one FAISS
inner-product search over all tokens (then a max per proposal) replaces the
zero-shot segment means. Trained with the in-batch symmetric InfoNCE of
RGNet's ``winret`` mode (RGNet §3.5 Eq. 8; RGNET_NOTES §4).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ContextTokenPooler(nn.Module):
    """k learned queries attention-pool a proposal's frames into k unit tokens.

    For learned queries q_m (m = 1…k) and frames x_t (D = backbone embed dim):

        a_{m,t} = softmax_t( <q_m, W_k LN(x_t)> / sqrt(hidden) )   over valid t
        p_m     = Σ_t a_{m,t} x_t                                  (stays in the embed space)
        c_m     = normalize( p_m + W_up ReLU(W_down p_m) )

    Values are the raw frame embeddings, so tokens start as attention-weighted
    means of frames the text tower already aligns with; the residual adapter
    (W_up zero-initialised) lets training move them off that span. The queries
    are drawn N(0, 1) so the k tokens differ (attend differently) from the start.
    """

    def __init__(self, dim: int, k: int = 4, hidden: int = 256) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(k, hidden))  # (k, h)
        self.key_norm = nn.LayerNorm(dim)
        self.key = nn.Linear(dim, hidden)
        self.down = nn.Linear(dim, hidden)
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, frames: Tensor, mask: Tensor | None = None) -> Tensor:
        """Pool frames into context tokens.

        Args:
            frames: (B, T, D) frame embeddings of B proposals.
            mask: (B, T) bool, True = valid frame; None = all valid. An all-padded
                row yields finite (meaningless) tokens, never NaN.

        Returns:
            (B, k, D) tokens with unit L2 norm.
        """
        if mask is None:
            mask = torch.ones(frames.shape[:2], dtype=torch.bool, device=frames.device)
        frames = frames.masked_fill(~mask[..., None], 0.0)
        keys = self.key(self.key_norm(frames))  # (B, T, h)
        scores = torch.einsum("kh,bth->bkt", self.queries, keys) / math.sqrt(
            keys.shape[-1]
        )  # (B, k, T)
        scores = scores.masked_fill(~mask[:, None, :], torch.finfo(scores.dtype).min)
        pooled = scores.softmax(dim=-1) @ frames  # (B, k, T) @ (B, T, D) -> (B, k, D)
        tokens = pooled + self.up(F.relu(self.down(pooled)))  # (B, k, D)
        return F.normalize(tokens, dim=-1)


def info_nce(tokens: Tensor, query: Tensor, temperature: float = 0.07) -> Tensor:
    """Symmetric in-batch InfoNCE between queries and proposals' context tokens.

    Query i's score for proposal j is the best cosine over j's k tokens,

        s_ij = max_m cos(q_i, c_{j,m}),

    and with ℓ = s / τ the loss is CLIP's symmetric cross-entropy with the
    diagonal as positives (RGNet §3.5 Eq. 8 and NOTES §4 ``winret`` mode, τ 0.07):

        L = ½ [ −(1/B) Σ_i log softmax_j(ℓ_ij)[i]  −  (1/B) Σ_j log softmax_i(ℓ_ij)[j] ].

    Negatives are the other pairs of the batch; a batch must not hold two
    queries of the same moment.

    Args:
        tokens: (B, k, D) context tokens of proposal j (normalised here again).
        query: (B, D) sentence embedding of query i, paired with proposal i.
        temperature: τ.

    Returns:
        Scalar loss.
    """
    c = F.normalize(tokens, dim=-1)
    q = F.normalize(query, dim=-1)
    sim = torch.einsum("id,jkd->ijk", q, c).amax(dim=-1) / temperature  # (B_query, B_proposal)
    target = torch.arange(sim.shape[0], device=sim.device)
    return 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.t(), target))
