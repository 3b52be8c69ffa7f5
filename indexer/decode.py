"""Decode stage: one video file -> RGB frames sampled at a fixed rate, streamed from ffmpeg.

:func:`probe` reads a file's metadata with ffprobe and classifies what is wrong
with files that are not decodable videos; :func:`iter_frames` runs ::

    ffmpeg -i VIDEO -filter_complex "[0:N]fps=FPS:round=near:start_time=0:eof_action=pass,
           format=rgb24,scale=S:S:flags=RESAMPLE" -f rawvideo pipe:

and yields fixed-size chunks of frames as they arrive, so memory stays bounded
whatever the video's length.

Which stream. ``N`` is the one video stream indexed: the largest picture
(width x height) among the file's video streams that are not cover art
(``disposition.attached_pic``), the first of equals. A file with several such
streams (an mkv with a picture-in-picture or preview track) gets a note saying
which stream was indexed and which were not (:attr:`VideoInfo.note`), which the
catalog keeps; cover art is never indexed and never noted.

Timestamps. Sampled frame ``k`` has timestamp ``k / fps`` (seconds from the
start of the file) and stands for the interval ``[k / fps, (k + 1) / fps)``. Its
picture is the one on screen at the middle of that interval: the last source
frame whose timestamp is below ``(k + 0.5) / fps``. That is what the fps filter
does with ``round=near`` (its default, set explicitly); tests/indexer/test_decode.py
checks it: at 1 fps a colour change at 2.4 s already shows in frame 2, one at
4.6 s only in frame 5. The filter works from timestamps, so variable-frame-rate
input is sampled the same way. ``start_time=0`` anchors the grid at the start of
the file rather than at the first video frame (a late-starting stream repeats its
first picture). ``eof_action=pass`` keeps the last, partly covered interval: a
video of ``D`` seconds gives ``ceil(D * fps)`` frames, all timestamped below
``D``, and a clip shorter than ``1 / fps`` still gives one.

Rotation. ffmpeg applies the display matrix (phone videos), so frames come out
upright; :class:`VideoInfo` reports the size after rotation.

Frames are what the checkpoint's own image processor gives for the decoded RGB frame: converted
to RGB at full resolution first, then resized to ``size x size`` without keeping the aspect
ratio, with the processor's interpolation (``resample`` in its ``preprocessor_config.json``:
bilinear for the fixed-resolution SigLIP 2 checkpoints, bicubic for SigLIP 1; see
:func:`groundzero.model.identity.image_resample`). Scaling the YUV planes before the RGB
conversion instead would shift colours at edges.
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
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO

import ffmpeg
import numpy as np

from groundzero.errors import ConfigError, DecodeError, FFmpegNotFoundError

log = logging.getLogger(__name__)

_STDERR_TAIL = 4096  # bytes of ffmpeg's stderr kept for error messages
_PROBE_TIMEOUT_S = 120
_REENCODE = "re-encode it (ffmpeg -i {p} -c:v libx264 fixed.mp4) or add it to --exclude"


#: ffmpeg scalers that match PIL's resampling filters (nearest, bilinear, bicubic, lanczos, box)
RESAMPLERS = ("neighbor", "bilinear", "bicubic", "lanczos", "area")


@dataclass(frozen=True)
class DecodeConfig:
    """How frames are sampled."""

    fps: float = 1.0  #: sampling rate, frames per second of video; 0 < fps <= 30
    size: int = 384  #: output frames are size x size RGB (the backbone's input side)
    #: interpolation of the resize, an ffmpeg scaler: the checkpoint processor's (model.identity.image_resample)
    resample: str = "bicubic"
    chunk_frames: int = 32  #: frames per yielded chunk (bounds memory)
    threads: int = 1  #: ffmpeg decoder threads (0 = ffmpeg's choice)
    min_coverage: float = 0.9  #: decoded duration below this fraction of the probed one -> "truncated"

    def __post_init__(self) -> None:
        if not (isinstance(self.fps, (int, float)) and 0 < self.fps <= 30):
            raise ConfigError(f"fps must be in (0, 30] frames per second, got {self.fps}", field="fps")
        if self.size < 1:
            raise ConfigError(f"frame size must be a positive number of pixels, got {self.size}")
        if self.resample not in RESAMPLERS:
            raise ConfigError(f"resample must be one of {', '.join(RESAMPLERS)}, got {self.resample!r}",
                              field="resample")
        if self.chunk_frames < 1:
            raise ConfigError(f"chunk_frames must be at least 1, got {self.chunk_frames}")
        if self.threads < 0:
            raise ConfigError(f"decode threads must be >= 0 (0 = automatic), got {self.threads}")
        if not 0 < self.min_coverage <= 1:
            raise ConfigError(f"min_coverage must be in (0, 1], got {self.min_coverage}")


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


@dataclass(frozen=True)
class FrameChunk:
    """Consecutive sampled frames of one video."""

    first_frame_idx: int  #: index of frames[0] among the video's sampled frames
    timestamps_sec: np.ndarray  #: float64 (n,): frame k is at k / fps seconds (see module docstring)
    frames: np.ndarray  #: uint8 (n, size, size, 3) RGB


def _require_tools() -> dict[str, str]:
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
    tools = _require_tools()
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
        why = _one_line(err) or f"ffprobe exit status {r.returncode}"
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
                                       "picture size; " + _REENCODE.format(p=path))
    index = v.get("index")
    return VideoInfo(duration_sec=_duration(v, fmt), width=w, height=h, rotation_deg=_rotation_cw(v),
                     codec=str(v.get("codec_name", "unknown")), avg_fps=_rate(v.get("avg_frame_rate")),
                     stream_index=int(index) if isinstance(index, int) else None, note=note)


def decoded_duration_ok(n_frames: int, fps: float, duration_sec: float, min_coverage: float) -> bool:
    """Whether ``n_frames`` sampled at ``fps`` cover ``min_coverage`` of a ``duration_sec`` video.

    A complete decode yields ``ceil(duration * fps)`` frames, so the decoded
    duration is ``n_frames / fps``. An unknown (nan) duration passes.
    """
    return math.isnan(duration_sec) or n_frames / fps >= min_coverage * duration_sec


def _one_line(err: str, max_chars: int = 400) -> str:
    """ffmpeg's last few distinct stderr lines, without ``[demuxer @ 0x...]`` prefixes, on one line."""
    lines: list[str] = []
    for line in reversed(err.splitlines()):
        line = re.sub(r"^\[[^]]* @ 0x[0-9a-f]+\]\s*", "", line.strip())
        if line and line not in lines:
            lines.insert(0, line)
        if len(lines) == 3:
            break
    return " | ".join(lines)[-max_chars:]


