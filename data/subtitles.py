"""SubRip (``.srt``) and WebVTT (``.vtt``) subtitles read into :class:`TextSegment` lists.

Each cue becomes one segment with ``source="caption"`` and confidence 1. The text is cleaned:
lines of a cue joined with a space, markup dropped (``<i>``, ``<b>``, ``<font ...>``, WebVTT
``<c.class>`` and karaoke ``<00:00:01.000>`` tags, ASS overrides such as ``{\\an8}``), HTML
entities decoded. The speaker comes from a WebVTT voice tag (``<v Roger Bingham>``) or, when the
cue starts with one, a ``NAME:`` prefix: one to three upper-case words (``JOHN:``,
``MR. SMITH:``), or ``Q:`` / ``A:`` of deposition transcripts; the prefix is removed from the
text. Mixed-case prefixes (``Note: ...``) are left alone: they are as often part of the speech.

Lenient where files in the wild differ (BOM, CRLF, hours optional, ``,`` or ``.`` before the
milliseconds, cue settings after the timing, missing blank lines, cue numbers or not), strict
where the times would be wrong: a timing line that does not parse, a cue that ends before it
starts, bytes that are not UTF-8 / UTF-16 text and a non-empty file with no cue at all raise
:class:`~groundzero.errors.SubtitleError`, naming the file and the line. Cues are returned sorted
by start time; cues with no text left are dropped.

:func:`to_vtt` writes segments back out as WebVTT (what the service's player loads as its
captions track); :func:`parse_vtt` reads that back to the same times, text and speakers. Torch-free.
"""

from __future__ import annotations

import codecs
import html
import re
from collections.abc import Iterable
from pathlib import Path

from groundzero.data.segments import TextSegment
from groundzero.errors import SubtitleError

