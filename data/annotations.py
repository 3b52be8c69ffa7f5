"""Moment-retrieval dataset readers: QVHighlights, Charades-STA, Ego4D-NLQ, MAD.

Every reader returns a list of :class:`MomentQuery`, one per natural-language
query, with ground-truth windows in seconds. Torch-free (stdlib only), so the
evaluation and data tooling stay light.

Malformed input raises :class:`groundzero.errors.ConfigError` naming the file and,
for line-based formats (``.jsonl``, ``.txt``) and JSON syntax errors, the
line; for structural errors inside one JSON document the message gives the
JSON path instead (``videos[3].clips[0]...``), since a parsed document has no
line numbers. No reader ever lets a bare ``KeyError`` or ``JSONDecodeError``
escape.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groundzero.errors import ConfigError

FORMATS = ("qvhighlights", "charades", "ego4d", "mad")

_CHARADES_LINE = re.compile(r"^(\S+) +(\S+) +(\S+?) *##(.*)$")


@dataclass(frozen=True)
class MomentQuery:
    """One query and its ground truth.

    ``windows`` holds ``(start_sec, end_sec)`` pairs relative to the start of
    ``vid``; it is empty for "not found" queries and for test splits without
    ground truth. ``duration_sec`` is ``nan`` when the format does not give it.

    ``corpus_windows`` is the truth of a search over the whole archive: every
    ``(vid, start_sec, end_sec)`` the sentence describes, in any video. ``None``
    when the annotation does not say (real datasets annotate one video per
    query); :meth:`corpus_truth` then falls back to this video's windows.
    """

    qid: str  #: unique query id (a string even when the source uses ints)
    query: str  #: the sentence
    vid: str  #: video id as the dataset names it
    duration_sec: float  #: video duration in seconds, nan if unknown
    windows: tuple[tuple[float, float], ...]  #: ground-truth [start, end] seconds
    corpus_windows: tuple[tuple[str, float, float], ...] | None = None  #: archive-wide truth, if known

    def corpus_truth(self) -> tuple[tuple[str, float, float], ...]:
        """Archive-wide ``(vid, start_sec, end_sec)`` truth: ``corpus_windows``, else this video's windows."""
        if self.corpus_windows is not None:
            return self.corpus_windows
        return tuple((self.vid, s, e) for s, e in self.windows)


# --------------------------------------------------------------------------- helpers


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_no, object)`` for each non-blank line of a JSON-lines file.

    ``line_no`` is 1-based. Raises ConfigError (``file:line``) when a line is
    not valid JSON or not a JSON object, or when the file cannot be read.
    """
    path = Path(path)
    try:
        fh = path.open(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot open annotation file ({e.strerror})") from e
    with fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(
                    f"{path}:{line_no}: not valid JSON ({e.msg}, column {e.colno})"
                ) from e
            if not isinstance(obj, dict):
                raise ConfigError(
                    f"{path}:{line_no}: expected a JSON object, got {type(obj).__name__}"
                )
            yield line_no, obj


def load_json(path: Path) -> Any:
    """Parse a whole JSON file; syntax errors become ``ConfigError`` with file:line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot open annotation file ({e.strerror})") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}: not valid JSON ({e.msg}, column {e.colno})") from e


def json_field(obj: Any, key: str, where: str) -> Any:
    """``obj[key]``, or a ConfigError saying which field is missing where."""
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise ConfigError(f"{where}: missing field {key!r}")
    return obj[key]


def json_number(value: Any, name: str, where: str) -> float:
    """A finite float from a JSON number (or numeric string), else ConfigError."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: {name} must be a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {name} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ConfigError(f"{where}: {name} must be finite, got {value!r}")
    return out


def json_window(value: Any, where: str) -> tuple[float, float]:
    """``[start, end]`` seconds -> ``(start, end)`` with ``0 <= start <= end``."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"{where}: a window must be [start, end], got {value!r}")
    start = json_number(value[0], "window start", where)
    end = json_number(value[1], "window end", where)
    if end < start:
        raise ConfigError(f"{where}: window end {end} is before its start {start}")
    return start, end