def _drain(pipe: IO[bytes], tail: bytearray) -> None:
    """Read ``pipe`` to EOF, keeping its last bytes in ``tail`` (runs on a thread)."""
    for block in iter(lambda: pipe.read1(65536), b""):
        tail += block
        del tail[:-_STDERR_TAIL]


def _read_exact(pipe: IO[bytes], buf: memoryview) -> int:
    """Fill ``buf`` from ``pipe``; return the number of bytes read (short only at EOF)."""
    got = 0
    while got < len(buf):
        n = pipe.readinto(buf[got:])
        if not n:
            break
        got += n
    return got


def iter_frames(path: str, cfg: DecodeConfig, info: VideoInfo | None = None) -> Iterator[FrameChunk]:
    """Stream ``path``'s frames sampled at ``cfg.fps``, in chunks of at most ``cfg.chunk_frames``.

    ``info`` is :func:`probe`'s result when the caller already has it. Chunks are
    yielded as ffmpeg produces them, so a truncated or failing video is only
    known at the end: iteration then raises :class:`DecodeError` (``truncated``
    or ``decode_failed``) *after* some chunks were yielded, and the consumer
    must discard every frame of that video. Closing the generator early kills
    ffmpeg.
    """
    tools = _require_tools()
    info = info if info is not None else probe(path)
    rate = Fraction(cfg.fps).limit_denominator(1_000_000)
    frame_bytes = cfg.size * cfg.size * 3
    # the stream probe() chose; without its index, the first video stream that is not cover art
    selector = "V:0" if info.stream_index is None else str(info.stream_index)
    stream = (
        ffmpeg.input(path, threads=cfg.threads)[selector]
        .filter("fps", fps=f"{rate.numerator}/{rate.denominator}", round="near", start_time=0,
                eof_action="pass")
        .filter("format", "rgb24")  # RGB at full resolution first, as the processor sees the frame
        .filter("scale", cfg.size, cfg.size, flags=cfg.resample)
        .output("pipe:", format="rawvideo", vsync="passthrough")  # one raw frame per fps-filter frame
    )
    cmd = [tools["ffmpeg"], "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error"]
    log.debug("decoding %s: %s", path, " ".join(stream.get_args()))
    proc = stream.run_async(cmd=cmd, pipe_stdout=True, pipe_stderr=True)
    tail = bytearray()
    drainer = threading.Thread(target=_drain, args=(proc.stderr, tail), daemon=True)
    drainer.start()
    n = 0  # frames yielded so far
    try:
        while True:
            frames = np.empty((cfg.chunk_frames, cfg.size, cfg.size, 3), np.uint8)
            got = _read_exact(proc.stdout, memoryview(frames).cast("B"))
            k, partial = divmod(got, frame_bytes)
            if k:
                ts = (n + np.arange(k, dtype=np.float64)) * rate.denominator / rate.numerator
                yield FrameChunk(n, ts, frames if k == cfg.chunk_frames else frames[:k].copy())
                n += k
            if k < cfg.chunk_frames:
                break
        rc = proc.wait()
        drainer.join()
        raw_err = tail.decode(errors="replace")
        err = _one_line(raw_err)
        short = not decoded_duration_ok(n, cfg.fps, info.duration_sec, cfg.min_coverage)
        # a cut-off file can make ffmpeg fail too; "partial file" is the demuxer saying so
        if (rc != 0 or partial) and not (short and "partial file" in raw_err):
            raise DecodeError("decode_failed", f"{path}: ffmpeg failed after {n} frames (exit status {rc}): "
                                               f"{err or 'no error message'}; " + _REENCODE.format(p=path))
        if short:
            raise DecodeError("truncated", f"{path} is truncated: only {n / cfg.fps:.1f} s of its "
                                           f"{info.duration_sec:.1f} s could be decoded "
                                           f"({err or 'the frame data ends early'}); "
                                           "re-copy it from its source")
        if err:
            log.warning("%s: ffmpeg reported errors but the video decoded fully: %s", path, err)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        drainer.join()
        proc.stderr.close()


def decode_frames(path: str | Path, cfg: DecodeConfig) -> np.ndarray:
    """All of ``path``'s frames sampled as :func:`iter_frames` samples them: uint8 (N, S, S, 3).

    For short clips only (the whole result is in memory); the indexer streams.
    Raises what :func:`iter_frames` raises.
    """
    chunks = [c.frames for c in iter_frames(str(path), cfg)]
    if not chunks:
        return np.empty((0, cfg.size, cfg.size, 3), np.uint8)
    return np.concatenate(chunks)
