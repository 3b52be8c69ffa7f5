"""The grounding model: RGNet's RG-Encoder and decoder plus GroundZero's heads.

::

    frames (B, T, Dv) ─┐
    words  (B, L, Dt) ─┴─ RGEncoder ──> retrieval_logit (B,)  -> ranks proposals (RGNet §3.3)
                                    ├─> saliency (B, T)       -> sampling loss (Eq. 6-7)
                                    └─> memory P (B, T, H) ─┬─ GroundingDecoder -> spans (B, Q, 2) + fg logits
                                                           ├─ SpanHead          -> start/end logits (B, T)
                                                           └─ ConfidenceHead    -> P(moment present) (B,)
    frames (B, T, Dv) ── ContextTokenPooler -> K query-independent context tokens (B, K, Dv)  (FAISS shortlist)

The context-token pooler sees no text, so its tokens can be computed once at
index time and searched with the query's pooled embedding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from groundzero.errors import ConfigError
from groundzero.model.context_tokens import ContextTokenPooler
from groundzero.model.decoder import GroundingDecoder, GroundingDecoderConfig
from groundzero.model.losses import LossWeights
from groundzero.model.rg_encoder import RGEncoder, RGEncoderConfig
from groundzero.model.span_head import ConfidenceHead, SpanHead


@dataclass(frozen=True)
class GroundingModelConfig:
    """Everything needed to rebuild a :class:`GroundingModel` (stored as JSON beside the weights)."""

    encoder: RGEncoderConfig
    decoder: GroundingDecoderConfig = field(default_factory=GroundingDecoderConfig)
    context_tokens: int = 6  #: K tokens per proposal for the FAISS shortlist
    context_hidden: int = 256  #: width of the pooler's adapter
    loss: LossWeights = field(default_factory=LossWeights)

    @classmethod
    def small(cls, video_dim: int, text_dim: int) -> GroundingModelConfig:
        """The demo model's head (2.6 M parameters with 128-d features; small backbones, CPU training)."""
        return cls(encoder=RGEncoderConfig.small(video_dim, text_dim), decoder=GroundingDecoderConfig.small(),
                   context_hidden=128)

    @classmethod
    def preset(cls, size: str, video_dim: int, text_dim: int) -> GroundingModelConfig:
        """``size``: "full" (RGNet's sizes), "small" (demo model) or "tiny" (tests)."""
        if size == "full":
            return cls(encoder=RGEncoderConfig(video_dim, text_dim))
        if size == "small":
            return cls.small(video_dim, text_dim)
        if size == "tiny":
            return cls.tiny(video_dim, text_dim)
        raise ConfigError(f"model size {size!r}; allowed: full, small, tiny")

    @classmethod
    def tiny(cls, video_dim: int = 32, text_dim: int = 32) -> GroundingModelConfig:
        return cls(encoder=RGEncoderConfig.tiny(video_dim, text_dim), decoder=GroundingDecoderConfig.tiny(),
                   context_tokens=4, context_hidden=32)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["encoder"]["temporal_dilations"] = list(self.encoder.temporal_dilations)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GroundingModelConfig:
        enc = dict(d["encoder"])
        enc["temporal_dilations"] = tuple(enc.get("temporal_dilations", (1, 2, 4, 8)))
        return cls(encoder=RGEncoderConfig(**enc), decoder=GroundingDecoderConfig(**d["decoder"]),
                   context_tokens=int(d["context_tokens"]), context_hidden=int(d["context_hidden"]),
                   loss=LossWeights(**d["loss"]))


class GroundingModel(nn.Module):
    def __init__(self, cfg: GroundingModelConfig) -> None:
        super().__init__()
        if cfg.encoder.hidden != cfg.decoder.hidden:
            raise ConfigError(f"encoder hidden {cfg.encoder.hidden} != decoder hidden {cfg.decoder.hidden}")
        self.cfg = cfg
        self.encoder = RGEncoder(cfg.encoder)
        self.decoder = GroundingDecoder(cfg.decoder)
        self.span_head = SpanHead(cfg.encoder.hidden)
        self.confidence_head = ConfidenceHead(cfg.encoder.hidden)
        self.context_pooler = ContextTokenPooler(cfg.encoder.video_dim, cfg.context_tokens, cfg.context_hidden)

    def forward(self, video: torch.Tensor, video_mask: torch.Tensor, text: torch.Tensor,
                text_mask: torch.Tensor) -> dict:
        """
        Args:
            video: (B, T, Dv) frame embeddings of B proposal windows; video_mask (B, T) bool, True = valid.
            text: (B, L, Dt) word states of the B queries; text_mask (B, L) bool.
        Returns:
            the encoder's dict (``retrieval_logit`` (B,), ``saliency`` (B, T), ``gate``, ``memory`` ...),
            the decoder's (``pred_logits`` (B, Q, 2), ``pred_spans`` (B, Q, 2) cw, ``aux_outputs``),
            ``start_logits`` / ``end_logits`` (B, T) and ``confidence_logit`` (B,).
        """
        enc = self.encoder(video, video_mask, text, text_mask)
        out = dict(enc)
        out.update(self.decoder(enc["memory"], video_mask))
        out.update(self.span_head(enc["memory"], video_mask))
        out.update(self.confidence_head(enc["retrieval_token"], enc["memory"], video_mask))
        return out

    def retrieval_matrix(self, video: torch.Tensor, video_mask: torch.Tensor, text: torch.Tensor,
                         text_mask: torch.Tensor) -> torch.Tensor:
        """Retrieval logits of every (query i, window j) pair: (B, B), positives on the diagonal.

        All B² pairs go through the encoder, as in RGNet's ``--winret`` training (notes §4).
        """
        B = video.shape[0]
        v = video.repeat(B, 1, 1)  # (B*B, T, Dv): window j at row i*B + j
        vm = video_mask.repeat(B, 1)
        t = text.repeat_interleave(B, dim=0)  # (B*B, L, Dt): query i at rows i*B .. i*B+B-1
        tm = text_mask.repeat_interleave(B, dim=0)
        return self.encoder(v, vm, t, tm)["retrieval_logit"].view(B, B)

    def context_tokens(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, Dv) proposal frames -> (B, K, Dv) L2-normalised query-independent tokens."""
        return self.context_pooler(frames, mask)
