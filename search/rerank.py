"""Re-rank shortlisted proposals with a trained grounding head, then ground inside them.

For each video among the shortlisted proposals, the head's RG-Encoder scores
those proposals against the query (σ(retrieval logit), RGNet §3.3), the decoder
and span head give spans inside them, and each span carries RGNet's proposal
score p_fg · σ(r) (see :mod:`core.model.inference`). ``found_prob`` is the head's
confidence that the moment is present in that video's best proposals. The windows of all
shortlisted videos go through the model in shared batches (:func:`~core.model.inference.ground_many`).
"""

from __future__ import annotations

import numpy as np

from core.model.grounder import GroundingModel
from core.model.inference import ground_many
from search.results import Hit


def rerank_and_ground(model: GroundingModel, words: np.ndarray, word_mask: np.ndarray, fps: float,
                      videos: list[tuple[dict, np.ndarray, np.ndarray]], top_windows: int,
                      nms_iou: float, window_score: str = "retrieval") -> list[Hit]:
    """Args:
        words: float32 (L, Dt) the query's word states; word_mask: bool (L,).
        videos: per video (catalog row, frame embeddings (T, D), shortlisted windows (P, 2)).
    """
    if not videos:
        return []
    groundings = ground_many(model, [(emb, windows) for _, emb, windows in videos], words, word_mask, fps,
                             top_windows=top_windows, nms_iou=nms_iou, window_score=window_score)
    hits: list[Hit] = []
    for (row, _, _), g in zip(videos, groundings):
        dur = float(row["duration_sec"])
        for (s, e), sc in zip(g.spans, g.scores):
            e = min(e, dur) if dur > s else e
            hits.append(Hit(video_id=row["video_id"], uri=row["uri"], rel_path=row["rel_path"],
                            start_sec=float(s), end_sec=float(e), score=float(sc), found_prob=g.found_prob))
    return hits
