"""One ranked list from several channels: reciprocal rank fusion of overlapping moments.

Each channel (:data:`groundzero.data.segments.CHANNELS`) answers a query with its own ranked
hits: the frames channel with grounded spans (scores on the model's scale), the speech and
on-screen text channels with matching segments (BM25 scores). Those scores are on scales that
cannot be compared, so the lists are fused by rank (Cormack et al., SIGIR 2009)::

    fused(m) = sum over channels c supporting m of  w_c / (k + rank_c(m))

where a *moment* ``m`` gathers the hits of different channels that overlap in time in the same
video (a transcript line said while the picture shows it), ``rank_c`` is the 1-based rank of
its best hit in channel ``c``, ``k`` = 60 (the paper's constant) and ``w_c`` a channel weight,
times ``unsure_weight`` when that hit is not a confident answer of its channel (below the
channel's own "found" threshold: a best guess). A moment two channels agree on outranks one
only a single channel saw at the same rank; a moment one channel is sure of outranks two
channels' guesses.

Spans: a moment any text channel supports spans its text hits (an utterance, and the slide shown
while it is said, edge to edge), so it starts and ends at the boundaries of utterances or slides;
otherwise it is the frames' grounded span.

"Not found" stays per channel (:attr:`groundzero.search.results.SearchResult.channels_found`):
fusion re-orders hits, it never makes a moment more likely to exist.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from groundzero.search.results import Evidence, Hit

#: the constant of reciprocal rank fusion (Cormack, Clarke & Buettcher 2009)
RRF_K = 60.0


@dataclass
class _Moment:
    hits: dict[str, tuple[int, Hit]]  #: channel -> (rank, its best hit here)

    @property
    def video_id(self) -> str:
        return next(iter(self.hits.values()))[1].video_id

    def overlaps(self, h: Hit) -> bool:
        return h.video_id == self.video_id and any(
            min(h.end_sec, o.end_sec) > max(h.start_sec, o.start_sec) for _, o in self.hits.values())


def fuse(ranked: Mapping[str, Sequence[Hit]], top_k: int, weights: Mapping[str, float] | None = None,
         k: float = RRF_K, sure: Mapping[str, float] | None = None, unsure_weight: float = 1.0) -> list[Hit]:
    """Fuse each channel's hits (best first) into ``top_k`` moments, best first.

    A hit joins the first moment (in fused order so far) of its video that it overlaps in time
    and that its channel has not already supported; else it starts a new moment. The fused hit
    carries every supporting channel (``channels``) and their evidence, best channel first.

    ``sure``: per channel, the ``found_prob`` from which its hit is a confident answer; a hit
    below it counts ``unsure_weight`` times (a channel that merely has a best guess should not
    outvote one that found the moment). Channels not in ``sure`` always count fully.
    """
    weights = weights or {}
    sure = sure or {}
    moments: list[_Moment] = []
    # visit hits rank by rank across channels, so a moment is anchored by its best hits
    depth = max((len(v) for v in ranked.values()), default=0)
    for r in range(depth):
        for channel, hits in ranked.items():
            if r >= len(hits):
                continue
            h = hits[r]
            home = next((m for m in moments if channel not in m.hits and m.overlaps(h)), None)
            if home is None:
                moments.append(_Moment({channel: (r + 1, h)}))
            else:
                home.hits[channel] = (r + 1, h)

    def score(m: _Moment) -> float:
        return sum(weights.get(c, 1.0) * (1.0 if h.found_prob >= sure.get(c, -1.0) else unsure_weight) / (k + rank)
                   for c, (rank, h) in m.hits.items())

    moments.sort(key=score, reverse=True)
    return [_fused_hit(m, score(m)) for m in moments[:top_k]]


def _fused_hit(m: _Moment, score: float) -> Hit:
    by_rank = sorted(m.hits.items(), key=lambda kv: kv[1][0])
    text = [h for c, (_, h) in by_rank if c != "frames"]
    anchor = text[0] if text else by_rank[0][1][1]
    start, end = anchor.start_sec, anchor.end_sec
    if text:  # an utterance said while a slide shows it: the moment is both, edge to edge
        start, end = min(h.start_sec for h in text), max(h.end_sec for h in text)
    evidence = tuple(e for _, (_, h) in by_rank for e in h.evidence[:1])
    return replace(anchor, start_sec=start, end_sec=end, score=score,
                   found_prob=max(h.found_prob for _, (_, h) in by_rank),
                   channels=tuple(c for c, _ in by_rank), evidence=evidence)


def with_frames_evidence(hits: Sequence[Hit]) -> list[Hit]:
    """Frames hits marked as such: channel ``frames``, evidence "seen" with their found-probability."""
    return [replace(h, channels=("frames",),
                    evidence=(Evidence("frames", "frames", h.start_sec, h.end_sec, h.found_prob),))
            for h in hits]
