"""The on-screen text channel: text read off the frames where the picture changed.

:func:`screen_text` takes the change times of one video (from
:class:`~groundzero.indexer.changes.ChangeDetector` on the 1 fps decode), grabs each of those
frames again at reading resolution (longest side at most ``OcrConfig.max_side``) with one fast
ffmpeg seek per time, reads it with RapidOCR (PP-OCR detection + recognition, ONNX, offline),
and returns one :class:`~groundzero.data.segments.TextSegment` (``source="ocr"``) per change
that shows text: ``[t_change, t_next_change)``, the last one to the video's end.

Why a seek per time rather than one decoding pass with a ``select`` filter: a seek decodes
from the keyframe before the time only, so its cost does not grow with the video's length.
Measured (``bench/ocr_cost.py --minutes 10 --video-fps 25 --compare-grab``, 1280x720 H.264,
keyframes every 10 s, 2 shared CPU cores): 60 seeks took 23.6 s (0.4 s each); one select pass
over the 10-minute video took 18.3 s, so about 110 s for a 1-hour video: seeks are ~4.6x faster
for ~60 changes per hour, and stay faster up to roughly one change every 13 s.

Reading order: lines top to bottom, lines whose vertical centres lie within half a line
height of each other form one row, read left to right and joined by a space; rows are joined
by a newline. Lines scoring under ``min_confidence`` are dropped; a segment's confidence is
the mean score of its kept lines. Consecutive segments with the same text (case and spacing
aside: the slide stayed, only a speaker's inset changed) are merged; empty ones are dropped.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from groundzero.data.segments import TextSegment
from groundzero.errors import ConfigError, DecodeError
from groundzero.indexer.changes import ChangeConfig
from groundzero.indexer.probe import VideoInfo, ffmpeg_error_line, probe, require_tools

log = logging.getLogger(__name__)

_GRAB_TIMEOUT_S = 120  # one frame; a stalled network mount should not hang the run


@dataclass(frozen=True)
class OcrConfig:
    """How on-screen text is read."""

    max_side: int = 1280  #: longest side, in pixels, of the frame OCR reads (never upscaled)
    min_confidence: float = 0.5  #: recognised lines scoring below this (0-1) are dropped
    change: ChangeConfig = field(default_factory=ChangeConfig)  #: which frames are read
    #: seconds after a change time at which the frame is grabbed: the middle of a 1 fps
    #: sample's interval (the picture the change detector saw), past a slide transition
    offset_sec: float = 0.5
    threads: int = 0  #: onnxruntime intra-op threads; 0: min(4, CPU count)

    def __post_init__(self) -> None:
        if self.max_side < 32:
            raise ConfigError(f"max_side must be at least 32 pixels, got {self.max_side}", field="max_side")
        if not 0 <= self.min_confidence <= 1:
            raise ConfigError(f"min_confidence must be in [0, 1], got {self.min_confidence}",
                              field="min_confidence")
        if self.offset_sec < 0:
            raise ConfigError(f"offset_sec must be >= 0 seconds, got {self.offset_sec}", field="offset_sec")
        if self.threads < 0:
            raise ConfigError(f"OCR threads must be >= 0 (0 = automatic), got {self.threads}", field="threads")

    def resolved_threads(self) -> int:
        return self.threads or min(4, os.cpu_count() or 1)


@functools.lru_cache(maxsize=2)
def ocr_engine(threads: int = 2):
    """The process's RapidOCR engine for ``threads`` onnxruntime threads (loaded once, cached).

    The angle classifier is off (text in video frames is upright; it costs a third of the
    time), and RapidOCR's own logger is kept at WARNING (it logs every call at INFO).
    """
    logging.getLogger("RapidOCR").setLevel(logging.WARNING)
    from rapidocr import RapidOCR

    return RapidOCR(params={
        "Global.log_level": "warning",
        "Global.use_cls": False,
        "EngineConfig.onnxruntime.intra_op_num_threads": threads,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    })


def reading_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(w, h) of a ``width x height`` frame scaled so its longest side is at most ``max_side``.

    Keeps the aspect ratio, never upscales, rounds to even sizes (what scalers like).
    """
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def grab_frame(path: str, t_sec: float, size: tuple[int, int], stream_index: int | None = None) -> np.ndarray:
    """The picture at ``t_sec`` as uint8 (h, w, 3) **BGR** (RapidOCR's order), by a fast seek.

    Raises :class:`DecodeError` (``decode_failed``) when ffmpeg fails or returns no frame.
    """
    w, h = size
    selector = "0:v:0" if stream_index is None else f"0:{stream_index}"
    cmd = [require_tools()["ffmpeg"], "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error",
           "-ss", f"{max(t_sec, 0.0):.3f}", "-i", path, "-map", selector, "-frames:v", "1",
           "-vf", f"scale={w}:{h}:flags=area", "-pix_fmt", "bgr24", "-f", "rawvideo", "pipe:"]
    try:
        r = subprocess.run(cmd, capture_output=True, check=False, stdin=subprocess.DEVNULL,
                           timeout=_GRAB_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DecodeError("decode_failed", f"{path}: no frame at {t_sec:.2f} s within {_GRAB_TIMEOUT_S} s") from None
    if r.returncode != 0 or len(r.stdout) < w * h * 3:
        why = ffmpeg_error_line(r.stderr.decode(errors="replace")) or "no frame there"
        raise DecodeError("decode_failed", f"{path}: no frame at {t_sec:.2f} s "
                                           f"(ffmpeg exit status {r.returncode}: {why})")
    return np.frombuffer(r.stdout[: w * h * 3], np.uint8).reshape(h, w, 3)


def reading_order(boxes: np.ndarray, texts: Sequence[str], scores: Sequence[float],
                  min_confidence: float) -> tuple[str, float]:
    """(text, confidence) of one frame's recognised lines, in reading order (module docstring).

    ``boxes``: float (N, 4, 2) corner points (x, y) in pixels; ``texts``, ``scores``: (N,).
    Returns ``("", 0.0)`` when no line scores ``min_confidence`` or more.
    """
    kept = [i for i in range(len(texts)) if scores[i] >= min_confidence and texts[i].strip()]
    if not kept:
        return "", 0.0
    b = np.asarray(boxes, np.float64)[kept]  # (K, 4, 2)
    cy = b[:, :, 1].mean(1)
    half = (b[:, :, 1].max(1) - b[:, :, 1].min(1)) / 2
    x0 = b[:, :, 0].min(1)
    rows: list[list[int]] = []
    for k in np.argsort(cy, kind="stable"):
        if rows and abs(cy[k] - np.mean([cy[j] for j in rows[-1]])) <= max(half[k], half[rows[-1][0]]):
            rows[-1].append(int(k))
        else:
            rows.append([int(k)])
    lines = [" ".join(texts[kept[k]].strip() for k in sorted(row, key=lambda j: x0[j])) for row in rows]
    return "\n".join(lines), float(np.mean([scores[i] for i in kept]))


def read_text(image_bgr: np.ndarray, cfg: OcrConfig) -> tuple[str, float]:
    """(text, confidence) OCR reads in one uint8 (h, w, 3) BGR image (see :func:`reading_order`)."""
    out = ocr_engine(cfg.resolved_threads())(image_bgr)
    if out.txts is None or out.boxes is None or len(out.txts) == 0:
        return "", 0.0
    return reading_order(out.boxes, out.txts, out.scores, cfg.min_confidence)


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.casefold().split()) == " ".join(b.casefold().split())


