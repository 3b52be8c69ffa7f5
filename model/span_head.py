"""GroundZero stage 05: per-frame start/end head and a moment-presence head.

The span head is BERT-SQuAD style: each frame gets a start logit and an end logit,
and the answer is the valid frame pair ``i <= j`` maximising ``start[i] + end[j]``.
It sits beside RGNet's DETR decoder (:mod:`groundzero.model.decoder`) on the same fused
``memory``; the confidence head answers "is the described moment in this window
at all?", the calibrated "not found" the project card asks for.
"""

from __future__ import annotations

import torch
from torch import nn

from groundzero.model.decoder import MLP

#: logit given to padded frames: exp(-1e4) underflows to 0 in softmax, yet stays finite
PAD_LOGIT = -1e4


class SpanHead(nn.Module):
    """Per-frame start and end logits: one ``Linear(hidden -> 2)`` over the memory."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden, 2)

    def forward(self, memory: torch.Tensor, video_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        Args:
            memory: (B, T, H) fused frame features. video_mask: (B, T) bool, True = valid.
        Returns:
            ``{"start_logits": (B, T), "end_logits": (B, T)}``; padded frames are ``-1e4``.
        """
        logits = self.proj(memory)  # (B, T, 2)
        logits = logits.masked_fill(~video_mask.to(torch.bool)[..., None], PAD_LOGIT)
        start, end = logits.unbind(-1)  # (B, T) each
        return {"start_logits": start, "end_logits": end}


def _pair_scores(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    video_mask: torch.Tensor,
    max_len: int | None,
) -> torch.Tensor:
    """(B, T, T) ``start[i] + end[j]``, ``-inf`` where the pair is not a valid span.

    Valid: both frames valid, ``i <= j`` and, when ``max_len`` is set, ``j - i + 1 <= max_len``.
    """
    T = start_logits.shape[1]
    scores = start_logits[:, :, None] + end_logits[:, None, :]  # (B, T, T): [b, i, j]
    idx = torch.arange(T, device=start_logits.device)
    length = idx[None, :] - idx[:, None] + 1  # (T, T): j - i + 1
    ok = length >= 1
    if max_len is not None:
        ok = ok & (length <= max_len)
    mask = video_mask.to(torch.bool)
    ok = ok[None] & mask[:, :, None] & mask[:, None, :]  # (B, T, T)
    return scores.masked_fill(~ok, float("-inf"))


def decode_best_span(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    video_mask: torch.Tensor,
    max_len: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best valid frame span per window: ``argmax_{i <= j} start[i] + end[j]`` (BERT-SQuAD).

    Vectorised over all ``T²`` pairs (a (B, T, T) score table), no Python loop.

    Args:
        start_logits, end_logits: (B, T) per-frame logits (or log-probabilities:
            then ``score`` is the span's log-probability).
        video_mask: (B, T) bool, True = valid frame; pairs touching padding are excluded.
        max_len: longest span in frames (``j - i + 1``), or None for no limit.
    Returns:
        ``(start_idx, end_idx, score)``, each (B,); indices int64 inclusive, score float.
        A window without any valid frame gets ``(0, 0, -inf)``.

    >>> s = torch.tensor([[1., 0., 6., 0., 0.]]); e = torch.tensor([[8., 0., 0., 1., 4.]])
    >>> m = torch.ones(1, 5, dtype=torch.bool)
    >>> [t.tolist() for t in decode_best_span(s, e, m)]  # (2, 0) scores 14 but ends first
    [[2], [4], [10.0]]
    >>> [t.tolist() for t in decode_best_span(s, e, m, max_len=2)]  # (2, 4) is 3 frames
    [[0], [0], [9.0]]
    >>> m[0, 0] = False  # frame 0 is padding
    >>> [t.tolist() for t in decode_best_span(s, e, m, max_len=2)]
    [[2], [3], [7.0]]
    """
    scores = _pair_scores(start_logits, end_logits, video_mask, max_len)  # (B, T, T)
    T = scores.shape[1]
    best, flat = scores.flatten(1).max(dim=1)  # (B,), (B,)
    return flat // T, flat % T, best


def topk_spans(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    video_mask: torch.Tensor,
    k: int,
    max_len: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` best valid frame spans per window, best first (see :func:`decode_best_span`).

    Returns:
        ``(start_idx, end_idx, score)``, each (B, k). When a window has fewer than ``k``
        valid spans the tail has score ``-inf`` (indices then meaningless). ``k`` is
        capped at ``T²``.

    >>> s = torch.tensor([[1., 0., 6., 0., 0.]]); e = torch.tensor([[8., 0., 0., 1., 4.]])
    >>> st, en, sc = topk_spans(s, e, torch.ones(1, 5, dtype=torch.bool), k=3)
    >>> st.tolist(), en.tolist(), sc.tolist()
    ([[2, 0, 2]], [[4, 0, 3]], [[10.0, 9.0, 7.0]])
    """
    scores = _pair_scores(start_logits, end_logits, video_mask, max_len)  # (B, T, T)
    T = scores.shape[1]
    best, flat = scores.flatten(1).topk(min(k, T * T), dim=1)  # (B, k) each
    return flat // T, flat % T, best


class ConfidenceHead(nn.Module):
    """P(the described moment is in this window): one logit per window (card stage 05).

    Input: ``[retrieval_token ; max_t memory_t]`` (2H) -> ``MLP₂(2H -> H -> 1)``.

    Why these two: the retrieval token (RGNet §3.3) summarises the whole window and
    is trained contrastively *across* windows, so it ranks well but is not
    calibrated on its own; a masked max-pool over frames asks "does any single
    frame match?", which is the right question for moments that fill ~2 % of a
    window (a mean-pool would dilute them by the window length).
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.mlp = MLP(2 * hidden, hidden, 1, 2)

    def forward(
        self, retrieval_token: torch.Tensor, memory: torch.Tensor, video_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """
        Args:
            retrieval_token: (B, H). memory: (B, T, H). video_mask: (B, T) bool, True = valid.
        Returns:
            ``{"confidence_logit": (B,)}``; σ of it is P(moment present).
        """
        mask = video_mask.to(torch.bool)[..., None]  # (B, T, 1)
        pooled = memory.masked_fill(~mask, float("-inf")).amax(dim=1)  # (B, H)
        pooled = torch.where(mask.any(dim=1), pooled, torch.zeros_like(pooled))  # no valid frame: 0
        x = torch.cat((retrieval_token, pooled), dim=-1)  # (B, 2H)
        return {"confidence_logit": self.mlp(x).squeeze(-1)}
