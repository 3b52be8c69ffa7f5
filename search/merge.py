"""Merge candidate spans from every video into one ranked list."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from groundzero.data.spans import nms
from groundzero.search.results import Hit


def merge_hits(candidates: list[Hit], top_k: int, nms_iou: float) -> list[Hit]:
    """Temporal NMS within each video, then the ``top_k`` best by score across videos.

    Exact duplicates (same video and span) keep only their best-scored copy.
    """
    per_video: dict[str, list[Hit]] = defaultdict(list)
    for h in candidates:
        per_video[h.video_id].append(h)
    kept: list[Hit] = []
    for hits in per_video.values():
        spans = np.array([[h.start_sec, h.end_sec] for h in hits])
        keep = nms(spans, np.array([h.score for h in hits]), nms_iou)
        kept.extend(hits[i] for i in keep)
    kept.sort(key=lambda h: (-h.score, h.rel_path, h.start_sec))
    return kept[:top_k]
