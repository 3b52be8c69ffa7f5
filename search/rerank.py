"""Re-rank proposal windows with a trained grounding head, then ground inside them.

For each video, the head's RG-Encoder scores the given windows against the query
(σ(retrieval logit), RGNet §3.3), the decoder and span head give spans inside the best
ones, and each span carries RGNet's proposal score p_fg · σ(r) (see
:mod:`groundzero.model.inference`). ``found_prob`` is the head's confidence that the
moment is present in that video's best windows. The windows of all videos go through the
model in shared batches (:func:`~groundzero.model.inference.ground_many`).
"""

from __future__ import annotations

import numpy as np

from groundzero.model.grounder import GroundingModel
from groundzero.model.inference import Grounding, ground_many
from groundzero.search.results import Hit, clamp_span


def rerank_and_ground(model: GroundingModel, words: np.ndarray, word_mask: np.ndarray, fps: float,
                      videos: list[tuple[dict, np.ndarray, np.ndarray]], top_windows: int,
                      nms_iou: float, window_score: str = "retrieval") -> list[tuple[list[Hit], Grounding]]:
    """Args:
        words: float32 (L, Dt) the query's word states; word_mask: bool (L,).
        videos: per video (catalog row, frame embeddings (T, D), windows (P, 2)).
    Returns:
        per video, in order: its hits (best first, each span inside the video's duration:
        :func:`~groundzero.search.results.clamp_span`) and
        the head's :class:`~groundzero.model.inference.Grounding`.
    """
    if not videos:
        return []
    groundings = ground_many(model, [(emb, windows) for _, emb, windows in videos], words, word_mask, fps,
                             top_windows=top_windows, nms_iou=nms_iou, window_score=window_score)
    out = []
    for (row, _, _), g in zip(videos, groundings):
        spans = [clamp_span(s, e, row["duration_sec"], 1.0 / fps) for s, e in g.spans]
        hits = [Hit(video_id=row["video_id"], uri=row["uri"], rel_path=row["rel_path"], start_sec=s, end_sec=e,
                    score=float(sc), found_prob=g.found_prob)
                for (s, e), sc in zip(spans, g.scores)]
        out.append((hits, g))
    return out
