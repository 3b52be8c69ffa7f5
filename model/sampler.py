"""RG-Encoder sampler: which frames of a proposal are relevant to the query.

RGNet §3.2 ("Sampler", Eqs. 2–3) and appendix A.1 (Eqs. 11–13); RGNET_NOTES
§1.4–1.5. The sampler scores each text-conditioned frame, draws a hard 0/1
relevance gate with a binary Gumbel-softmax (straight-through), and the gate
becomes a sparse attention mask for the retrieval attention (Eq. 4).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GumbelSampler(nn.Module):
    """Binary straight-through Gumbel gate over frames (RGNet §3.2 Eq. 2, §A.1 Eqs. 11–13).

    Per frame j, with ℓ_j = w·F_j + b (Eq. 11) and u ~ U(0, 1):

        train:  g_j    = log(u + 1e-8) − log(1 − u + 1e-8)          (logistic noise =
                                                                      difference of two Gumbels)
                soft_j = σ((ℓ_j + g_j) / τ)                           (Eq. 13, binary case)
                hard_j = 1[soft_j ≥ 0.5]                              (Eq. 12, Gumbel-max)
                G_j    = hard_j − sg(soft_j) + soft_j                 (straight-through)
        eval:   G_j    = 1[ℓ_j ≥ 0]                                   (noise-free argmax)

    G is exactly 0/1 in the forward pass and carries σ's gradient backwards, so
    the sampler learns through the fusion P_j = F_c,j + G_j·R (Eq. 5); the
    boolean attention mask built from G is not differentiable.
    τ = 0.3 in every RGNet script (the config default 0.667 is unused) and is
    the best value in the paper's Fig. 7(a).

    Unlike the released code, R is not scored here (the code scores [R; F] and
    then forces R to "selected"); R is simply always attendable in
    :func:`sparse_attention_mask`.
    """

    def __init__(self, dim: int, tau: float = 0.3) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 1)
        self.tau = tau

    def forward(self, frames: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Score and gate frames.

        Args:
            frames: (B, T, C) text-conditioned frame features F.
            mask: (B, T) bool, True = valid frame.

        Returns:
            logits: (B, T) raw ℓ (padded entries are not meaningful; mask them in losses).
            gate: (B, T) G in {0, 1} (straight-through in training); 0 on padded frames.
        """
        logits = self.proj(frames).squeeze(-1)  # (B, T)
        if self.training:
            u = torch.rand_like(logits)
            noise = torch.log(u + 1e-8) - torch.log(1 - u + 1e-8)  # (B, T) logistic
            soft = torch.sigmoid((logits + noise) / self.tau)
            hard = (soft >= 0.5).to(soft.dtype)
            gate = hard - soft.detach() + soft
        else:
            gate = (logits >= 0).to(logits.dtype)
        return logits, gate * mask.to(gate.dtype)


def sparse_attention_mask(gate: Tensor, valid: Tensor) -> Tensor:
    """Boolean attention mask for the retrieval attention over [R; F] (RGNet §3.2 Eq. 3).

    Code-vs-paper point 1 of RGNET_NOTES §9 (masking), decided here:

    * **−∞, not +1.** We implement the paper's sparse mask M(j, k) ∈ {0, −∞}
      as a boolean mask. The released code builds a *float* mask of 1s, which
      ``nn.MultiheadAttention`` adds to the logits: a +1 bias on every key
      except the diagonal leaves attention effectively dense (NOTES §1.5).
    * **Key masking, not query masking.** Eq. 3 is ambiguous about whether the
      relevance of the query j or of the key k decides; the code masks rows
      (queries). We mask *keys*: no query may attend to an irrelevant frame
      (G = 0) as a key, except the frame itself (diagonal). With row masking
      the retrieval token R, whose row is never masked, would still attend to
      every frame, so the sampler could not sparsify the proposal summary that
      retrieval ranks on; with key masking R aggregates only relevant frames
      and irrelevant frames cannot contaminate relevant ones. Irrelevant frames
      still *read* R, relevant frames and themselves.
    * R (index 0) is always attendable ("an attention mask containing all zeros
      for the retrieval token", §3.2); padded frames are never keys.
    * The diagonal is always open, so no row is fully blocked and the softmax
      never yields NaN — not even when every frame is irrelevant (R then
      attends to itself only).

    Args:
        gate: (B, T) G, relevant where G > 0.5 (straight-through values allowed).
        valid: (B, T) bool, True = valid frame.

    Returns:
        (B, 1 + T, 1 + T) bool, True = blocked, in ``torch.nn.MultiheadAttention``'s
        ``attn_mask`` convention: entry [b, q, k] blocks query q from key k.
        Expand to (B·heads, 1 + T, 1 + T) with ``repeat_interleave(heads, 0)``.
    """
    b, t = gate.shape
    open_key = torch.ones(b, 1 + t, dtype=torch.bool, device=gate.device)  # (B, 1+T); R open
    open_key[:, 1:] = (gate > 0.5) & valid
    blocked = ~open_key[:, None, :].expand(b, 1 + t, 1 + t)  # (B, 1+T, 1+T), same for every query
    eye = torch.eye(1 + t, dtype=torch.bool, device=gate.device)  # (1+T, 1+T)
    return blocked & ~eye