#: ``[h:]mm:ss[.,]fff``: hours optional (WebVTT allows it; some SRT writers drop them too)
_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[,.](\d{1,3}))?"
_TIMING = re.compile(rf"^\s*({_TIME})\s*-->\s*({_TIME})(?:\s+.*)?$")
_VOICE = re.compile(r"<v(?:\.[^\s>]*)?\s+([^>]*)>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
_ASS_OVERRIDE = re.compile(r"\{\\[^}]*\}")
#: ``JOHN:``, ``MR. SMITH:``, ``DR. JANE DOE:``, ``Q:``, ``A:`` (optionally after ``>>`` or ``-``)
_SPEAKER = re.compile(r"^(?:>>\s*|-\s*)?([A-Z][A-Z'.\-]*(?: [A-Z][A-Z'.\-]*){0,2}):\s+(\S.*)$")
_VTT_SKIPPED_BLOCKS = ("NOTE", "STYLE", "REGION")


def _fail(reason: str, name: str, line: int | None, what: str) -> SubtitleError:
    where = f"{name} line {line}" if line is not None else name
    return SubtitleError(reason, f"{where}: {what}", path=name, line=line)


def decode_text(data: bytes, name: str) -> str:
    """The text of a subtitle file's bytes: UTF-8 (BOM or not) or UTF-16 with a BOM.

    Raises :class:`SubtitleError` (``undecodable``) naming the line of the first bad byte.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as e:
            raise _fail("undecodable", name, None, f"is not valid UTF-16 text ({e.reason}); "
                        "save it as UTF-8 and index again") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise _fail("undecodable", name, line,
                    f"byte 0x{data[e.start]:02x} is not UTF-8 text (another encoding, such as "
                    f"Windows-1252?); convert it, e.g. 'iconv -f WINDOWS-1252 -t UTF-8 {name} > "
                    f"fixed{Path(name).suffix}', and index again") from None


def _seconds(groups: tuple[str | None, ...], name: str, line: int, stamp: str) -> float:
    h, m, s, frac = groups
    if int(m) >= 60 or int(s) >= 60:
        raise _fail("bad_timestamp", name, line, f"timestamp {stamp!r} has minutes or seconds "
                    "of 60 or more; fix the cue's timing (hh:mm:ss,mmm)")
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + (float(f"0.{frac}") if frac else 0.0)


def _timing(text: str, name: str, line: int) -> tuple[float, float]:
    m = _TIMING.match(text)
    if m is None:
        raise _fail("bad_timestamp", name, line, f"cannot read the cue timing {text.strip()!r}; "
                    "expected 'hh:mm:ss,mmm --> hh:mm:ss,mmm' (SRT) or 'mm:ss.mmm --> mm:ss.mmm' "
                    "(WebVTT); fix the line or delete the file")
    g = m.groups()
    start = _seconds(g[1:5], name, line, g[0])
    end = _seconds(g[6:10], name, line, g[5])
    if end < start:
        raise _fail("end_before_start", name, line, f"the cue ends ({g[5]}) before it starts "
                    f"({g[0]}); fix the cue's timing or delete the file")
    return start, end


def clean_cue(lines: list[str]) -> tuple[str, str]:
    """The text and speaker of one cue's payload lines (see the module docstring)."""
    raw = " ".join(line.strip() for line in lines)
    voice = _VOICE.search(raw)
    speaker = html.unescape(voice.group(1)).strip() if voice else ""
    text = _ASS_OVERRIDE.sub("", _TAG.sub("", raw))
    text = " ".join(html.unescape(text).replace("\u200e", "").replace("\u200f", "").split())
    if not speaker:
        m = _SPEAKER.match(text)
        if m is not None:
            speaker, text = m.group(1).rstrip("."), m.group(2)
    return text, speaker


def _cues(text: str, name: str, vtt: bool) -> list[TextSegment]:
    """Cues of either format: a line with ``-->`` starts a cue, a blank line (or the next timing
    line) ends it; a cue-number (SRT) or identifier (WebVTT) line just before the timing is
    dropped; in WebVTT the header and NOTE / STYLE / REGION blocks are skipped."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cues: list[tuple[float, float, list[str]]] = []
    current: list[str] | None = None  # payload lines of the open cue
    skipping = vtt  # the WEBVTT header block runs up to the first blank line
    block_start = True  # the line follows a blank line (or the start of the file)
    content = False  # a line outside the header and NOTE / STYLE / REGION blocks was seen
    for i, line in enumerate(lines):
        number = i + 1
        if not line.strip():
            current, skipping, block_start = None, False, True
            continue
        if skipping:
            continue
        if vtt and block_start and line.split(" ", 1)[0].split("\t", 1)[0] in _VTT_SKIPPED_BLOCKS:
            skipping, block_start = True, False
            continue
        block_start, content = False, True
        if "-->" in line:
            start, end = _timing(line, name, number)
            if current and current[-1].strip().isdigit():
                current.pop()  # this cue's number, run on from the last cue (no blank line)
            current = []
            cues.append((start, end, current))
        elif current is not None:
            current.append(line)
        # else: a cue number or identifier before its timing line, or stray text: not a cue
    if not cues:  # a WebVTT file of its header (and notes) alone is valid, and empty
        if content:
            raise _fail("no_cues", name, None, "holds text but not a single cue (no "
                        "'start --> end' timing line); is it a subtitle file? fix or delete it")
        return []
    segments = []
    for start, end, payload in cues:
        cue_text, speaker = clean_cue(payload)
        if cue_text:
            segments.append(TextSegment(start_sec=start, end_sec=end, text=cue_text,
                                        source="caption", speaker=speaker))
    segments.sort(key=lambda s: (s.start_sec, s.end_sec))
    return segments


def parse_srt(text: str, name: str = "<srt>") -> list[TextSegment]:
    """Segments of SubRip text; ``name`` (the file) is used in error messages."""
    return _cues(text.lstrip("\ufeff"), name, vtt=False)


def parse_vtt(text: str, name: str = "<vtt>") -> list[TextSegment]:
    """Segments of WebVTT text (must start with ``WEBVTT``); ``name`` is used in error messages."""
    text = text.lstrip("\ufeff")
    if not text.startswith("WEBVTT"):
        raise _fail("no_cues", name, 1, "a WebVTT file must start with 'WEBVTT'; add that line "
                    "or rename it to .srt if it is SubRip")
    return _cues(text, name, vtt=True)


def parse_subtitles(text: str, name: str = "<subtitles>") -> list[TextSegment]:
    """Segments of SRT or WebVTT text, told apart by the ``WEBVTT`` header."""
    text = text.lstrip("\ufeff")
    return parse_vtt(text, name) if text.startswith("WEBVTT") else parse_srt(text, name)


def read_subtitles(path: str | Path) -> list[TextSegment]:
    """Segments of the ``.srt`` / ``.vtt`` file at ``path`` (format by content, not extension).

    Raises :class:`SubtitleError`; ``OSError`` when the file cannot be read.
    """
    name = str(path)
    return parse_subtitles(decode_text(Path(path).read_bytes(), name), name)


def format_vtt_time(sec: float) -> str:
    """Seconds as a WebVTT timestamp, ``hh:mm:ss.ttt`` (rounded to the millisecond).

    >>> format_vtt_time(0), format_vtt_time(3.5), format_vtt_time(3723.0456)
    ('00:00:00.000', '00:00:03.500', '01:02:03.046')
    """
    ms = max(0, round(sec * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def _vtt_escape(text: str) -> str:
    # `&` first; `<` would open a tag; `>` escaped too, so no payload line ever holds "-->" (which
    # would read as a cue timing) and a speaker name cannot close its <v ...> tag early
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(segments: Iterable[TextSegment]) -> str:
    """A WebVTT file of ``segments``, one cue each, sorted by start time; ``"WEBVTT\n"`` alone when none.

    The speaker becomes a voice tag (``<v Q>``); ``&``, ``<`` and ``>`` in text and speaker are
    escaped as character references. A segment's line breaks are kept as cue lines (blank ones
    dropped: a blank line would end the cue). A cue lasts at least 1 ms: WebVTT wants its end
    after its start. Segments whose text is blank are left out.

    >>> print(to_vtt([TextSegment(1.0, 3.5, "I hand you exhibit <12> & 13", "caption", speaker="Q")]), end="")
    WEBVTT
    <BLANKLINE>
    1
    00:00:01.000 --> 00:00:03.500
    <v Q>I hand you exhibit &lt;12&gt; &amp; 13
    """
    out = ["WEBVTT", ""]
    n = 0
    for seg in sorted(segments, key=lambda s: (s.start_sec, s.end_sec)):
        lines = [" ".join(line.split()) for line in seg.text.splitlines()]
        lines = [_vtt_escape(line) for line in lines if line]
        if not lines:
            continue
        n += 1
        start_ms = max(0, round(seg.start_sec * 1000))
        end_ms = max(round(seg.end_sec * 1000), start_ms + 1)
        speaker = " ".join(seg.speaker.split())
        if speaker:
            lines[0] = f"<v {_vtt_escape(speaker)}>{lines[0]}"
        out += [str(n), f"{format_vtt_time(start_ms / 1000)} --> {format_vtt_time(end_ms / 1000)}", *lines, ""]
    return "\n".join(out[:-1] if n else out[:1]) + "\n"
