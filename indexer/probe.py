"""Probing a video before decoding it: its duration, size, rotation, which video stream to read,
and whether it has audio and subtitle streams (for the spoken text channel).

Which stream: the largest picture (width x height after rotation) among the video streams
that are not cover art (``disposition.attached_pic``); equal sizes keep the first. The others
are named in :attr:`VideoInfo.note`, which the catalog records.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from fractions import Fraction

from groundzero.errors import DecodeError, FFmpegNotFoundError

log = logging.getLogger(__name__)

_PROBE_TIMEOUT_S = 120
REENCODE_HINT = "re-encode it (ffmpeg -i {p} -c:v libx264 fixed.mp4) or add it to --exclude"


@dataclass(frozen=True)
class VideoInfo:
    """What ffprobe says about the video stream a file is indexed by (see "Which stream")."""

    duration_sec: float  #: stream duration, else the container's; nan when neither is known
    width: int  #: display width in pixels, after rotation
    height: int  #: display height in pixels, after rotation
    rotation_deg: int  #: clockwise rotation a player applies: 0, 90, 180 or 270
    codec: str  #: ffprobe codec_name, e.g. "h264"
    avg_fps: float | None  #: average frame rate; None when unknown
    #: the stream decoded: ffprobe's stream index (as in ``-map 0:N``); None: the first video stream
    stream_index: int | None = None
    #: other video streams, not indexed (e.g. "2 video streams; indexed stream 0 (1280x720 h264),
    #: ignored stream 1 (640x360 h264)"); "" when the file holds one
    note: str = ""
    #: whether the file holds an audio stream (speech recognition needs one)
    has_audio: bool = False
    #: ffprobe's indices (as in ``-map 0:N``) of the subtitle streams, in file order
    subtitle_streams: tuple[int, ...] = ()


def require_tools() -> dict[str, str]:
    found = {name: shutil.which(name) for name in ("ffmpeg", "ffprobe")}
    missing = [name for name, p in found.items() if p is None]
    if missing:
        raise FFmpegNotFoundError(
            f"{' and '.join(missing)} not found on PATH; install ffmpeg "
            "(e.g. 'sudo apt-get install ffmpeg') and run again")
    return found  # type: ignore[return-value]


def _check_file(path: str) -> None:
    """Raise ``unreadable`` / ``empty_file`` before handing the path to ffprobe."""
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise DecodeError("unreadable", f"{path} is a directory, not a video file; "
                                            "remove it or add it to --exclude")
        if not stat.S_ISREG(st.st_mode):
            raise DecodeError("unreadable", f"{path} is not a regular file; remove it or add it to --exclude")
        if st.st_size == 0:
            raise DecodeError("empty_file", f"{path} is empty (0 bytes); "
                                            "re-copy it from its source or remove it")
        with open(path, "rb") as f:
            f.read(1)
    except FileNotFoundError:
        raise DecodeError("unreadable", f"{path} does not exist (a dangling symlink or a file removed "
                                        "during the run); fix the link or remove it") from None
    except PermissionError:
        raise DecodeError("unreadable", f"{path} cannot be read (permission denied); "
                                        "give the indexing user read access or add it to --exclude") from None
    except OSError as e:
        raise DecodeError("unreadable", f"{path} cannot be read ({e.strerror}); "
                                        "check the disk or add it to --exclude") from None


def _rotation_cw(stream: dict) -> int:
    """Clockwise display rotation from the display matrix side data, else the ``rotate`` tag."""
    for sd in stream.get("side_data_list") or []:
        if "rotation" in sd:  # av_display_rotation_get(): counter-clockwise degrees
            return round(-float(sd["rotation"]) / 90) * 90 % 360
    tag = (stream.get("tags") or {}).get("rotate")
    try:
        return round(float(tag) / 90) * 90 % 360 if tag is not None else 0
    except ValueError:
        return 0


def _duration(stream: dict, fmt: dict) -> float:
    """Seconds: the stream's duration, else its Matroska DURATION tag, else the container's."""
    tag = (stream.get("tags") or {}).get("DURATION")
    candidates = [stream.get("duration")]
    if tag and tag.count(":") == 2:
        h, m, s = tag.split(":")
        try:
            candidates.append(int(h) * 3600 + int(m) * 60 + float(s))
        except ValueError:
            pass
    candidates.append(fmt.get("duration"))
    for c in candidates:
        try:
            d = float(c)
        except (TypeError, ValueError):
            continue
        if math.isfinite(d) and d > 0:
            return d
    return math.nan


def _rate(s: str | None) -> float | None:
    try:
        r = Fraction(s)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return float(r) if r > 0 else None


def _looks_like_mp4(path: str) -> bool:
    """Whether the file starts with an ISO-BMFF box (``ftyp``, ``moov``, ...), as real mp4/mov do."""
    with open(path, "rb") as f:
        head = f.read(8)
    return head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")


def _display_size(stream: dict) -> tuple[int, int]:
    """Width and height of a stream's picture as shown (after rotation); 0 when unknown."""
    w, h = int(stream.get("width") or 0), int(stream.get("height") or 0)
    return (h, w) if _rotation_cw(stream) in (90, 270) else (w, h)


