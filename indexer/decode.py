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
to RGB at full resolution first, then resized with the processor's interpolation (``resample``
in its ``preprocessor_config.json``: bilinear for SigLIP 2, bicubic for SigLIP 1; see
:func:`groundzero.model.identity.image_resample`). Scaling the YUV planes before the RGB
conversion instead would shift colours at edges. A fixed-resolution checkpoint's frames are
``size x size``, the aspect ratio not kept; a NaFlex checkpoint's (``max_patches`` > 0) keep the
video's aspect ratio: :func:`groundzero.model.naflex.naflex_size` of its picture, the same for
every frame of the video. Those are resized by PIL, as the SigLIP 2 processor resizes them: ffmpeg's
bilinear scaler differs from PIL's by up to 5 levels (p99) at some downscaling factors (2.1-2.2 for
640x480 -> 288x224), and a frame is only read in full at the sampling rate (1 fps).
"""

from __future__ import annotations

import io
import logging
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO

import ffmpeg
import numpy as np

from groundzero.errors import ConfigError, DecodeError
from groundzero.indexer.probe import (
    REENCODE_HINT,
    VideoInfo,
    ffmpeg_error_line,
    probe,
    require_tools,
)
from groundzero.model.naflex import naflex_size

log = logging.getLogger(__name__)

_STDERR_TAIL = 4096  # bytes of ffmpeg's stderr kept for error messages


#: ffmpeg scalers that match PIL's resampling filters (nearest, bilinear, bicubic, lanczos, box)
RESAMPLERS = ("neighbor", "bilinear", "bicubic", "lanczos", "area")
#: each scaler's PIL resampling filter (NaFlex frames are resized by PIL)
_PIL_FILTERS = {"neighbor": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "area": 4}


@dataclass(frozen=True)
class DecodeConfig:
    """How frames are sampled."""

    fps: float = 1.0  #: sampling rate, frames per second of video; 0 < fps <= 30
    size: int = 384  #: output frames are size x size RGB (the backbone's input side); unused for NaFlex
    #: interpolation of the resize, an ffmpeg scaler: the checkpoint processor's (model.identity.image_resample)
    resample: str = "bicubic"
    chunk_frames: int = 32  #: frames per yielded chunk (bounds memory)
    threads: int = 1  #: ffmpeg decoder threads (0 = ffmpeg's choice)
    min_coverage: float = 0.9  #: decoded duration below this fraction of the probed one -> "truncated"
    #: NaFlex: at most this many ``patch_size`` patches per frame, aspect ratio kept; 0: ``size x size``
    max_patches: int = 0
    patch_size: int = 0  #: NaFlex: the checkpoint's patch side

    @classmethod
    def for_model(cls, model_dir: Path, identity, fps: float, max_patches: int = 0, **kw) -> DecodeConfig:
        """How to sample frames for checkpoint ``model_dir`` (its :class:`~groundzero.model.identity.ModelIdentity`):
        its frame side or, for NaFlex, ``max_patches`` of its patches; its processor's interpolation."""
        from groundzero.model.identity import image_resample

        if identity.naflex:
            return cls(fps=fps, size=identity.patch_size, resample=image_resample(model_dir),
                       max_patches=max_patches, patch_size=identity.patch_size, **kw)
        return cls(fps=fps, size=identity.image_size, resample=image_resample(model_dir), **kw)

    def frame_hw(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of the frames of a ``height x width`` video (its picture as displayed)."""
        if not self.max_patches:
            return self.size, self.size
        if height < 1 or width < 1:
            raise DecodeError("decode_failed", f"the video's picture size is unknown ({width}x{height}); "
                                               "NaFlex frames keep the aspect ratio, so it is needed")
        return naflex_size(height, width, self.patch_size, self.max_patches)

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
        if self.max_patches < 0 or (self.max_patches and self.patch_size < 1):
            raise ConfigError(f"max_patches must be >= 1 with a patch size (NaFlex) or 0, got {self.max_patches} "
                              f"patches of {self.patch_size} px", field="max_patches")


@dataclass(frozen=True)
class FrameChunk:
    """Consecutive sampled frames of one video."""

    first_frame_idx: int  #: index of frames[0] among the video's sampled frames
    timestamps_sec: np.ndarray  #: float64 (n,): frame k is at k / fps seconds (see module docstring)
    frames: np.ndarray  #: uint8 (n, h, w, 3) RGB: (size, size), or the video's NaFlex size


def decoded_duration_ok(n_frames: int, fps: float, duration_sec: float, min_coverage: float) -> bool:
    """Whether ``n_frames`` sampled at ``fps`` cover ``min_coverage`` of a ``duration_sec`` video.

    A complete decode yields ``ceil(duration * fps)`` frames, so the decoded
    duration is ``n_frames / fps``. An unknown (nan) duration passes.
    """
    return math.isnan(duration_sec) or n_frames / fps >= min_coverage * duration_sec


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


def _read_chunk(pipe: IO[bytes], out: np.ndarray, src: tuple[int, int] | None, resample: str) -> tuple[int, int]:
    """Fill ``out`` (n, h, w, 3) with frames from ``pipe``: as they come, or (``src``: the size ffmpeg
    writes) one by one, each resized to (h, w) by PIL. Returns (frames read, bytes of a partial frame)."""
    if src is None:
        return divmod(_read_exact(pipe, memoryview(out).cast("B")), out[0].nbytes)
    from PIL import Image

    buf = np.empty((*src, 3), np.uint8)
    for i in range(len(out)):
        got = _read_exact(pipe, memoryview(buf).cast("B"))
        if got < buf.nbytes:
            return i, got
        out[i] = np.asarray(Image.fromarray(buf).resize((out.shape[2], out.shape[1]), _PIL_FILTERS[resample]))
    return len(out), 0


def _sampled(stream, cfg: DecodeConfig, h: int, w: int):
    """The sampling filters on an ffmpeg input stream, to raw ``h x w`` RGB frames on stdout."""
    rate = Fraction(cfg.fps).limit_denominator(1_000_000)
    return (
        stream.filter("fps", fps=f"{rate.numerator}/{rate.denominator}", round="near", start_time=0,
                      eof_action="pass")
        .filter("format", "rgb24")  # RGB at full resolution first, as the processor sees the frame
        .filter("scale", w, h, flags=cfg.resample)
        .output("pipe:", format="rawvideo", vsync="passthrough")  # one raw frame per fps-filter frame
    )


def decode_window(path: str, start_sec: float, end_sec: float, cfg: DecodeConfig,
                  stream_index: int | None = None, picture: tuple[int, int] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The frames of ``[start_sec, end_sec)`` sampled at ``cfg.fps``, by a seek (coarse-to-fine search).

    ``path`` may be a local file or an ``http(s)://`` URL (e.g. a presigned S3 link: ffmpeg reads
    only the byte ranges it needs). Returns (timestamps float64 (N,) in seconds of the video,
    frames uint8 (N, h, w, 3), sized as :func:`iter_frames` sizes them); frame k stands for
    ``[start_sec + k / fps, start_sec + (k + 1) / fps)``.
    ``stream_index``: the stream :func:`probe` chose (the one the index holds); default: the first
    video stream that is not cover art. ``picture``: the video's (height, width) as displayed, which
    NaFlex frames are sized from (probed when not given).
    Raises :class:`DecodeError` when ffmpeg fails.
    """
    tools = require_tools()
    if cfg.max_patches and picture is None:
        info = probe(path)
        picture = (info.height, info.width)
    h, w = cfg.frame_hw(*(picture or (0, 0)))
    src = picture if cfg.max_patches else None  # NaFlex: full frames out of ffmpeg, resized here
    dur = max(end_sec - start_sec, 1.0 / cfg.fps)
    stream = _sampled(ffmpeg.input(path, ss=f"{max(start_sec, 0.0):.3f}", t=f"{dur:.3f}",
                                   threads=cfg.threads)["V:0" if stream_index is None else str(stream_index)],
                      cfg, *(src or (h, w)))
    cmd = [tools["ffmpeg"], "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error"]
    out, _ = _run_capture(stream, cmd, path)
    pipe_hw = src or (h, w)
    n = len(out) // (pipe_hw[0] * pipe_hw[1] * 3)
    frames = np.empty((n, h, w, 3), np.uint8)
    _read_chunk(io.BytesIO(out), frames, src, cfg.resample)
    return max(start_sec, 0.0) + np.arange(n, dtype=np.float64) / cfg.fps, frames


def _run_capture(stream, cmd: list[str], path: str) -> tuple[bytes, bytes]:
    """Run an ffmpeg-python stream to completion; (stdout, stderr), or :class:`DecodeError`."""
    proc = stream.run_async(cmd=cmd, pipe_stdout=True, pipe_stderr=True)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise DecodeError("decode_failed", f"{path}: ffmpeg failed (exit status {proc.returncode}): "
                                           f"{ffmpeg_error_line(err.decode(errors='replace')) or 'no error message'}")
    return out, err


def iter_frames(path: str, cfg: DecodeConfig, info: VideoInfo | None = None) -> Iterator[FrameChunk]:
    """Stream ``path``'s frames sampled at ``cfg.fps``, in chunks of at most ``cfg.chunk_frames``.

    ``info`` is :func:`probe`'s result when the caller already has it. Chunks are
    yielded as ffmpeg produces them, so a truncated or failing video is only
    known at the end: iteration then raises :class:`DecodeError` (``truncated``
    or ``decode_failed``) *after* some chunks were yielded, and the consumer
    must discard every frame of that video. Closing the generator early kills
    ffmpeg.
    """
    tools = require_tools()
    info = info if info is not None else probe(path)
    rate = Fraction(cfg.fps).limit_denominator(1_000_000)
    h, w = cfg.frame_hw(info.height, info.width)
    src = (info.height, info.width) if cfg.max_patches else None  # NaFlex: full frames out, resized here
    # the stream probe() chose; without its index, the first video stream that is not cover art
    selector = "V:0" if info.stream_index is None else str(info.stream_index)
    stream = _sampled(ffmpeg.input(path, threads=cfg.threads)[selector], cfg, *(src or (h, w)))
    cmd = [tools["ffmpeg"], "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error"]
    log.debug("decoding %s: %s", path, " ".join(stream.get_args()))
    proc = stream.run_async(cmd=cmd, pipe_stdout=True, pipe_stderr=True)
    tail = bytearray()
    drainer = threading.Thread(target=_drain, args=(proc.stderr, tail), daemon=True)
    drainer.start()
    n = 0  # frames yielded so far
    try:
        while True:
            frames = np.empty((cfg.chunk_frames, h, w, 3), np.uint8)
            k, partial = _read_chunk(proc.stdout, frames, src, cfg.resample)
            if k:
                ts = (n + np.arange(k, dtype=np.float64)) * rate.denominator / rate.numerator
                yield FrameChunk(n, ts, frames if k == cfg.chunk_frames else frames[:k].copy())
                n += k
            if k < cfg.chunk_frames:
                break
        rc = proc.wait()
        drainer.join()
        raw_err = tail.decode(errors="replace")
        err = ffmpeg_error_line(raw_err)
        short = not decoded_duration_ok(n, cfg.fps, info.duration_sec, cfg.min_coverage)
        # a cut-off file can make ffmpeg fail too; "partial file" is the demuxer saying so
        if (rc != 0 or partial) and not (short and "partial file" in raw_err):
            raise DecodeError("decode_failed", f"{path}: ffmpeg failed after {n} frames (exit status {rc}): "
                                               f"{err or 'no error message'}; " + REENCODE_HINT.format(p=path))
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
    """All of ``path``'s frames sampled as :func:`iter_frames` samples them: uint8 (N, h, w, 3).

    For short clips only (the whole result is in memory); the indexer streams.
    Raises what :func:`iter_frames` raises.
    """
    chunks = [c.frames for c in iter_frames(str(path), cfg)]
    return np.concatenate(chunks) if chunks else np.empty((0, cfg.size, cfg.size, 3), np.uint8)
