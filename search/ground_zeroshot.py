"""Zero-shot grounding: the exact span inside shortlisted proposals, with no trained head.

For a query embedding q and the L2-normalised frame embeddings f_t of a
contiguous region of a video (the union of its overlapping shortlisted
proposals, so a moment that straddles two windows is found whole):

1. similarity curve  c_t = <f_t, q>                 (cosine; SigLIP's shared space)
2. smoothing         moving average of ``smooth_frames`` frames (edge-padded)
3. threshold         tau = median(c) + 0.5 * (max(c) - median(c))   (half height above background)
4. best span         the contiguous run maximising sum_t (c_t - tau)  (Kadane), repeated on the
                     remaining frames for up to ``spans_per_region`` spans with a positive sum

A span's score is the mean *raw* cosine inside it (comparable across videos);
its peak cosine goes through SigLIP's own sigmoid to give ``found_prob``.
This path stays as the fallback when no trained grounding head is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SpanCandidate:
    first_frame: int  #: inclusive, index into the video's frames
    last_frame: int  #: inclusive
    mean_cos: float
    peak_cos: float


def smooth(curve: np.ndarray, width: int) -> np.ndarray:
    """Moving average (odd ``width``), edge-padded so the output has the input's length."""
    if width <= 1 or len(curve) == 0:
        return curve.astype(np.float64)
    pad = width // 2
    padded = np.pad(curve.astype(np.float64), pad, mode="edge")
    return np.convolve(padded, np.ones(width) / width, mode="valid")


def best_runs(x: np.ndarray, max_runs: int) -> list[tuple[int, int]]:
    """Up to ``max_runs`` disjoint contiguous runs with the largest positive sums of ``x``.

    Returns inclusive ``(a, b)`` index pairs, best first.

    >>> best_runs(np.array([-1., 2., 3., -9., 4., -1.]), 2)
    [(1, 2), (4, 4)]
    """
    x = x.astype(np.float64).copy()
    runs: list[tuple[int, int]] = []
    for _ in range(max_runs):
        best, best_ab, cur, start = 0.0, None, 0.0, 0
        for i, v in enumerate(x):
            if cur <= 0:
                cur, start = v, i
            else:
                cur += v
            if cur > best:
                best, best_ab = cur, (start, i)
        if best_ab is None:
            break
        runs.append(best_ab)
        x[best_ab[0] : best_ab[1] + 1] = -np.inf
    return runs


def ground_region(frame_emb: np.ndarray, query_emb: np.ndarray, first_frame: int,
                  smooth_frames: int, max_spans: int) -> list[SpanCandidate]:
    """Spans inside one contiguous region.

    Args:
        frame_emb: float32 (n, D), the region's frame embeddings (L2-normalised).
        query_emb: float32 (D,), L2-normalised.
        first_frame: index of the region's first frame within the video.
    """
    raw = frame_emb @ query_emb  # (n,)
    if len(raw) == 0:
        return []
    c = smooth(raw, smooth_frames)
    bg, peak = float(np.median(c)), float(c.max())
    if peak - bg < 1e-6:  # flat curve: nothing stands out, the whole region is the span
        runs = [(0, len(c) - 1)]
    else:
        runs = best_runs(c - (bg + 0.5 * (peak - bg)), max_spans)
    return [
        SpanCandidate(first_frame + a, first_frame + b, float(raw[a : b + 1].mean()), float(raw[a : b + 1].max()))
        for a, b in runs
    ]


def merge_ranges(ranges: np.ndarray) -> list[tuple[int, int]]:
    """Union of ``[start, end)`` frame ranges (P, 2) as sorted disjoint ranges; touching ones join.

    >>> merge_ranges(np.array([[48, 96], [0, 48], [200, 248]]))
    [(0, 96), (200, 248)]
    """
    out: list[list[int]] = []
    for s, e in sorted(map(tuple, np.asarray(ranges).tolist())):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(a, b) for a, b in out]
