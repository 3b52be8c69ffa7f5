"""RGNet grounding decoder: DAB-DETR with 1-D anchors (RGNet §3.4; RGNET_NOTES §3).

The decoder reads the fused frame features of one proposal window (``memory``,
RGNet Eq. 5) and refines ``queries`` learnable anchors ``(center, width)`` into
moment spans. Text never enters the decoder: the encoder has already injected
it into every frame (RGNet §3.4).

Per layer ``l`` (notes §3, "What each layer does"):

1. ``sine = [sine(c_ref), sine(w_ref)]`` (hidden/2 dims each, c first, scale 2π,
   temperature 10000); ``query_pos = MLP₂(sine)``.
2. Conditional scaling: ``sine *= 1`` at layer 0, ``sine *= MLP₂(content)`` later.
3. Width modulation: ``sine *= σ(MLP₂(content) -> 1) / w_ref`` (the whole vector).
4. Self-attention over the queries, ``q = k = content + query_pos`` (separate
   projections), ``v = content``; post-norm.
5. Conditional cross-attention to the memory, per head ``h`` (head dim ``d = hidden/heads``):
   ``q_h = [Wqc·content + Wqp·query_pos ; Wqs·sine]_h`` (2d),
   ``k_h = [Wkc·memory + Wkp·pos ; Wkp·pos]_h`` (2d), ``v = Wv·memory`` (d),
   softmax scaled by ``1/√(2d)``, key padding mask from ``video_mask``; post-norm;
   then FFN (ReLU) and post-norm. ``keep_query_pos``: ``query_pos`` is added in
   every layer.
6. Anchor refinement: ``new_ref = σ(box_MLP₃ˡ(out) + σ⁻¹(ref))``, detached for the next
   layer; ``σ⁻¹`` clamps to ``[1e-3, 1 - 1e-3]``. As in DAB-DETR, the *undetached*
   ``new_ref`` is what layer ``l + 1``'s span head adds to, which is how the box MLPs
   get their gradient.

Output heads (separate from the box MLPs, shared across layers): class
``Linear(hidden -> 2)`` (0 = foreground, 1 = background) and span ``MLP₃`` with
``pred_span_l = σ(span_MLP(LN(out_l)) + σ⁻¹(ref_l))`` where ``ref_l`` is the anchor
*input* to layer ``l``.

Departures from the released code (each harmless to the maths, or a guard):

* Batch-first tensors throughout; attention is ``F.scaled_dot_product_attention``
  on pre-projected q/k/v plus an output projection, which is what Conditional /
  DAB-DETR's custom ``MultiheadAttention`` (no input projection, ``vdim`` = hidden,
  scaling by the 2d-wide q head) computes.
* Memory positions: the code uses ``cumsum(mask) / n · 2π`` = ``(k + 1) / n``
  (the *end* of frame ``k``); we use the frame *centre* ``(k + 0.5) / n``, the
  same units as the spans (frame ``k`` covers ``[k / n, (k + 1) / n)``). Width
  ``hidden``, temperature ``cfg.pos_temperature`` (10000; the MAD script uses 100).
* Width modulation divides by ``max(w_ref, 1e-3)`` instead of ``w_ref`` so a
  collapsed anchor cannot blow the embedding up.
* Only ``layers - 1`` box MLPs: the code builds one for the last layer too, but
  its refined anchor is never used, so it would be a parameter without gradient.
* A window with no valid frame attends to all its (padded) frames instead of
  producing NaN; its outputs are meaningless but finite.
* Initialisation: Xavier-uniform on every ≥2-D weight of the layers and box MLPs
  with zero box-MLP biases (what the code ends up with, notes §1); anchors N(0, 1)
  (``nn.Embedding`` default, as in the code); the output span MLP's last layer
  starts at zero so the first predictions are the anchors themselves (DAB-DETR
  habit; the notes do not say what RGNet's output head does).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from groundzero.errors import ConfigError

_INV_SIGMOID_EPS = 1e-3
_MIN_WIDTH = 1e-3


@dataclass(frozen=True)
class GroundingDecoderConfig:
    """Shape of the grounding decoder (RGNet defaults, notes §3).

    Attributes:
        hidden: model width; a multiple of 4 (two sine halves of sin/cos pairs) and of ``heads``.
        heads: attention heads.
        ffn: feed-forward width (2048 in every RGNet script).
        layers: decoder layers (``dec_layers`` 6).
        queries: anchors = spans predicted per window (``num_queries`` 5).
        dropout: residual, FFN and attention-weight dropout.
        pos_temperature: temperature of the frames' sine positions (10000; MAD: 100).
    """

    hidden: int = 256
    heads: int = 8
    ffn: int = 2048
    layers: int = 6
    queries: int = 5
    dropout: float = 0.1
    pos_temperature: float = 10000.0

    def __post_init__(self) -> None:
        if self.hidden <= 0 or self.hidden % 4:
            raise ConfigError(f"decoder hidden={self.hidden}: must be a positive multiple of 4")
        if self.heads <= 0 or self.hidden % self.heads:
            raise ConfigError(f"decoder heads={self.heads}: must divide hidden={self.hidden}")
        for name in ("ffn", "layers", "queries"):
            if getattr(self, name) < 1:
                raise ConfigError(f"decoder {name}={getattr(self, name)}: must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"decoder dropout={self.dropout}: must be in [0, 1)")
        if self.pos_temperature <= 0:
            raise ConfigError(f"decoder pos_temperature={self.pos_temperature}: must be > 0")

    @classmethod
    def small(cls) -> GroundingDecoderConfig:
        """Demo preset: hidden 128, 4 heads, FFN 512, 3 layers, 5 queries."""
        return cls(hidden=128, heads=4, ffn=512, layers=3, queries=5)

    @classmethod
    def tiny(cls) -> GroundingDecoderConfig:
        """Test preset: hidden 32, 2 heads, FFN 64, 2 layers, 5 queries, no dropout."""
        return cls(hidden=32, heads=2, ffn=64, layers=2, queries=5, dropout=0.0)


def inverse_sigmoid(x: torch.Tensor, eps: float = _INV_SIGMOID_EPS) -> torch.Tensor:
    """σ⁻¹ with its input clamped to ``[eps, 1 - eps]`` (DAB-DETR; notes §3 step 6).

    >>> [round(v, 2) for v in inverse_sigmoid(torch.tensor([0.5, 0.0, 1.0])).tolist()]  # ±log(999)
    [0.0, -6.91, 6.91]
    """
    x = x.clamp(0.0, 1.0)
    return torch.log(x.clamp(min=eps) / (1.0 - x).clamp(min=eps))


def sine_embed(
    x: torch.Tensor, dim: int, temperature: float, scale: float = 2 * math.pi
) -> torch.Tensor:
    """Transformer sine embedding of scalars in ``[0, 1]``.

    Channel pair ``(2i, 2i + 1)`` is ``(sin, cos)(scale · x / temperature^(2i / dim))``.

    Args:
        x: (...) positions, normalised.
        dim: even output width.
    Returns:
        (..., dim).
    """
    i = torch.arange(dim, dtype=torch.float32, device=x.device)
    freq = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / dim)  # (dim,)
    ang = x.float()[..., None] * scale / freq  # (..., dim)
    return torch.stack((ang[..., 0::2].sin(), ang[..., 1::2].cos()), dim=-1).flatten(-2).to(x.dtype)


def anchor_sine_embed(anchors: torch.Tensor, hidden: int) -> torch.Tensor:
    """Sine embedding of ``(c, w)`` anchors: hidden/2 dims each, c first (notes §3 step 1).

    Args:
        anchors: (B, Q, 2) ``cw`` in ``[0, 1]``.
    Returns:
        (B, Q, hidden).
    """
    c = sine_embed(anchors[..., 0], hidden // 2, 10000.0)  # (B, Q, hidden/2)
    w = sine_embed(anchors[..., 1], hidden // 2, 10000.0)  # (B, Q, hidden/2)
    return torch.cat((c, w), dim=-1)


def frame_position_embed(video_mask: torch.Tensor, dim: int, temperature: float) -> torch.Tensor:
    """Fractional sine positions of the frames of a window (RGNet notes §1.2, frame centres).

    Valid frame ``k`` (counting valid frames only) of ``n`` sits at ``(k + 0.5) / n``;
    positions of padded frames are irrelevant (they are masked as keys).

    Args:
        video_mask: (B, T) bool, True = valid.
    Returns:
        (B, T, dim).

    >>> m = torch.tensor([[True, True, False, False]])
    >>> pe = frame_position_embed(m, 4, 1.0)  # channel 0 = sin(2π · (k + 0.5) / 2)
    >>> [round(v, 6) for v in pe[0, :2, 0].tolist()]
    [1.0, -1.0]
    """
    valid = video_mask.to(torch.float32)
    n = valid.sum(dim=1, keepdim=True).clamp(min=1.0)  # (B, 1)
    frac = (valid.cumsum(dim=1) - 0.5).clamp(min=0.0) / n  # (B, T)
    return sine_embed(frac, dim, temperature)


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (DETR's ``MLP``)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class ProjectedAttention(nn.Module):
    """Multi-head attention on already-projected q/k/v, then an output projection.

    Conditional / DAB-DETR's ``MultiheadAttention`` without input projections: the
    caller builds q and k (possibly 2x wider than v per head) itself.
    """

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.out_proj = nn.Linear(hidden, hidden)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            q: (B, L, heads, dq). k: (B, S, heads, dq). v: (B, S, heads, dv).
            key_mask: (B, S) bool, True = may be attended; None = all.
        Returns:
            (B, L, heads * dv) after ``out_proj``.
        """
        mask = None
        if key_mask is not None:
            # a window with no valid frame would give 0/0 = NaN: let it see everything
            key_mask = key_mask | ~key_mask.any(dim=1, keepdim=True)
            mask = key_mask[:, None, None, :]  # (B, 1, 1, S)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),  # (B, heads, ·, d)
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, heads, L, dv)
        return self.out_proj(out.transpose(1, 2).flatten(2))  # (B, L, heads * dv)


