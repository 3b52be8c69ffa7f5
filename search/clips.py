"""Clips: one span of an indexed video cut to a file of its own, with ffmpeg.

Two ways to cut, chosen by ``exact``:

* **stream copy** (default): packets are copied, nothing is decoded or re-encoded, so a clip of
  an hour takes seconds and loses nothing. A copy can only begin on a keyframe: the clip starts
  at the last keyframe at or before ``start_sec`` (found with ffprobe) and runs to ``end_sec``.
* **exact**: video re-encoded with libx264 (crf 18, preset fast, yuv420p so that browsers play
  it) and audio with AAC; the clip starts and ends within one frame of the span.

Either way :class:`Clip` says where the file really starts and ends, in seconds of the source:
its start, and that start plus the length of the written video stream (measured with ffprobe).

Every video stream (cover pictures aside) and every audio stream is kept; subtitles where the
container takes them (all in Matroska; text subtitles as ``mov_text`` in mp4 / mov, bitmap ones
dropped there). The container follows the output's suffix (:data:`CONTAINERS`). A clip is written
to a hidden file beside the output and renamed once whole, so a failed cut leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
import statistics
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path, PurePosixPath

from groundzero.data.spans import format_timestamp
from groundzero.errors import (
    ClipError,
    ConfigError,
    EmptyClipError,
    FFmpegNotFoundError,
    VideoNotFoundError,
)
from groundzero.search.results import Hit
from groundzero.store.s3 import S3Config, is_s3_url

log = logging.getLogger(__name__)

#: output suffix -> ffmpeg muxer
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
MIN_CLIP_SEC = 0.01  #: a shorter span holds no frame at any common rate
STDERR_LINES = 6  #: lines of ffmpeg's error output quoted in a ClipError
#: what exact mode encodes video with: near-transparent, quick, playable in any browser
EXACT_VIDEO = ["libx264", "-crf", "18", "-preset", "fast", "-pix_fmt", "yuv420p"]
_MP4_VIDEO = {"h264", "hevc", "av1", "vp9", "mpeg4", "mpeg2video", "mpeg1video", "mjpeg"}
_MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac", "mp2"}
#: codecs each container holds as they are (Matroska: all); other audio becomes AAC, other video
#: cannot be copied (the error suggests .mkv or exact)
COPYABLE = {
    "mp4": (_MP4_VIDEO, _MP4_AUDIO),
    "mov": (_MP4_VIDEO | {"prores", "dnxhd", "png", "qtrle"},
            _MP4_AUDIO | {"pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be", "pcm_f32le"}),
}
_TEXT_SUBTITLES = {"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"}
_SAFE = re.compile(r"[^0-9A-Za-z._-]+")


@dataclass(frozen=True)
class ClipRequest:
    """A span to cut, ``[start_sec, end_sec)`` in seconds from the video's start."""

    start_sec: float
    end_sec: float
    exact: bool = False  #: re-encode, frame-exact; else stream copy from the keyframe at or before start

    def validate(self, duration_sec: float | None = None, max_sec: float | None = None) -> ClipRequest:
        """This span with its end cut to ``duration_sec`` (the video's length, from the catalog).

        Raises ConfigError (``field`` start_sec or end_sec) for a span that is not a number, starts
        before 0 or at or past the end of the video, ends at or before its start, is shorter than
        :data:`MIN_CLIP_SEC`, or (``max_sec``) longer than that.
        """
        s, e = float(self.start_sec), float(self.end_sec)
        if not (math.isfinite(s) and math.isfinite(e)):
            raise ConfigError(f"start_sec and end_sec must be finite seconds, got {s} and {e}", field="start_sec")
        if s < 0:
            raise ConfigError(f"start_sec must be >= 0 s, got {s:g}", field="start_sec")
        known = duration_sec is not None and math.isfinite(duration_sec) and duration_sec > 0
        if known and s >= duration_sec:
            raise ConfigError(f"start_sec={s:g} lies at or past the end of the video ({duration_sec:.3f} s "
                              f"long); start before {duration_sec:.3f}", field="start_sec")
        if e <= s:
            raise ConfigError(f"end_sec={e:g} must be after start_sec={s:g}", field="end_sec")
        if known and e > duration_sec:
            log.info("end %.3f s cut to the video's end, %.3f s", e, duration_sec)
            e = float(duration_sec)
        if e - s < MIN_CLIP_SEC:
            raise ConfigError(f"the span {s:g}-{e:g} s is shorter than {MIN_CLIP_SEC} s and holds no frame; "
                              "widen it", field="end_sec")
        if max_sec is not None and e - s > max_sec:
            raise ConfigError(f"the span {s:g}-{e:g} s is {e - s:.1f} s long, longer than the {max_sec:g} s "
                              "a clip may be here; cut it in parts", field="end_sec")
        return ClipRequest(s, e, self.exact)