def json_list(value: Any, name: str, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: {name} must be a list, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- QVHighlights


def read_qvhighlights(path: str | Path) -> list[MomentQuery]:
    """Read a QVHighlights ``highlight_{train,val,test}_release.jsonl`` file.

    One JSON object per line; fields used:

    - ``qid`` (int or str) -> ``qid`` as a string
    - ``query`` (str), ``vid`` (str, ``{youtube_id}_{start}_{end}``)
    - ``duration`` (seconds; optional -> nan)
    - ``relevant_windows``: ``[[start, end], ...]`` seconds; absent in the
      test split -> empty ``windows``

    - ``corpus_windows`` (GroundZero's extension, written by ``groundzero synth``;
      optional): ``[[vid, start, end], ...]``, every moment of the archive the
      query describes -> ``corpus_windows``

    ``relevant_clip_ids`` and ``saliency_scores`` (highlight detection) are ignored.

    Example line::

        {"qid": 2579, "query": "A girl cooks.", "duration": 150,
         "vid": "NUsG9BgSes0_210.0_360.0", "relevant_windows": [[82, 150]]}

    -> ``MomentQuery("2579", "A girl cooks.", "NUsG9BgSes0_210.0_360.0", 150.0, ((82.0, 150.0),))``
    """
    path = Path(path)
    return [_qvh_record(obj, f"{path}:{line_no}") for line_no, obj in iter_jsonl(path)]


def _qvh_record(obj: dict[str, Any], where: str) -> MomentQuery:
    windows = obj.get("relevant_windows") or []
    duration = obj.get("duration")
    return MomentQuery(
        qid=str(json_field(obj, "qid", where)),
        query=str(json_field(obj, "query", where)),
        vid=str(json_field(obj, "vid", where)),
        duration_sec=math.nan if duration is None else json_number(duration, "duration", where),
        windows=tuple(json_window(w, where) for w in json_list(windows, "relevant_windows", where)),
        corpus_windows=None if "corpus_windows" not in obj else tuple(
            _corpus_window(w, where) for w in json_list(obj["corpus_windows"], "corpus_windows", where)),
    )


def _corpus_window(value: Any, where: str) -> tuple[str, float, float]:
    if not isinstance(value, list) or len(value) != 3 or not isinstance(value[0], str):
        raise ConfigError(f"{where}: corpus_windows entries must be [vid, start, end], got {value!r}")
    s, e = json_window(value[1:], where)
    return value[0], s, e


# --------------------------------------------------------------------------- Charades-STA


def read_charades_sta(
    path: str | Path, durations_json: str | Path | None = None
) -> list[MomentQuery]:
    """Read a Charades-STA ``charades_sta_{train,test}.txt`` file.

    One query per line: ``VID START END##sentence`` (start/end in seconds; the
    sentence is everything after the first ``##``). Blank lines are skipped.

    ``durations_json`` is Charades' ``charades.json``:
    ``{vid: {"subset": "training"|"testing", "duration": seconds, "actions": [...]}}``;
    only ``duration`` is used. With it, ``duration_sec`` is filled and window
    ends past the video's duration are clipped to it (1,802 train / 562 test
    moments in the official files); a window starting at or after the duration
    is an error. Without it, or for a video the json lacks, ``duration_sec`` is
    nan and nothing is clipped.

    ``qid`` is ``f"{vid}_{line_no}"`` (1-based line number), unique per file.

    Example: line 1 ``AO8RW 0.0 6.9##a person is putting a book on a shelf.`` ->
    ``MomentQuery("AO8RW_1", "a person is putting a book on a shelf.", "AO8RW",
    33.67, ((0.0, 6.9),))``
    """
    path = Path(path)
    durations = read_charades_durations(durations_json) if durations_json is not None else {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ConfigError(f"{path}: cannot open annotation file ({e.strerror})") from e
    return [
        _charades_record(line, line_no, path, durations)
        for line_no, line in enumerate(lines, 1)
        if line.strip()
    ]


def read_charades_durations(path: str | Path) -> dict[str, float]:
    """``charades.json`` -> ``{vid: duration_sec}``."""
    path = Path(path)
    obj = load_json(path)
    if not isinstance(obj, dict):
        raise ConfigError(
            f"{path}: expected {{vid: {{'duration': seconds, ...}}}}, got {type(obj).__name__}"
        )
    return {
        str(vid): json_number(json_field(info, "duration", f"{path}: {vid}"), "duration", f"{path}: {vid}")
        for vid, info in obj.items()
    }


def _charades_record(
    line: str, line_no: int, path: Path, durations: dict[str, float]
) -> MomentQuery:
    where = f"{path}:{line_no}"
    m = _CHARADES_LINE.match(line.strip())
    if m is None:
        raise ConfigError(f"{where}: expected 'VID START END##sentence', got {line.strip()[:80]!r}")
    vid, start_s, end_s, sentence = m.groups()
    start, end = json_window([start_s, end_s], where)
    duration = durations.get(vid, math.nan)
    if not math.isnan(duration):
        if start >= duration:
            raise ConfigError(
                f"{where}: moment starts at {start} s, after the video's {duration} s duration"
            )
        end = min(end, duration)
    return MomentQuery(f"{vid}_{line_no}", sentence.strip(), vid, duration, ((start, end),))


# --------------------------------------------------------------------------- dispatch


def read_annotations(
    path: str | Path, fmt: str | None = None, *, durations_json: str | Path | None = None
) -> list[MomentQuery]:
    """Read any supported annotation file.

    Args:
        path: the annotation file.
        fmt: ``"qvhighlights"`` | ``"charades"`` | ``"ego4d"`` | ``"mad"``, or
            None to sniff it: ``.jsonl`` -> qvhighlights, ``.txt`` ->
            charades, ``.json`` -> ego4d (top-level ``"videos"``) or mad
            (``{id: {"movie", "sentence", ...}}``); other extensions by content.
        durations_json: Charades' ``charades.json`` (Charades-STA only).
    Raises:
        ConfigError: unknown or unrecognisable format (naming the file and the
            supported formats), or malformed content.
    """
    path = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(
            f"{path}: unknown annotation format {fmt!r}; supported: {', '.join(FORMATS)}"
        )
    if fmt is None:
        fmt = sniff_format(path)
    if durations_json is not None and fmt != "charades":
        raise ConfigError(f"{path}: durations_json applies to Charades-STA only, not {fmt!r}")
    if fmt == "qvhighlights":
        return read_qvhighlights(path)
    if fmt == "charades":
        return read_charades_sta(path, durations_json)
    from groundzero.data.long_video_annotations import (  # they build on this module
        read_ego4d_nlq,
        read_mad,
    )

    return read_ego4d_nlq(path) if fmt == "ego4d" else read_mad(path)


def sniff_format(path: str | Path) -> str:
    """Guess an annotation file's format from its extension, then its content.

    Returns one of :data:`FORMATS`; raises ConfigError when it cannot tell.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return "qvhighlights"
    if suffix == ".txt":
        return "charades"
    if suffix == ".json":
        return _sniff_json(load_json(path), path)
    return _sniff_content(path)


def _unknown(path: Path, why: str) -> ConfigError:
    return ConfigError(
        f"{path}: cannot tell the annotation format ({why}); pass fmt= one of {', '.join(FORMATS)}"
    )


def _sniff_json(obj: Any, path: Path) -> str:
    if isinstance(obj, dict) and isinstance(obj.get("videos"), list):
        return "ego4d"
    if isinstance(obj, dict) and obj:
        first = next(iter(obj.values()))
        if isinstance(first, dict) and {"movie", "sentence"} <= first.keys():
            return "mad"
    raise _unknown(path, "a JSON document that is neither Ego4D-NLQ nor MAD")


def _first_line(path: Path) -> str:
    try:
        with path.open(encoding="utf-8") as fh:
            return next((line.strip() for line in fh if line.strip()), "")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read annotation file ({e})") from e


def _sniff_content(path: Path) -> str:
    line = _first_line(path)
    if _CHARADES_LINE.match(line):
        return "charades"
    if line.startswith("{"):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            return _sniff_json(load_json(path), path)
        if isinstance(obj, dict) and "qid" in obj:
            return "qvhighlights"
        return _sniff_json(obj, path)
    raise _unknown(path, f"unrecognised extension {path.suffix!r} and content")
