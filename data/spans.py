"""Temporal spans: IoU, NMS, display and parsing. All spans are ``[start_sec, end_sec)``.

A sampled frame ``k`` at rate ``fps`` covers ``[k / fps, (k + 1) / fps)``, so a
run of frames ``i..j`` (inclusive) is the span ``[t_i, t_j + 1 / fps)``.
"""

from __future__ import annotations

import re

import numpy as np

_CLOCK = re.compile(r"(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)")
_SECONDS = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")


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


def parse_timestamp(text: str) -> float:
    """Seconds (``75``, ``75.5``) or a clock time ``[hh:]mm:ss[.fff]`` -> seconds (the inverse of
    :func:`format_timestamp`). Raises ValueError, saying which forms are accepted, for anything else.

    >>> parse_timestamp("75.5"), parse_timestamp("01:15"), parse_timestamp("1:02:05.250")
    (75.5, 75.0, 3725.25)
    """
    s = str(text).strip()
    m = _CLOCK.fullmatch(s)
    if m is not None:
        h, mins, secs = int(m.group(1) or 0), int(m.group(2)), float(m.group(3))
        if (mins >= 60 and m.group(1) is not None) or secs >= 60:
            raise ValueError(f"{text!r} is not a time: minutes and seconds of hh:mm:ss go up to 59")
        return h * 3600 + mins * 60 + secs
    if not _SECONDS.fullmatch(s):  # no "nan", "inf", "1e3": plain decimal seconds only
        raise ValueError(f"{text!r} is not a time; write seconds (75.5) or [hh:]mm:ss[.fff] (01:15.5)")
    return float(s)