@dataclass(frozen=True)
class Clip:
    """A written clip, with where it really starts and ends in the source video."""

    path: str
    start_sec: float  #: stream copy: the keyframe at or before the start asked for; exact: that start
    end_sec: float  #: start_sec plus the written video stream's length (ffprobe)
    exact: bool
    bytes: int
    requested_start_sec: float  #: the span asked for (its end cut to the video's length)
    requested_end_sec: float

    def to_dict(self) -> dict:
        return {**asdict(self), "start": format_timestamp(self.start_sec), "end": format_timestamp(self.end_sec)}


def cut_clip(source: str, start_sec: float, end_sec: float, out_path: str | Path, exact: bool = False, *,
             duration_sec: float | None = None, max_sec: float | None = None, force: bool = False,
             timeout_sec: float | None = None, ffmpeg: str = "ffmpeg", ffprobe: str = "ffprobe") -> Clip:
    """Cut ``[start_sec, end_sec)`` of ``source`` (a local path or an http(s) URL) to ``out_path``.

    ``duration_sec``: the video's length (the catalog's), to refuse a start past it and cut the end
    to it; ``max_sec``: the longest clip allowed. The container is ``out_path``'s suffix (mp4, m4v,
    mov, mkv); an existing ``out_path`` is refused unless ``force``. Raises ConfigError for a bad span
    or output, ClipError (EmptyClipError: no frame in the span) with ffmpeg's last lines when it fails.
    """
    req = ClipRequest(start_sec, end_sec, exact).validate(duration_sec, max_sec)
    out = Path(out_path)
    fmt = output_format(out)
    if out.exists() and not force:
        raise _exists(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    info = _probe(source, ffprobe, timeout_sec)
    streams = _stream_args(info.get("streams", []), fmt, req.exact, out.suffix)
    t0 = _float(info.get("format", {}).get("start_time")) or 0.0
    # Both ways seek the input to a keyframe's own time, the one seek every demuxer does right (an
    # mpegts seek to any other time can land a GOP late); exact then decodes up to the start.
    key = _keyframe_at_or_before(source, info, req.start_sec, t0, ffprobe, timeout_sec)
    seek = req.start_sec if req.exact else key
    skip = ["-ss", _sec(req.start_sec - key)] if req.exact and req.start_sec > key else []
    flags = ["-movflags", "+faststart"] if fmt != "matroska" else []
    if not req.exact:
        flags += ["-avoid_negative_ts", "make_zero"]
    tmp = out.parent / f".{out.name}.{secrets.token_hex(4)}.part"
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-ss", _sec(key), "-i", source,
           *skip, "-t", _sec(req.end_sec - seek), *streams, "-map_metadata", "0", *flags, "-f", fmt, str(tmp)]
    try:
        r = _run(cmd, timeout_sec, f"cutting {_name(source)}")
        if r.returncode != 0 or not tmp.is_file():
            tail = _tail(r.stderr)
            raise ClipError(f"ffmpeg could not cut {req.start_sec:g}-{req.end_sec:g} s of {_name(source)} to {out}: "
                            f"{tail or 'no error output'}", stderr_tail=tail)
        length = _video_length(str(tmp), ffprobe, timeout_sec)
        if length <= 0:
            raise EmptyClipError(f"{req.start_sec:g}-{req.end_sec:g} s of {_name(source)} holds no video frame; "
                                 "widen the span")
        _publish(tmp, out, force)
    finally:
        tmp.unlink(missing_ok=True)
    start = round(seek, 6)
    return Clip(str(out), start, round(start + length, 6), req.exact, out.stat().st_size, req.start_sec,
                req.end_sec)


