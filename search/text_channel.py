"""The speech and on-screen text channels: segments that match the query, as hits.

The index's full-text file (:mod:`groundzero.store.text`: SQLite FTS5, BM25, the porter stemmer)
answers with matching segments; each becomes a :class:`~groundzero.search.results.Hit` whose
span is the segment's own (an utterance, a caption cue, the time a slide was on screen), so text
spans are snapped to those boundaries, and whose evidence is the segment with its matched words.
"""

from __future__ import annotations

from collections.abc import Mapping

from groundzero.data.segments import CHANNEL_OF_SOURCE
from groundzero.search.results import Evidence, Hit, clamp_span
from groundzero.store.text import MARK_END, MARK_START, TextHit, TextIndex


def text_channel_hits(index: TextIndex, query: str, channel: str, videos: Mapping[int, dict],
                      limit: int) -> list[Hit]:
    """Segments of ``channel`` ("speech": captions and ASR; "text": OCR) matching ``query``,
    best first (BM25), as hits of the snapshot's indexed ``videos`` (video_seq -> catalog row).

    ``found_prob`` of a text hit is its coverage: the share of the query's words the segment holds.
    """
    sources = tuple(s for s, c in CHANNEL_OF_SOURCE.items() if c == channel)
    found = index.search(query, sources=sources, video_seqs=list(videos), limit=limit)
    return [_hit(t, channel, videos[t.video_seq]) for t in found if t.video_seq in videos]


def _hit(t: TextHit, channel: str, row: dict) -> Hit:
    start, end = clamp_span(t.start_sec, t.end_sec, row.get("duration_sec"), 0.5)
    snippet, marks = split_marks(t.snippet)
    ev = Evidence(channel=channel, source=t.source, start_sec=start, end_sec=end, score=t.score, text=t.text,
                  snippet=snippet, speaker=t.speaker, coverage=t.coverage, marks=marks)
    return Hit(video_id=row["video_id"], uri=row["uri"], rel_path=row["rel_path"], start_sec=start,
               end_sec=end, score=t.score, found_prob=t.coverage, channels=(channel,), evidence=(ev,))


def split_marks(snippet: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    """A snippet with :data:`~groundzero.store.text.MARK_START` / ``MARK_END`` around its matches,
    as the plain text and the ``[start, end)`` offsets of the matches in it.

    >>> split_marks("I hand you \x02exhibit\x03 \x0212\x03")
    ('I hand you exhibit 12', ((11, 18), (19, 21)))
    """
    out: list[str] = []
    marks: list[tuple[int, int]] = []
    n, start = 0, None
    for c in snippet:
        if c == MARK_START:
            start = n
        elif c == MARK_END and start is not None:
            marks.append((start, n))
            start = None
        else:
            out.append(c)
            n += 1
    return "".join(out), tuple(marks)


def marked(text: str, marks: tuple[tuple[int, int], ...]) -> str:
    """``text`` with each ``[start, end)`` of ``marks`` between ``[`` and ``]`` (for a terminal).

    >>> marked("I hand you exhibit 12", ((11, 18), (19, 21)))
    'I hand you [exhibit] [12]'
    """
    out, pos = [], 0
    for a, b in sorted(marks):
        out += [text[pos:a], "[", text[a:b], "]"]
        pos = b
    return "".join(out + [text[pos:]])