def merge_segments(segments: Sequence[TextSegment]) -> list[TextSegment]:
    """Drop empty segments and merge consecutive ones with the same text (case and spacing aside).

    A merged segment spans both, keeps the first one's text and takes the duration-weighted mean
    confidence. Segments that touch only through a dropped one are not merged (the gap shows
    other content).
    """
    out: list[TextSegment] = []
    for s in segments:
        if not s.text.strip():
            continue
        last = out[-1] if out else None
        if last is not None and last.end_sec == s.start_sec and _same_text(last.text, s.text):
            span = s.end_sec - last.start_sec
            conf = ((last.confidence * (last.end_sec - last.start_sec) + s.confidence * (s.end_sec - s.start_sec))
                    / span if span > 0 else max(last.confidence, s.confidence))
            out[-1] = TextSegment(last.start_sec, s.end_sec, last.text, "ocr", confidence=conf)
        else:
            out.append(s)
    return out


def screen_text(video_path: str, change_times_sec: Sequence[float], duration_sec: float,
                cfg: OcrConfig, info: VideoInfo | None = None) -> list[TextSegment]:
    """On-screen text of one video: a segment per change time that shows text, merged.

    ``change_times_sec``: increasing times (seconds) where the picture changed, usually the
    timestamps of the frames a :class:`~groundzero.indexer.changes.ChangeDetector` flagged;
    ``duration_sec``: the video's length, the end of the last segment; ``info``: :func:`probe`'s
    result when the caller has it. Segment ``i`` is ``[t_i, t_{i+1})`` (the last ends at
    ``duration_sec``). A frame that cannot be decoded gives no segment (logged as a warning).

    Raises :class:`DecodeError` when the file itself cannot be read (missing, not a video).
    """
    times = [float(t) for t in change_times_sec]
    if any(b <= a for a, b in itertools.pairwise(times)):
        raise ValueError("change_times_sec must increase")
    info = info if info is not None else probe(video_path)
    if not times:
        return []
    end = duration_sec if math.isfinite(duration_sec) and duration_sec > times[-1] else times[-1]
    size = reading_size(info.width, info.height, cfg.max_side)
    segments: list[TextSegment] = []
    for t, t_next in zip(times, [*times[1:], end]):
        at = min(t + cfg.offset_sec, (t + t_next) / 2) if t_next > t else t
        try:
            image = grab_frame(video_path, at, size, info.stream_index)
        except DecodeError as e:
            log.warning("no on-screen text for [%.2f, %.2f) s: %s", t, t_next, e)
            continue
        text, conf = read_text(image, cfg)
        log.debug("%s at %.2f s: %d characters of text", video_path, at, len(text))
        segments.append(TextSegment(t, max(t_next, t), text, "ocr", confidence=conf))
    return merge_segments(segments)