# -- the archive side: which file a video id names, and the clips of search hits -----------------

def find_video(index: str, video_id: str, s3: S3Config | None = None, cache_dir: str | None = None) -> dict:
    """The catalog row of an indexed video, by its id (or its path inside the archive).

    Raises VideoNotFoundError for an id the catalog lacks or a video that failed to index.
    """
    from groundzero.store.catalog import read_catalog
    from groundzero.store.queries import open_index

    layout, manifest = open_index(index, s3, cache_dir)
    rows = read_catalog(layout, manifest)
    row = next((r for r in rows if r["video_id"] == video_id), None) or \
        next((r for r in rows if r["rel_path"] == video_id), None)
    if row is None:
        raise VideoNotFoundError(f"no video {video_id!r} in the index {index}; take a video_id from "
                                 "`groundzero search --json`, or a path from `groundzero catalog list`")
    if row["status"] != "indexed":
        raise VideoNotFoundError(f"{row['rel_path']} ({row['video_id']}) could not be indexed "
                                 f"({row['reason']}: {row['error']}); there is nothing to cut")
    return row


def video_source(uri: str, s3: S3Config | None = None, expires_sec: int = 3600) -> str:
    """What ffmpeg reads for a catalog ``uri``: the local file, or a presigned HTTPS link to an S3 object."""
    if is_s3_url(uri):
        from groundzero.store.s3 import make_client, presigned_url, s3_error

        try:
            return presigned_url(uri, expires_sec, client=make_client(s3 or S3Config()))
        except Exception as e:  # no credentials, a bad endpoint
            raise s3_error(e, "making a link to", uri, s3) from e
    if not os.path.isfile(uri) or not os.access(uri, os.R_OK):
        raise VideoNotFoundError(f"the file of this video is no longer readable at {uri}; restore it, or re-run "
                                 "groundzero index over its archive")
    return uri


def cut_video(index: str, video_id: str, start_sec: float, end_sec: float, out_path: str | Path,
              exact: bool = False, *, force: bool = False, s3: S3Config | None = None,
              cache_dir: str | None = None) -> tuple[Clip, dict]:
    """:func:`cut_clip` of an indexed video, found by id; returns the clip and the video's catalog row."""
    row = find_video(index, video_id, s3, cache_dir)
    clip = cut_clip(video_source(row["uri"], s3), start_sec, end_sec, out_path, exact,
                    duration_sec=float(row["duration_sec"]), force=force)
    return clip, row


def clip_suffix(uri: str) -> str:
    """The suffix a clip of ``uri`` gets: its own when mp4 / mov / mkv, else .mkv (which holds any codec)."""
    suffix = PurePosixPath(uri).suffix.lower()
    return ".mp4" if suffix == ".m4v" else suffix if suffix in CONTAINERS else ".mkv"


def clip_name(rel_path: str, start_sec: float, end_sec: float, suffix: str, rank: int | None = None,
              rank_digits: int = 2) -> str:
    """A file name for a clip that sorts by rank, then says what it holds.

    >>> clip_name("court/day 1.mp4", 65.3, 75.0, ".mp4", rank=1)
    '01_day_1_00h01m05.3s-00h01m15.0s.mp4'
    """
    stem = _SAFE.sub("_", PurePosixPath(rel_path).stem).strip("._")[:60] or "clip"
    span = "-".join(_clock(t) for t in (start_sec, end_sec))
    return f"{'' if rank is None else f'{rank:0{rank_digits}d}_'}{stem}_{span}{suffix}"