class GroundingDecoderLayer(nn.Module):
    """One DAB decoder layer: self-attention, conditional cross-attention, FFN (notes §3, 4-5)."""

    def __init__(self, cfg: GroundingDecoderConfig) -> None:
        super().__init__()
        h = cfg.hidden
        self.heads = cfg.heads
        # self-attention
        self.sa_q_content = nn.Linear(h, h)
        self.sa_q_pos = nn.Linear(h, h)
        self.sa_k_content = nn.Linear(h, h)
        self.sa_k_pos = nn.Linear(h, h)
        self.sa_v = nn.Linear(h, h)
        self.self_attn = ProjectedAttention(h, cfg.heads, cfg.dropout)
        # conditional cross-attention
        self.ca_q_content = nn.Linear(h, h)
        self.ca_q_pos = nn.Linear(h, h)
        self.ca_q_sine = nn.Linear(h, h)
        self.ca_k_content = nn.Linear(h, h)
        self.ca_k_pos = nn.Linear(h, h)
        self.ca_v = nn.Linear(h, h)
        self.cross_attn = ProjectedAttention(h, cfg.heads, cfg.dropout)
        # FFN
        self.linear1 = nn.Linear(h, cfg.ffn)
        self.linear2 = nn.Linear(cfg.ffn, h)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(h), nn.LayerNorm(h), nn.LayerNorm(h)
        self.drop = nn.Dropout(cfg.dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1))  # (B, L, H) -> (B, L, heads, H/heads)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        video_mask: torch.Tensor,
        query_pos: torch.Tensor,
        query_sine: torch.Tensor,
    ) -> torch.Tensor:
        """
        Args:
            tgt: (B, Q, H) query content. memory: (B, T, H). memory_pos: (B, T, H).
            video_mask: (B, T) bool, True = valid. query_pos: (B, Q, H) = MLP(sine).
            query_sine: (B, Q, H) scaled and width-modulated anchor sine embedding.
        Returns:
            (B, Q, H) new content.
        """
        # 4. self-attention over the queries
        q = self.sa_q_content(tgt) + self.sa_q_pos(query_pos)  # (B, Q, H)
        k = self.sa_k_content(tgt) + self.sa_k_pos(query_pos)  # (B, Q, H)
        v = self.sa_v(tgt)
        tgt = self.norm1(
            tgt + self.drop(self.self_attn(self._split(q), self._split(k), self._split(v)))
        )

        # 5. conditional cross-attention: per head [content ; positional] for q and k
        k_pos = self.ca_k_pos(memory_pos)  # (B, T, H)
        q = torch.cat(
            (
                self._split(self.ca_q_content(tgt) + self.ca_q_pos(query_pos)),
                self._split(self.ca_q_sine(query_sine)),
            ),
            dim=-1,
        )  # (B, Q, heads, 2H/heads)
        k = torch.cat(
            (self._split(self.ca_k_content(memory) + k_pos), self._split(k_pos)), dim=-1
        )  # (B, T, heads, 2H/heads)
        v = self._split(self.ca_v(memory))  # (B, T, heads, H/heads)
        tgt = self.norm2(tgt + self.drop(self.cross_attn(q, k, v, key_mask=video_mask)))

        # FFN
        ffn = self.linear2(self.drop(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.drop(ffn))


class GroundingDecoder(nn.Module):
    """RGNet's grounding decoder with its class and span heads (RGNet §3.4; notes §3).

    ``forward(memory, video_mask)`` returns a dict:

    * ``"pred_logits"``: (B, Q, 2) class logits of the last layer; 0 = foreground.
    * ``"pred_spans"``: (B, Q, 2) ``cw`` spans normalised to the window, in (0, 1).
    * ``"aux_outputs"``: list of ``layers - 1`` dicts with the same two keys, one
      per earlier layer (first layer first), for the auxiliary losses.
    """

    def __init__(self, cfg: GroundingDecoderConfig) -> None:
        super().__init__()
        h = cfg.hidden
        self.cfg = cfg
        self.anchors = nn.Embedding(cfg.queries, 2)  # (c, w) before the sigmoid, N(0, 1)
        self.layers = nn.ModuleList(GroundingDecoderLayer(cfg) for _ in range(cfg.layers))
        self.query_pos_head = MLP(h, h, h, 2)  # ref_point_head
        self.query_scale = MLP(h, h, h, 2)  # cond_elewise, layers >= 1
        self.ref_width_head = MLP(h, h, 1, 2)  # modulate_t_attn
        self.box_mlps = nn.ModuleList(MLP(h, h, 2, 3) for _ in range(cfg.layers - 1))
        self.norm = nn.LayerNorm(h)
        self.class_head = nn.Linear(h, 2)
        self.span_head = MLP(h, h, 2, 3)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for module in (
            self.layers,
            self.query_pos_head,
            self.query_scale,
            self.ref_width_head,
            self.box_mlps,
        ):
            for p in module.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
        for mlp in self.box_mlps:
            nn.init.zeros_(mlp.layers[-1].bias)
        nn.init.zeros_(self.span_head.layers[-1].weight)
        nn.init.zeros_(self.span_head.layers[-1].bias)

    def _heads(self, hs: torch.Tensor, ref: torch.Tensor) -> dict[str, torch.Tensor]:
        """Class and span heads on one layer's normed output ``hs`` (B, Q, H).

        ``ref`` (B, Q, 2) is the anchor that was *input* to that layer (notes §3).
        """
        spans = torch.sigmoid(self.span_head(hs) + inverse_sigmoid(ref))  # (B, Q, 2) cw
        return {"pred_logits": self.class_head(hs), "pred_spans": spans}

    def forward(self, memory: torch.Tensor, video_mask: torch.Tensor) -> dict:
        """
        Args:
            memory: (B, T, H) fused frame features of each window (RGNet Eq. 5).
            video_mask: (B, T) bool, True = valid frame.
        Returns:
            ``{"pred_logits": (B, Q, 2), "pred_spans": (B, Q, 2) cw, "aux_outputs": [...]}``.
        """
        B, _, H = memory.shape
        video_mask = video_mask.to(torch.bool)
        memory_pos = frame_position_embed(video_mask, H, self.cfg.pos_temperature).to(
            memory.dtype
        )  # (B, T, H)
        # ref: the anchor the layer reads (detached after layer 0); ref_head: the same
        # anchor with its graph, for the span head, so box MLP l learns from layer l + 1's loss
        ref = torch.sigmoid(self.anchors.weight)[None].expand(B, -1, -1)  # (B, Q, 2) cw
        ref_head = ref
        out = memory.new_zeros(B, self.cfg.queries, H)  # (B, Q, H) content starts at zero
        per_layer = []
        for l, layer in enumerate(self.layers):
            sine = anchor_sine_embed(ref, H)  # (B, Q, H)
            query_pos = self.query_pos_head(sine)  # (B, Q, H)
            if l > 0:
                sine = sine * self.query_scale(out)  # conditional scaling (layer 0: x1)
            width = torch.sigmoid(self.ref_width_head(out))  # (B, Q, 1)
            sine = sine * (width / ref[..., 1:].clamp(min=_MIN_WIDTH))  # width modulation
            out = layer(out, memory, memory_pos, video_mask, query_pos, sine)  # (B, Q, H)
            per_layer.append(self._heads(self.norm(out), ref_head))
            if l < len(self.box_mlps):
                ref_head = torch.sigmoid(self.box_mlps[l](out) + inverse_sigmoid(ref))  # (B, Q, 2)
                ref = ref_head.detach()
        return {**per_layer[-1], "aux_outputs": per_layer[:-1]}
