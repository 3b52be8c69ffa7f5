"""RG-Encoder: one cross-modal encoder for proposal retrieval and grounding.

RGNet (Hannan et al., ECCV 2024) §3.2–3.3, Eqs. 1–5 and 7; RGNET_NOTES §1.1–1.8.
For one (query, proposal) pair:

    video (B, T, Dv) ─ proj ─ TemporalContext ─┐ + fractional sine positions
    text  (B, L, Dt) ─ proj ───────────────────┤ (no positions for words)
                                               ▼
        T2V cross-attention, frames query words ........... F        Eq. 1
        Gumbel sampler on F ............................... G, ℓ     Eq. 2
        sparse mask from G ................................ M        Eq. 3
        self-attention over [R; F] under M ................ R, F_c   Eq. 4
        fusion P_j = F_c,j + G_j · R ...................... P        Eq. 5
        retrieval logit r = w·R + b ....................... r        §3.3
        saliency S_c(j) = <W1 P_j, W2 R> / sqrt(d) ........ S_c      Eq. 7

P is the memory the grounding decoder reads; r ranks proposals (inter-proposal
contrastive loss, Eq. 8); S_c is the score the intra-proposal sampling loss
(Eq. 6) ranks in-moment above out-of-moment frames with.

Equations (the paper's text has them stripped; reconstructed from §3.2–3.3 and
NOTES §1.3–1.8; Q, K, V are per-head projections, d the head width):

    (1) F   = softmax(Q_F K_Wᵀ / sqrt(d)) V_W + Q_F     Q from frames (+pos), K, V from words
    (2) G_j = GumbelSoftmax_τ(w·F_j + b) ∈ {0, 1}      straight-through, τ = 0.3 (§A.1)
    (3) M(j, k) = 0 if G_k > 0.5 or j = k, else −∞     j = attention query, k = key;
                  M(·, R) = 0                          (key masking, see sampler.py)
    (4) [R; F_c] = softmax(Q Kᵀ / sqrt(d) + M) V + Q   Q = K = V from [R; F]
    (5) P_j = F_c,j + G_j · R
    (7) S_c(j) = <W1 P_j, W2 R> / sqrt(hidden)
    §3.3 r = w_r·R + b_r

Each attention is followed, as in DETR's post-norm layers, by LayerNorm, a
ReLU FFN, a residual and a second LayerNorm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from groundzero.errors import ConfigError
from groundzero.model.sampler import GumbelSampler, sparse_attention_mask
from groundzero.model.temporal import TemporalContext, fractional_position_encoding

#: Saliency given to padded frames: finite (no NaN in losses or softmaxes, safe in fp16)
#: yet far below any real score.
PADDED_SALIENCY = -1e4


@dataclass(frozen=True)
class RGEncoderConfig:
    """Sizes of the RG-Encoder. Defaults are RGNet's shipped scripts (NOTES §1.1–1.6)."""

    video_dim: int  # input frame feature width (SigLIP 2 So400m: 1152)
    text_dim: int  # input word feature width
    hidden: int = 256  # d, model width
    heads: int = 8  # attention heads in every attention layer
    ffn: int = 2048  # feed-forward width (RGNet scripts: 2048; config default 1024)
    t2v_layers: int = 2  # cross-attention layers, Eq. 1 (enc_layers)
    retrieval_layers: int = 2  # retrieval self-attention layers, Eq. 4 (same count)
    dropout: float = 0.1  # attention / FFN / temporal-context dropout
    input_dropout: float = 0.5  # dropout inside the input projections
    tau: float = 0.3  # Gumbel temperature (gumbel_eps in every script)
    temporal_context: bool = True  # dilated-conv TemporalContext after the video projection
    temporal_dilations: tuple[int, ...] = (1, 2, 4, 8)  # receptive field 61 frames with kernel 3
    temporal_kernel: int = 3
    pos_temperature: float = 10000.0  # sine temperature; RGNet uses 100 for MAD

    def __post_init__(self) -> None:
        for name in (
            "video_dim",
            "text_dim",
            "hidden",
            "heads",
            "ffn",
            "t2v_layers",
            "retrieval_layers",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"RGEncoderConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden % self.heads or self.hidden % 2:
            raise ConfigError(
                f"RGEncoderConfig.hidden={self.hidden} must be even and divisible by "
                f"heads={self.heads}"
            )
        for name in ("dropout", "input_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(
                    f"RGEncoderConfig.{name} must be in [0, 1), got {getattr(self, name)}"
                )
        if self.tau <= 0:
            raise ConfigError(f"RGEncoderConfig.tau must be > 0, got {self.tau}")

    @classmethod
    def small(cls, video_dim: int, text_dim: int) -> RGEncoderConfig:
        """Demo preset (small backbones, CPU training): hidden 128, 4 heads, FFN 512, 2 layers each;
        input dropout 0.1 (RGNet's 0.5 is for 2816-d SlowFast+CLIP features, not 128-d ones)."""
        return cls(video_dim=video_dim, text_dim=text_dim, hidden=128, heads=4, ffn=512, input_dropout=0.1)

    @classmethod
    def tiny(cls, video_dim: int = 32, text_dim: int = 32) -> RGEncoderConfig:
        """Seconds-fast preset for tests: hidden 32, 2 heads, FFN 64, 1 layer each, no dropout."""
        return cls(
            video_dim=video_dim,
            text_dim=text_dim,
            hidden=32,
            heads=2,
            ffn=64,
            t2v_layers=1,
            retrieval_layers=1,
            dropout=0.0,
            input_dropout=0.0,
        )


class InputProjection(nn.Sequential):
    """LN → Dropout → Linear → ReLU, then LN → Dropout → Linear (NOTES §1.1)."""

    def __init__(self, in_dim: int, hidden: int, dropout: float) -> None:
        super().__init__(
            nn.LayerNorm(in_dim),
            nn.Dropout(dropout),
            nn.Linear(in_dim, hidden),
            nn.ReLU(),
            nn.LayerNorm(hidden),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
        )


class FeedForward(nn.Sequential):
    """Linear → ReLU → Dropout → Linear (DETR's encoder FFN)."""

    def __init__(self, dim: int, ffn: int, dropout: float) -> None:
        super().__init__(nn.Linear(dim, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, dim))


class _PostNormAttentionLayer(nn.Module):
    """Attention + FFN, each with dropout, residual and LayerNorm after it (post-norm)."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.ffn = FeedForward(dim, ffn, dropout)

    def _residuals(self, x: Tensor, attended: Tensor) -> Tensor:
        x = self.norm1(x + self.drop1(attended))  # (B, T, C)
        return self.norm2(x + self.drop2(self.ffn(x)))


class T2VLayer(_PostNormAttentionLayer):
    """Frames query words, post-norm (RGNet §3.2 Eq. 1; QD-DETR's T2V encoder layer).

    F' = LN(F + Attn(q=F+pos, k=W, v=W)),  F'' = LN(F' + FFN(F')). Words are not updated.
    """

    def forward(self, frames: Tensor, pos: Tensor, words: Tensor, words_pad: Tensor) -> Tensor:
        """frames, pos: (B, T, C); words: (B, L, C); words_pad: (B, L) bool, True = padded.

        Returns (B, T, C).
        """
        a = self.attn(frames + pos, words, words, key_padding_mask=words_pad, need_weights=False)[0]
        return self._residuals(frames, a)


class RetrievalLayer(_PostNormAttentionLayer):
    """Post-norm self-attention layer over [R; F] under a boolean mask (RGNet §3.2 Eq. 4).

    X' = LN(X + Attn(q=k=X+pos, v=X, mask)),  X'' = LN(X' + FFN(X')).
    """

    def forward(self, x: Tensor, pos: Tensor, attn_mask: Tensor) -> Tensor:
        """x, pos: (B, 1+T, C); attn_mask: (B·heads, 1+T, 1+T) bool, True = blocked.

        Returns (B, 1+T, C).
        """
        qk = x + pos
        a = self.attn(qk, qk, x, attn_mask=attn_mask, need_weights=False)[0]
        return self._residuals(x, a)


class RetrievalAttention(nn.Module):
    """Learned retrieval token R + masked self-attention over [R; F] (RGNet §3.2 Eq. 4).

    The mask is :func:`groundzero.model.sampler.sparse_attention_mask` (key masking,
    −∞ not +1; see its docstring), expanded over heads.
    """

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float, num_layers: int) -> None:
        super().__init__()
        self.heads = heads
        self.token = nn.Parameter(torch.randn(dim))  # R, "randomly initialised learnable vector"
        self.token_pos = nn.Parameter(torch.randn(dim))  # R's learned position (global_rep_pos)
        self.layers = nn.ModuleList(
            RetrievalLayer(dim, heads, ffn, dropout) for _ in range(num_layers)
        )

    def forward(
        self, frames: Tensor, pos: Tensor, gate: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Summarise a proposal.

        Args:
            frames: (B, T, C) text-conditioned frames F.
            pos: (B, T, C) frame positions.
            gate: (B, T) sampler gate G (relevant where > 0.5).
            mask: (B, T) bool, True = valid frame.

        Returns:
            context: (B, C) R, the proposal context feature.
            content: (B, T, C) F_c, frame content features.
        """
        b = frames.shape[0]
        x = torch.cat([self.token.expand(b, 1, -1), frames], dim=1)  # (B, 1+T, C)
        p = torch.cat([self.token_pos.expand(b, 1, -1), pos], dim=1)  # (B, 1+T, C)
        attn_mask = sparse_attention_mask(gate, mask)  # (B, 1+T, 1+T)
        attn_mask = attn_mask.repeat_interleave(self.heads, dim=0)  # (B·H, 1+T, 1+T), b-major
        for layer in self.layers:
            x = layer(x, p, attn_mask)
        return x[:, 0], x[:, 1:]


class RGEncoder(nn.Module):
    """The RG-Encoder (RGNet §3.2–3.3): retrieval logit, frame saliency and grounding memory.

    Padding convention: masks are (B, ·) bool with True = valid. Every output of
    a valid frame is independent of how much padding its batch adds.
    """

    def __init__(self, cfg: RGEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden
        self.video_proj = InputProjection(cfg.video_dim, d, cfg.input_dropout)
        self.text_proj = InputProjection(cfg.text_dim, d, cfg.input_dropout)
        self.temporal = (
            TemporalContext(d, cfg.temporal_dilations, cfg.temporal_kernel, cfg.dropout)
            if cfg.temporal_context
            else None
        )
        self.t2v = nn.ModuleList(
            T2VLayer(d, cfg.heads, cfg.ffn, cfg.dropout) for _ in range(cfg.t2v_layers)
        )
        self.sampler = GumbelSampler(d, cfg.tau)
        self.retrieval = RetrievalAttention(
            d, cfg.heads, cfg.ffn, cfg.dropout, cfg.retrieval_layers
        )
        self.retrieval_head = nn.Linear(d, 1)  # §3.3 context score (saliency_proj3)
        self.saliency_frame = nn.Linear(d, d)  # W1, Eq. 7
        self.saliency_context = nn.Linear(d, d)  # W2, Eq. 7
        # DETR's Transformer._reset_parameters: Xavier on every matrix of the attention stacks.
        for stack in (self.t2v, self.retrieval.layers):
            for prm in stack.parameters():
                if prm.dim() > 1:
                    nn.init.xavier_uniform_(prm)

    def forward(
        self, video: Tensor, video_mask: Tensor, text: Tensor, text_mask: Tensor
    ) -> dict[str, Tensor]:
        """Encode B (query, proposal) pairs.

        Args:
            video: (B, T, Dv) frame features of the proposals.
            video_mask: (B, T) bool, True = valid frame (an all-padded row is allowed).
            text: (B, L, Dt) word features of the queries.
            text_mask: (B, L) bool, True = valid word; every row needs at least one.

        Returns a dict:
            "retrieval_logit": (B,) r = Linear(R), raw; σ(r) ranks proposals (§3.3).
            "saliency": (B, T) S_c(j) = <W1 P_j, W2 R>/sqrt(hidden) (Eq. 7); padded frames
                get -1e4 (finite, so losses and softmaxes never see inf or NaN).
            "sampler_logits": (B, T) ℓ before the Gumbel gate (padded entries meaningless).
            "gate": (B, T) G in {0, 1}, straight-through in training; 0 on padded frames.
            "memory": (B, T, hidden) P = F_c + G·R (Eq. 5); zero on padded frames.
            "memory_pos": (B, T, hidden) the frames' fractional sine positions (for the decoder).
            "retrieval_token": (B, hidden) R after the retrieval attention.
            "video_mask": (B, T) bool, the input mask, passed through for the decoder.
        """
        if not bool(text_mask.any(dim=1).all()):
            raise ConfigError(
                "RGEncoder: every query needs at least one valid word "
                "(a row of text_mask is all False); drop empty queries before encoding"
            )
        pad = ~video_mask
        # Zero padding first: a masked key gets weight 0, but 0 * NaN is NaN.
        video = video.masked_fill(pad[..., None], 0.0)
        text = text.masked_fill(~text_mask[..., None], 0.0)
        v = self.video_proj(video)  # (B, T, d)
        if self.temporal is not None:
            v = self.temporal(v, video_mask)
        w = self.text_proj(text)  # (B, L, d)
        pos = fractional_position_encoding(
            video_mask, self.cfg.hidden, self.cfg.pos_temperature
        ).to(v.dtype)

        f = v
        for layer in self.t2v:
            f = layer(f, pos, w, ~text_mask)  # (B, T, d)  Eq. 1
        logits, gate = self.sampler(f, video_mask)  # (B, T), (B, T)  Eq. 2
        r, content = self.retrieval(f, pos, gate, video_mask)  # (B, d), (B, T, d)  Eqs. 3-4
        memory = content + gate[..., None] * r[:, None]  # (B, T, d)  Eq. 5
        memory = memory.masked_fill(pad[..., None], 0.0)

        q = self.saliency_frame(memory)  # (B, T, d)
        k = self.saliency_context(r)  # (B, d)
        saliency = torch.einsum("btd,bd->bt", q, k) / math.sqrt(self.cfg.hidden)  # (B, T)  Eq. 7
        return {
            "retrieval_logit": self.retrieval_head(r).squeeze(-1),  # (B,)
            "saliency": saliency.masked_fill(pad, PADDED_SALIENCY),
            "sampler_logits": logits,
            "gate": gate,
            "memory": memory,
            "memory_pos": pos,
            "retrieval_token": r,
            "video_mask": video_mask,
        }