def export_hits(hits: Sequence[Hit], out_dir: str | Path, durations: Mapping[str, float], exact: bool = False,
                s3: S3Config | None = None) -> list[Clip]:
    """Each hit's span cut to ``out_dir`` (created), one file per hit named by :func:`clip_name`.

    ``durations``: video_id -> seconds (the catalog's). Existing files are never overwritten: all the
    names are checked before the first cut.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file, not a folder; export the clips to a folder")
    digits = max(2, len(str(len(hits))))
    paths = [out / clip_name(h.rel_path, h.start_sec, h.end_sec, clip_suffix(h.uri), i, digits)
             for i, h in enumerate(hits, 1)]
    taken = [p for p in paths if p.exists()]
    if taken:
        raise ConfigError(f"{taken[0]} already exists ({len(taken)} of the clips' names are taken); remove them, "
                          "or export to another folder")
    out.mkdir(parents=True, exist_ok=True)
    return [cut_clip(video_source(h.uri, s3), h.start_sec, h.end_sec, p, exact,
                     duration_sec=durations.get(h.video_id)) for h, p in zip(hits, paths)]


def output_format(out: Path) -> str:
    """The ffmpeg muxer of an output path's suffix; ConfigError (field out_path) for any other."""
    fmt = CONTAINERS.get(out.suffix.lower())
    if fmt is None:
        raise ConfigError(f"out_path {out} must end in {', '.join(CONTAINERS)} (the container is taken "
                          "from the suffix)", field="out_path")
    return fmt


# -- ffmpeg and ffprobe -----------------------------------------------------------------------------

def _stream_args(streams: list[dict], fmt: str, exact: bool, suffix: str) -> list[str]:
    """``-map`` and codec options: every video and audio stream, and the subtitles ``fmt`` takes."""
    video = [s for s in streams if s.get("codec_type") == "video"
             and not (s.get("disposition") or {}).get("attached_pic")]
    if not video:
        raise ClipError("the source has no video stream to cut")
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    subs = [s for s in streams if s.get("codec_type") == "subtitle"
            and (fmt == "matroska" or s.get("codec_name") in _TEXT_SUBTITLES)]
    args = [a for s in (*video, *audio, *subs) for a in ("-map", f"0:{s['index']}")]
    copy_video, copy_audio = COPYABLE.get(fmt, (None, None))
    if exact:
        args += ["-c:v", *EXACT_VIDEO, "-c:a", "aac"]
    else:
        bad = [s.get("codec_name", "?") for s in video if copy_video is not None and s.get("codec_name") not in copy_video]
        if bad:
            raise ConfigError(f"{bad[0]} video cannot be stream-copied into a {suffix} file; cut to a .mkv file, "
                              "or re-encode it with exact", field="out_path")
        args += ["-c:v", "copy"]
        for i, s in enumerate(audio):
            keep = copy_audio is None or s.get("codec_name") in copy_audio
            args += [f"-c:a:{i}", "copy" if keep else "aac"]
    for i, s in enumerate(subs):  # Matroska keeps them as they are, but has no mov_text; mp4 / mov only mov_text
        codec = ("srt" if s.get("codec_name") == "mov_text" else "copy") if fmt == "matroska" else "mov_text"
        args += [f"-c:s:{i}", codec]
    return args


def _keyframe_at_or_before(source: str, info: dict, t_sec: float, t0: float, ffprobe: str,
                           timeout_sec: float | None) -> float:
    """Seconds from the start (``t0``: the file's start time) of the last video keyframe at or before ``t_sec``.

    Packets are read (not decoded) from a little before ``t_sec``, further back until a keyframe turns up.
    """
    v = next(s for s in info["streams"] if s.get("codec_type") == "video"
             and not (s.get("disposition") or {}).get("attached_pic"))
    tb = Fraction(v.get("time_base") or "1/1000")
    for back in (10.0, 60.0, 600.0, math.inf):
        lo = max(0.0, t_sec - back)
        window = f"{t0 + lo:.6f}%{t0 + t_sec + 0.001:.6f}"
        r = _run([ffprobe, "-v", "error", "-select_streams", str(v["index"]), "-show_entries",
                  "packet=pts,dts,flags", "-read_intervals", window, "-of", "csv=p=0", source],
                 timeout_sec, f"finding keyframes in {_name(source)}")
        keys = []
        for line in r.stdout.decode("utf-8", "replace").splitlines():
            pts, dts, flags = ([*line.split(","), "", ""])[:3]
            ts = pts if pts.lstrip("-").isdigit() else dts
            if "K" in flags and ts.lstrip("-").isdigit():
                keys.append(float(int(ts) * tb) - t0)
        keys = [k for k in keys if k <= t_sec + 1e-6]
        if keys:
            return max(0.0, max(keys))
        if lo == 0.0:
            break
    log.warning("no keyframe found before %.3f s in %s; the copy starts at 0", t_sec, _name(source))
    return 0.0


