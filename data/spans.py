"""Temporal spans: IoU, NMS and display. All spans are ``[start_sec, end_sec)``.

A sampled frame ``k`` at rate ``fps`` covers ``[k / fps, (k + 1) / fps)``, so a
run of frames ``i..j`` (inclusive) is the span ``[t_i, t_j + 1 / fps)``.
"""

from __future__ import annotations

import numpy as np


def temporal_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two sets of spans.

    Args:
        a: (N, 2) ``[start, end]``; b: (M, 2).
    Returns:
        (N, M) IoU in [0, 1]; 0 where the union is empty.

    >>> temporal_iou(np.array([[0., 10.]]), np.array([[5., 15.], [20., 30.]])).round(3).tolist()
    [[0.333, 0.0]]
    """
    a = np.asarray(a, np.float64).reshape(-1, 2)
    b = np.asarray(b, np.float64).reshape(-1, 2)
    inter = np.clip(np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(spans: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy temporal NMS: indices kept, best score first.

    A span is suppressed when its IoU with a kept, higher-scored span is
    strictly above ``iou_threshold`` (RGNet / CONE use 0.5).
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    spans = np.asarray(spans, np.float64).reshape(-1, 2)
    keep: list[int] = []
    for i in order:
        if keep and temporal_iou(spans[i : i + 1], spans[keep]).max() > iou_threshold:
            continue
        keep.append(int(i))
    return np.asarray(keep, np.int64)


def format_timestamp(sec: float) -> str:
    """Seconds -> ``hh:mm:ss.s``.

    >>> format_timestamp(3725.26)
    '01:02:05.3'
    """
    tenths = int(round(sec * 10))
    h, rem = divmod(tenths, 36000)
    m, rem = divmod(rem, 600)
    return f"{h:02d}:{m:02d}:{rem // 10:02d}.{rem % 10}"
