"""Check candidate spans against the query with the backbone's clip embedding.

The grounding head proposes spans and scores them; on the synthetic archive the
right span is nearly always among its top five (val within-video R5@0.5 0.96)
while the first is wrong one time in four, most often a look-alike that moves
the other way. A backbone trained on two-frame clips (``train_siglip(items=)``)
can embed a whole span in the text space: its first third and its last third,

    c = normalize( (x_a + x_b) / 2 + A (x_b - x_a) ),   x_a, x_b = mean embeddings of the two thirds

(:meth:`~core.model.backbone.Backbone.embed_clips`), and the backbone's own
sigmoid turns ``cos(c, q)`` into a match probability p. Each candidate's score
becomes

    score' = score · p^w

with w the head's ``verify_weight`` (chosen on the val split by
:func:`search.evaluate.calibrate_verify_weight`; 0 leaves the head's ranking as is).
A checked hit's probability that the moment is there at all becomes the head's
``found_prob`` times p (``Searcher``, corpus-wide): on the demo model's val split
this separates queries with and without a moment far better than the head's
alone (AUC 0.87 against 0.69), and the build calibrates the "not found"
threshold on it.
Backbones without a clip term (SigLIP 2 So400m) skip this step.
"""

from __future__ import annotations

import numpy as np

from core.model.backbone import Backbone


def span_frames(spans_sec: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    """Seconds ``[start, end)`` (S, 2) -> int64 frame ranges ``[a, b)`` (S, 2), each at least one frame.

    >>> span_frames(np.array([[2.0, 5.0], [9.6, 9.7]]), 1.0, 10).tolist()
    [[2, 5], [9, 10]]
    """
    s = np.asarray(spans_sec, np.float64).reshape(-1, 2)
    a = np.clip(np.round(s[:, 0] * fps).astype(np.int64), 0, max(n_frames - 1, 0))
    b = np.clip(np.round(s[:, 1] * fps).astype(np.int64), a + 1, max(n_frames, 1))
    return np.stack([a, b], axis=1)


def clip_match(backbone: Backbone, query: np.ndarray, frames: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """The backbone's match probability of each span's clip embedding with the query.

    Args:
        query: float32 (D,) L2-normalised sentence embedding.
        frames: float32 (T, D) the video's frame embeddings (rows outside ``ranges`` unused).
        ranges: int64 (S, 2) frame ranges ``[a, b)`` with ``0 <= a < b <= T``.
    Returns:
        float64 (S,) probabilities in (0, 1).
    """
    if len(ranges) == 0:
        return np.zeros(0)
    first, last = [], []
    for a, b in np.asarray(ranges, np.int64):
        third = max(1, (b - a) // 3)
        first.append(frames[a:a + third].mean(0))
        last.append(frames[b - third:b].mean(0))
    clips = backbone.embed_clips(np.stack(first), np.stack(last))  # (S, D)
    return backbone.match_probability(clips @ np.asarray(query, np.float32))


def verified_scores(scores: np.ndarray, match: np.ndarray, weight: float) -> np.ndarray:
    """``score · p^w`` (S,): the head's scores (S,) reweighted by clip match probabilities (S,)."""
    scores = np.asarray(scores, np.float64)
    return scores if weight == 0 else scores * np.power(np.asarray(match, np.float64), weight)
