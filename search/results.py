"""What a search returns."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from groundzero.data.spans import format_timestamp


@dataclass(frozen=True)
class Evidence:
    """Why a hit was returned, from one channel (:data:`groundzero.data.segments.CHANNELS`).

    ``frames``: the picture matches (``text`` is "seen", ``score`` the frames' found-probability).
    ``speech`` / ``text``: a transcript line or on-screen text matched: ``text`` is the segment,
    ``snippet`` the part of it around the matches (shortened with "…"), ``marks`` the
    ``[start, end)`` character offsets of the matched words in ``snippet``, ``score`` its BM25
    score, ``coverage`` the share of the query's words it holds.
    """

    channel: str  #: frames | speech | text
    source: str  #: frames | caption | asr | ocr
    start_sec: float
    end_sec: float
    score: float
    text: str = "seen"
    snippet: str = ""
    speaker: str = ""
    coverage: float = 0.0
    marks: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Hit:
    """One moment: a span of one video.

    ``score`` ranks hits (higher is better); ``found_prob`` is the probability that the
    described moment is present in this span at all: the frames' model probability, or for a
    hit only text supports, the share of the query's words its text holds. ``channels`` are
    the channels that support it, ``evidence`` what each of them found (best first).
    """

    video_id: str
    uri: str
    rel_path: str
    start_sec: float
    end_sec: float
    score: float
    found_prob: float
    channels: tuple[str, ...] = ("frames",)
    evidence: tuple[Evidence, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["evidence"] = [asdict(e) for e in self.evidence]
        d["start"] = format_timestamp(self.start_sec)
        d["end"] = format_timestamp(self.end_sec)
        return d


@dataclass(frozen=True)
class SearchResult:
    query: str
    hits: list[Hit]
    found: bool  #: False when no hit clears the "moment exists" threshold
    timings_ms: dict[str, float]  #: per stage: text, shortlist, ground, merge
    found_prob: float = 0.0  #: the best frames candidate's probability that the moment exists
    found_threshold: float = 0.5  #: the frames channel found it when ``found_prob >= found_threshold``
    #: per channel searched: whether it found the moment (frames: ``found_prob >= found_threshold``;
    #: speech / text: a segment holds at least ``SearchConfig.text_found_coverage`` of the query's
    #: words). ``found`` is any of them.
    channels_found: dict[str, bool] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"query": self.query, "found": self.found, "found_prob": self.found_prob,
                "found_threshold": self.found_threshold, "channels_found": dict(self.channels_found),
                "hits": [h.to_dict() for h in self.hits], "timings_ms": self.timings_ms}


@dataclass(frozen=True)
class VideoGrounding:
    """One query grounded inside some proposal windows of one video.

    ``hits``: the spans found, best first. ``window_rank``: int64 (P,) indices into the
    windows that were given, best first by the head's window score (empty zero-shot).
    """

    video_seq: int
    hits: list[Hit]
    window_rank: np.ndarray


def clamp_span(start: float, end: float, duration: float | None, min_sec: float) -> tuple[float, float]:
    """``(start, end)`` moved inside a video of ``duration`` seconds, never empty: ``0 <= start < end <= duration``.

    Every grounding path (zero-shot and head) passes its spans through here. The end is cut at the
    video's end; a span that is empty once cut (it starts at or past the end: a short clip's one
    sampled frame stands for a whole ``1 / fps`` interval, or a head predicted past it) becomes the
    ``min(min_sec, duration)`` seconds up to the end. ``min_sec`` is the sampling interval,
    ``1 / fps``. When ``duration`` is 0, negative or unknown (None, NaN), the span is returned as given.

    >>> clamp_span(0.764, 0.86, 0.4, 1.0), clamp_span(7.0, 8.0, 7.5, 1.0), clamp_span(3.0, 4.0, 10.0, 1.0)
    ((0.0, 0.4), (7.0, 7.5), (3.0, 4.0))
    >>> clamp_span(9.0, 9.0, 10.0, 1.0), clamp_span(0.764, 0.86, 0.0, 1.0)
    ((9.0, 10.0), (0.764, 0.86))
    """
    start, end = float(start), float(end)
    if duration is None or math.isnan(duration) or duration <= 0:
        return start, end
    duration = float(duration)
    start = min(max(start, 0.0), duration)
    end = min(max(end, start), duration)
    if end > start:
        return start, end
    width = min(max(min_sec, 0.0), duration) or duration  # min_sec 0: the whole (short) video
    end = min(start + width, duration)
    return max(0.0, min(start, end - width)), end
