"""Differentiable span conversions and temporal IoU (torch). One file, all units named.

The numpy ``temporal_iou`` / ``nms`` used at search time live in :mod:`groundzero.data.spans`;
these are their torch twins for the matcher and the losses (DETR ``util/box_ops.py``,
Moment-DETR ``span_utils.py``).

Units. Inside one proposal window a span is *normalised* to ``[0, 1]`` of the
window's valid length ``n`` (its number of unpadded frames). Frame ``k`` covers
``[k / n, (k + 1) / n)``, the convention of :mod:`groundzero.data.spans`. Two layouts:

* ``cw``: ``(center, width)``, what the decoder predicts (RGNet §3.4, notes §3).
* ``xx``: ``(start, end)``, what gIoU and the evaluation use (notes §4).

Every function takes ``(..., 2)`` or ``(N, 2)`` tensors and keeps their device and dtype.
"""

from __future__ import annotations

import torch

_EPS = 1e-12  # guards 0 / 0 for zero-length spans; far below any real overlap


def cw_to_xx(spans_cw: torch.Tensor) -> torch.Tensor:
    """``(center, width)`` -> ``(start, end)``.

    Args:
        spans_cw: (..., 2) normalised ``(c, w)``.
    Returns:
        (..., 2) ``(c - w / 2, c + w / 2)``; not clipped to ``[0, 1]``.

    >>> cw_to_xx(torch.tensor([[0.5, 0.25], [0.125, 0.5]])).tolist()
    [[0.375, 0.625], [-0.125, 0.375]]
    """
    c, w = spans_cw.unbind(-1)
    return torch.stack((c - 0.5 * w, c + 0.5 * w), dim=-1)


def xx_to_cw(spans_xx: torch.Tensor) -> torch.Tensor:
    """``(start, end)`` -> ``(center, width)``.

    Args:
        spans_xx: (..., 2) normalised ``(s, e)``.
    Returns:
        (..., 2) ``((s + e) / 2, e - s)``.

    >>> xx_to_cw(torch.tensor([[0.25, 0.75], [0.0, 1.0]])).tolist()
    [[0.5, 0.5], [0.5, 1.0]]
    """
    s, e = spans_xx.unbind(-1)
    return torch.stack((0.5 * (s + e), e - s), dim=-1)


def pairwise_temporal_iou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU of every span in ``a`` with every span in ``b``.

    Args:
        a: (N, 2) ``xx`` spans, end >= start. b: (M, 2) ``xx`` spans, same units.
    Returns:
        ``(iou, union)``, each (N, M). ``iou`` is in ``[0, 1]`` and 0 where the union
        is empty (two zero-length spans); ``union`` is in the spans' units.

    ``[0, 2]`` vs ``[1, 3]``: intersection 1, union 3, IoU 1/3.
    ``[0, 1]`` vs ``[2, 3]``: intersection 0 (clamped, not -1), union 2.

    >>> iou, union = pairwise_temporal_iou(torch.tensor([[0., 2.], [0., 1.]]),
    ...                                    torch.tensor([[1., 3.], [2., 3.]]))
    >>> [[round(3 * v) for v in row] for row in iou.tolist()], union.tolist()  # IoU in thirds
    ([[1, 0], [0, 0]], [[3.0, 3.0], [3.0, 2.0]])
    """
    len_a = a[:, 1] - a[:, 0]  # (N,)
    len_b = b[:, 1] - b[:, 0]  # (M,)
    left = torch.maximum(a[:, None, 0], b[None, :, 0])  # (N, M)
    right = torch.minimum(a[:, None, 1], b[None, :, 1])  # (N, M)
    inter = (right - left).clamp(min=0)  # (N, M)
    union = len_a[:, None] + len_b[None, :] - inter  # (N, M)
    return inter / union.clamp(min=_EPS), union


def generalized_temporal_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Generalised IoU (Rezatofighi et al. 2019) in 1-D, pairwise; RGNet §3.5 Eq. 9.

    gIoU = IoU - (enclosing - union) / enclosing, where ``enclosing`` is the length
    of the smallest span covering both. In ``[-1, 1]``; unlike IoU it still has a
    gradient when two spans do not overlap.

    Args:
        a: (N, 2) ``xx`` spans, end >= start. b: (M, 2) ``xx`` spans.
    Returns:
        (N, M) gIoU.

    ``[0, 2]`` vs ``[1, 3]``: IoU 1/3, enclosing 3 = union, so gIoU 1/3.
    ``[0, 1]`` vs ``[2, 3]``: IoU 0, union 2, enclosing 3, so gIoU -1/3.

    >>> g = generalized_temporal_iou(torch.tensor([[0., 2.], [0., 1.]]),
    ...                              torch.tensor([[1., 3.], [2., 3.]]))
    >>> [[round(3 * v) for v in row] for row in g.tolist()]  # in thirds
    [[1, 0], [0, -1]]
    """
    iou, union = pairwise_temporal_iou(a, b)  # (N, M) each
    left = torch.minimum(a[:, None, 0], b[None, :, 0])  # (N, M)
    right = torch.maximum(a[:, None, 1], b[None, :, 1])  # (N, M)
    enclosing = (right - left).clamp(min=0)  # (N, M)
    return iou - (enclosing - union) / enclosing.clamp(min=_EPS)