def _describe(stream: dict) -> str:
    """``stream 1 (640x360 h264)``: ffprobe's index, the displayed size, the codec."""
    w, h = _display_size(stream)
    codec = stream.get("codec_name", "unknown")
    what = f"{w}x{h} {codec}" if w > 0 and h > 0 else f"{codec}, no picture size"
    return f"stream {stream.get('index', '?')} ({what})"


def choose_stream(videos: list[dict]) -> tuple[dict, str]:
    """The video stream to index among ``videos`` (ffprobe streams, cover art already left out),
    and the note on the others ("" when there is only one): the largest picture, the first of
    equals."""
    def area(s: dict) -> int:
        w, h = _display_size(s)
        return w * h if w > 0 and h > 0 else -1

    chosen = max(videos, key=area)  # max() keeps the first of equals
    if len(videos) == 1:
        return chosen, ""
    ignored = ", ".join(f"ignored {_describe(s)}" for s in videos if s is not chosen)
    return chosen, f"{len(videos)} video streams; indexed {_describe(chosen)}, {ignored}"


def probe(path: str) -> VideoInfo:
    """Metadata of the video stream of ``path`` that is indexed (see "Which stream" above).

    Raises :class:`DecodeError` with reason ``unreadable``, ``empty_file``,
    ``not_video``, ``no_video_stream`` or ``truncated`` (an mp4 whose index is
    missing), and :class:`FFmpegNotFoundError`.
    """
    tools = require_tools()
    _check_file(path)
    cmd = [tools["ffprobe"], "-v", "error", "-show_format", "-show_streams", "-of", "json", path]
    try:
        r = subprocess.run(cmd, check=False, capture_output=True, stdin=subprocess.DEVNULL,
                           timeout=_PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DecodeError("unreadable", f"{path}: ffprobe did not answer within {_PROBE_TIMEOUT_S} s "
                                        "(a stalled network mount?); check the file or add it to --exclude"
                          ) from None
    err = r.stderr.decode(errors="replace").strip()
    if r.returncode != 0:
        if "moov atom not found" in err and _looks_like_mp4(path):
            raise DecodeError("truncated", f"{path} is truncated: its mp4 index (moov atom) is missing, "
                                           "usually an interrupted copy or recording; "
                                           "re-copy it from its source")
        if "Permission denied" in err:
            raise DecodeError("unreadable", f"{path} cannot be read (permission denied); "
                                            "give the indexing user read access or add it to --exclude")
        why = ffmpeg_error_line(err) or f"ffprobe exit status {r.returncode}"
        raise DecodeError("not_video", f"{path} is not a video ffmpeg can read ({why}); "
                                       "remove it or add it to --exclude")
    data = json.loads(r.stdout or b"{}")
    fmt, streams = data.get("format") or {}, data.get("streams") or []
    fmt_name = fmt.get("format_name", "")
    if fmt_name in ("tty", "image2") or fmt_name.endswith("_pipe"):
        kind = "text file" if fmt_name == "tty" else "still image"
        raise DecodeError("not_video", f"{path} is a {kind}, not a video; remove it or add it to --exclude")
    videos = [s for s in streams if s.get("codec_type") == "video"
              and not (s.get("disposition") or {}).get("attached_pic")]
    if not videos:
        if any(s.get("codec_type") == "audio" for s in streams):
            raise DecodeError("no_video_stream", f"{path} has audio but no video stream; "
                                                 "remove it or add it to --exclude (e.g. --exclude '*.m4a')")
        raise DecodeError("not_video", f"{path} ({fmt_name or 'unknown format'}) holds no video stream; "
                                       "remove it or add it to --exclude")
    v, note = choose_stream(videos)
    w, h = _display_size(v)
    if w <= 0 or h <= 0:
        raise DecodeError("not_video", f"{path}: its video stream ({v.get('codec_name')}) has no "
                                       "picture size; " + REENCODE_HINT.format(p=path))
    index = v.get("index")
    subtitles = tuple(int(s["index"]) for s in streams
                      if s.get("codec_type") == "subtitle" and isinstance(s.get("index"), int))
    return VideoInfo(duration_sec=_duration(v, fmt), width=w, height=h, rotation_deg=_rotation_cw(v),
                     codec=str(v.get("codec_name", "unknown")), avg_fps=_rate(v.get("avg_frame_rate")),
                     stream_index=int(index) if isinstance(index, int) else None, note=note,
                     has_audio=any(s.get("codec_type") == "audio" for s in streams),
                     subtitle_streams=subtitles)


def ffmpeg_error_line(err: str, max_chars: int = 400) -> str:
    """ffmpeg's last few distinct stderr lines, without ``[demuxer @ 0x...]`` prefixes, on one line."""
    lines: list[str] = []
    for line in reversed(err.splitlines()):
        line = re.sub(r"^\[[^]]* @ 0x[0-9a-f]+\]\s*", "", line.strip())
        if line and line not in lines:
            lines.insert(0, line)
        if len(lines) == 3:
            break
    return " | ".join(lines)[-max_chars:]
