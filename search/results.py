"""What a search returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from groundzero.data.spans import format_timestamp


@dataclass(frozen=True)
class Hit:
    """One moment: a span of one video.

    ``score`` ranks hits (higher is better); ``found_prob`` is the model's
    probability that the described moment is present in this span at all.
    """

    video_id: str
    uri: str
    rel_path: str
    start_sec: float
    end_sec: float
    score: float
    found_prob: float

    def to_dict(self) -> dict:
        d = asdict(self)
        d["start"] = format_timestamp(self.start_sec)
        d["end"] = format_timestamp(self.end_sec)
        return d


@dataclass(frozen=True)
class SearchResult:
    query: str
    hits: list[Hit]
    found: bool  #: False when no hit clears the "moment exists" threshold
    timings_ms: dict[str, float]  #: per stage: text, shortlist, ground, merge
    found_prob: float = 0.0  #: the best candidate's probability that the moment exists
    found_threshold: float = 0.5  #: ``found`` is ``found_prob >= found_threshold``

    def to_dict(self) -> dict:
        return {"query": self.query, "found": self.found, "found_prob": self.found_prob,
                "found_threshold": self.found_threshold, "hits": [h.to_dict() for h in self.hits],
                "timings_ms": self.timings_ms}


@dataclass(frozen=True)
class VideoGrounding:
    """One query grounded inside some proposal windows of one video.

    ``hits``: the spans found, best first. ``window_rank``: int64 (P,) indices into the
    windows that were given, best first by the head's window score (empty zero-shot).
    """

    video_seq: int
    hits: list[Hit]
    window_rank: np.ndarray