def _video_length(path: str, ffprobe: str, timeout_sec: float | None) -> float:
    """Seconds from the first video frame of ``path`` to the end of its last one (0 when it has none).

    The last frame counts as long as the typical one: a muxer may trim the last packet's duration.
    """
    r = _run([ffprobe, "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time,duration_time",
              "-of", "csv=p=0", path], timeout_sec, "measuring the clip")
    pts, durations = [], []
    for line in r.stdout.decode("utf-8", "replace").splitlines():
        p, d = (_float(x) for x in ([*line.split(","), ""])[:2])
        if p is not None:
            pts.append(p)
            durations.append(d or 0.0)
    return max(pts) - min(pts) + statistics.median(durations) if pts else 0.0


def _probe(source: str, ffprobe: str, timeout_sec: float | None) -> dict:
    entries = "format=start_time,duration:stream=index,codec_type,codec_name,time_base:stream_disposition=attached_pic"
    r = _run([ffprobe, "-v", "error", "-show_entries", entries, "-of", "json", source],
             timeout_sec, f"reading {_name(source)}")
    try:
        info = json.loads(r.stdout or b"{}")
    except ValueError:
        info = {}
    if r.returncode != 0 or not info.get("streams"):
        tail = _tail(r.stderr)
        raise ClipError(f"ffprobe cannot read {_name(source)}: {tail or 'no streams'}; is it a video?",
                        stderr_tail=tail)
    return info


def _run(cmd: list[str], timeout_sec: float | None, doing: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=timeout_sec, check=False)
    except FileNotFoundError as e:
        raise FFmpegNotFoundError(f"{cmd[0]} is not installed (or not on PATH); install ffmpeg "
                                  "(apt-get install ffmpeg, brew install ffmpeg)") from e
    except subprocess.TimeoutExpired as e:
        raise ClipError(f"{doing} took over {timeout_sec:g} s; cut a shorter span, or allow more time") from e


def _publish(tmp: Path, out: Path, force: bool) -> None:
    """Move the finished ``tmp`` to ``out``; without ``force``, never over a file that appeared meanwhile."""
    if force:
        os.replace(tmp, out)
        return
    try:
        os.link(tmp, out)  # fails if out exists, atomically
    except FileExistsError:
        raise _exists(out) from None
    except OSError:  # no hard links on this file system
        if out.exists():
            raise _exists(out) from None
        os.replace(tmp, out)


def _exists(out: Path) -> ConfigError:
    return ConfigError(f"{out} already exists; pass force to overwrite it, or choose another out_path",
                       field="force")


def _name(source: str) -> str:
    """``source`` for messages: a presigned link without its signature."""
    return source.split("?", 1)[0]


def _tail(stderr: bytes) -> str:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    return " | ".join(lines[-STDERR_LINES:])


def _float(value: object) -> float | None:
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _sec(t: float) -> str:
    """Seconds for ffmpeg, rounded up to the microsecond (ffmpeg's unit): a seek to a keyframe's time
    never lands just before it, on the keyframe before."""
    return f"{math.ceil(round(t * 1e6, 3)) / 1e6:.6f}"


def _clock(t: float) -> str:
    """``65.3`` -> ``00h01m05.3s`` (format_timestamp, fit for a file name)."""
    h, m, s = format_timestamp(t).split(":")
    return f"{h}h{m}m{s}s"