def frame_idx_to_xx(
    start_idx: torch.Tensor, end_idx: torch.Tensor, n_valid: torch.Tensor
) -> torch.Tensor:
    """Inclusive frame run ``start_idx..end_idx`` -> normalised ``xx`` span.

    Frame ``k`` of a window with ``n`` valid frames covers ``[k / n, (k + 1) / n)``,
    so the run is ``[start / n, (end + 1) / n]``. Used to turn the span head's
    decoded indices (:func:`groundzero.model.span_head.decode_best_span`) into spans.

    Args:
        start_idx, end_idx: (B,) int64 frame indices, start <= end.
        n_valid: (B,) number of valid frames per window (int or float).
    Returns:
        (B, 2) float ``xx`` in ``[0, 1]``.

    >>> frame_idx_to_xx(torch.tensor([2]), torch.tensor([5]), torch.tensor([8])).tolist()
    [[0.25, 0.75]]
    """
    n = n_valid.to(torch.float32)
    return torch.stack((start_idx.float() / n, (end_idx.float() + 1.0) / n), dim=-1)


def xx_to_frame_idx(
    spans_xx: torch.Tensor, n_valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised ``xx`` span -> inclusive frame run covering it (start/end CE targets).

    ``start = floor(s * n)``, ``end = ceil(e * n) - 1``, both clamped to ``[0, n - 1]``
    and ``end >= start`` (a span thinner than a frame maps to the frame holding its start).
    The inverse of :func:`frame_idx_to_xx` on frame-aligned spans.

    Args:
        spans_xx: (B, 2) normalised ``(s, e)``.
        n_valid: (B,) number of valid frames per window, >= 1.
    Returns:
        ``(start_idx, end_idx)``, each (B,) int64.

    >>> s, e = xx_to_frame_idx(torch.tensor([[0.25, 0.75], [0.3, 0.31]]), torch.tensor([8, 10]))
    >>> s.tolist(), e.tolist()
    ([2, 3], [5, 3])
    """
    n = n_valid.to(spans_xx.dtype)
    last = (n_valid - 1).to(torch.int64)
    # a hair of slack so that exact frame edges (0.75 * 8 = 6.0000001) do not spill over
    tol = 1e-4
    start = torch.floor(spans_xx[:, 0] * n + tol).to(torch.int64)
    end = torch.ceil(spans_xx[:, 1] * n - tol).to(torch.int64) - 1
    start = torch.minimum(start.clamp(min=0), last)
    end = torch.minimum(torch.maximum(end, start), last)
    return start, end
