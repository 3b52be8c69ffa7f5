"""Synthetic test media made with the ffmpeg CLI: small, deterministic, fast to encode.

Every helper writes one file at ``path`` (parent folders are created), returns
it as a :class:`~pathlib.Path`, and raises ``RuntimeError`` with ffmpeg's
stderr when ffmpeg fails. Videos are H.264 (libx264 ``-preset ultrafast``,
yuv420p, no B-frames) at small sizes and low frame rates, so even a 3-minute
video encodes in about a second.

Colours are ffmpeg colour names (``red``, ``blue``, ``green``, ``white``,
``black``, ``yellow``, ``orange``, ``purple``, ... or ``0xRRGGBB``); after
yuv420p encoding they come back within a few levels of their RGB value.
"""

from __future__ import annotations

import functools
import json
import random
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-bf", "0", "-pix_fmt", "yuv420p"]


def _ffmpeg(*args: str) -> None:
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr}")


def _out(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _wh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


@functools.lru_cache(maxsize=1)
def _has_display_rotation() -> bool:
    """ffmpeg >= 6 sets rotation with ``-display_rotation``; 5.x muxes the ``rotate`` tag."""
    r = subprocess.run(["ffmpeg", "-hide_banner", "-h", "full"], check=False, capture_output=True, text=True)
    return "-display_rotation" in r.stdout


def _encode(path: Path, filtergraph: str, *, rotate: int = 0, faststart: bool = False,
            extra: Sequence[str] = ()) -> Path:
    """Encode the single video output ``[v]`` of ``filtergraph`` (lavfi sources) to ``path``.

    ``rotate`` (degrees clockwise, a multiple of 90) is written as display-rotation
    metadata only: the pixels stay as drawn, a player (or ffmpeg) turns them.
    """
    if rotate % 90:
        raise ValueError(f"rotate must be a multiple of 90, got {rotate}")
    flags = ["-movflags", "+faststart"] if faststart else []
    if not rotate % 360:
        _ffmpeg("-filter_complex", filtergraph, "-map", "[v]", *X264, *extra, *flags, path)
        return path
    # Rotation metadata sticks only when remuxing (ffmpeg 5.1 drops the rotate tag on
    # filter_complex outputs): encode upright, then stream-copy with the rotation set.
    # Both ffmpeg 6's -display_rotation and (empirically) 5.1's "rotate" tag take
    # counter-clockwise degrees here, so pass -rotate and check the result.
    ccw = str(-rotate % 360)
    if _has_display_rotation():  # ffmpeg >= 6
        rot_in, rot_out = ["-display_rotation:v:0", ccw], []
    else:  # ffmpeg 5.x: the mov muxer turns the "rotate" tag into a display matrix
        rot_in, rot_out = [], ["-metadata:s:v:0", f"rotate={ccw}"]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d) / f"upright{path.suffix}"
        _ffmpeg("-filter_complex", filtergraph, "-map", "[v]", *X264, *extra, tmp)
        _ffmpeg(*rot_in, "-i", tmp, "-c", "copy", *rot_out, *flags, path)
    got = _display_rotation_cw(path)
    if got != rotate % 360:
        raise RuntimeError(f"{path}: asked for a {rotate} degree rotation, ffprobe reads {got}")
    return path


def _display_rotation_cw(path: Path) -> int:
    """Clockwise display rotation of the first video stream, from its display matrix."""
    r = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                        "stream_side_data=rotation", "-of", "json", str(path)],
                       check=False, capture_output=True, text=True)
    for sd in (json.loads(r.stdout or "{}").get("streams") or [{}])[0].get("side_data_list", []):
        if "rotation" in sd:  # av_display_rotation_get: counter-clockwise degrees
            return round(-float(sd["rotation"])) % 360
    return 0


def make_color_segments(path: str | Path, segments: Sequence[tuple[str, float]],
                        size: tuple[int, int] = (160, 120), fps: int = 10, rotate: int = 0,
                        faststart: bool = False) -> Path:
    """Consecutive solid-colour segments as an H.264 mp4 at a constant ``fps``.

    ``segments`` is ``[(colour, seconds), ...]``, e.g. ``[("red", 5), ("blue", 3)]``:
    red on [0, 5) s, blue on [5, 8) s. Each segment's length should be a multiple
    of ``1 / fps`` so the colour changes exactly at the given second.
    """
    if not segments:
        raise ValueError("segments must not be empty")
    srcs = "".join(f"color=c={c}:s={_wh(size)}:r={fps}:d={d}[s{i}];" for i, (c, d) in enumerate(segments))
    labels = "".join(f"[s{i}]" for i in range(len(segments)))
    graph = f"{srcs}{labels}concat=n={len(segments)}:v=1:a=0[v]"
    return _encode(_out(path), graph, rotate=rotate, faststart=faststart)


VFR_SEGMENTS = (("red", 3, 5), ("blue", 3, 25), ("green", 3, 2))


def make_vfr_video(path: str | Path, segments: Sequence[tuple[str, float, float]] = VFR_SEGMENTS,
                   size: tuple[int, int] = (160, 120)) -> Path:
    """A variable-frame-rate mp4: solid-colour segments, each at its own frame rate.

    ``segments`` is ``[(colour, seconds, fps), ...]``; the default is red 0-3 s at
    5 fps, blue 3-6 s at 25 fps, green 6-9 s at 2 fps. Frames keep their source
    timestamps (``-fps_mode vfr``), so the frame interval changes along the file.
    The mp4 records no duration for the very last frame, so the file's duration
    can fall short of the segments' sum by one frame interval (8.5 s, not 9 s).
    """
    srcs = "".join(f"color=c={c}:s={_wh(size)}:r={r}:d={d},settb=1/1000[s{i}];"
                   for i, (c, d, r) in enumerate(segments))
    labels = "".join(f"[s{i}]" for i in range(len(segments)))
    graph = f"{srcs}{labels}concat=n={len(segments)}:v=1:a=0[v]"
    return _encode(_out(path), graph, extra=["-fps_mode", "vfr", "-video_track_timescale", "1000"])


def make_half_split(path: str | Path, left: str = "red", right: str = "blue",
                    size: tuple[int, int] = (160, 120), seconds: float = 2, fps: int = 10,
                    rotate: int = 0) -> Path:
    """A video whose left half is ``left`` and right half ``right`` (for rotation tests).

    With ``rotate=90`` (clockwise display rotation) an upright decode shows
    ``left`` on top and ``right`` at the bottom, at size ``height x width``.
    """
    w, h = size
    if w % 4:
        raise ValueError("width must be a multiple of 4 (two even halves)")
    half = f"s={w // 2}x{h}:r={fps}:d={seconds}"
    graph = f"color=c={left}:{half}[l];color=c={right}:{half}[r];[l][r]hstack=inputs=2[v]"
    return _encode(_out(path), graph, rotate=rotate)


def make_testsrc(path: str | Path, seconds: float, size: tuple[int, int] = (160, 120), fps: int = 10,
                 faststart: bool = False) -> Path:
    """ffmpeg's moving ``testsrc2`` pattern (every frame differs), H.264 mp4."""
    return _encode(_out(path), f"testsrc2=s={_wh(size)}:r={fps}:d={seconds}[v]", faststart=faststart)


def make_audio_only(path: str | Path, seconds: float) -> Path:
    """An audio-only file (440 Hz sine, AAC; use an ``.m4a`` or ``.mp4`` name)."""
    path = _out(path)
    _ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac", path)
    return path


def make_truncated(path: str | Path, faststart: bool = False, seconds: float = 10, keep: float = 0.5) -> Path:
    """An mp4 of ``seconds`` of testsrc2 cut to its first ``keep`` fraction of bytes.

    Without ``faststart`` the index (moov atom) is at the end, so the cut file
    cannot be opened at all ("moov atom not found"). With ``faststart`` the index
    is at the front: the file probes with its full duration, but the frame data
    stops part-way.
    """
    path = _out(path)
    with tempfile.TemporaryDirectory() as d:
        full = make_testsrc(Path(d) / "full.mp4", seconds, faststart=faststart)
        data = full.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def make_text_file(path: str | Path) -> Path:
    """A plain text file (not media)."""
    path = _out(path)
    path.write_text("meeting notes\n- not a video\n" * 20)
    return path


def make_zero_byte(path: str | Path) -> Path:
    """An empty file."""
    path = _out(path)
    path.write_bytes(b"")
    return path


def make_random_bytes(path: str | Path, n_bytes: int = 64 * 1024, seed: int = 0) -> Path:
    """``n_bytes`` of deterministic pseudo-random bytes (not media)."""
    path = _out(path)
    path.write_bytes(random.Random(seed).randbytes(n_bytes))
    return path


#: a TrueType font for drawtext (ffmpeg 5.1's drawtext needs a font file or fontconfig)
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
)


def font_file() -> str | None:
    """The first installed font of :data:`FONT_CANDIDATES`, else None (drawtext tests skip)."""
    return next((f for f in FONT_CANDIDATES if Path(f).is_file()), None)


def make_lecture(path: str | Path, slides: Sequence[tuple[Sequence[str], float]],
                 size: tuple[int, int] = (1280, 720), fps: int = 5, inset: bool = True,
                 background: str = "white", ink: str = "black") -> Path:
    """A lecture-like video: text slides shown one after another, with a moving speaker inset.

    ``slides`` is ``[(lines, seconds), ...]``: each slide draws its ``lines`` of text (letters,
    digits and spaces) left-aligned from the top-left, the first line large (a title), the
    others smaller (bullets), on ``background``; slide ``i`` is on screen from the sum of the
    earlier durations. With ``inset`` a ``testsrc2`` picture (its timecode cut off) of 1/3 the width and height (1/9 of
    the frame: a speaker's picture-in-picture, its content changing every frame) sits in the
    bottom-right corner and drifts horizontally, 1/12 of the frame width back and forth over
    40 s (a slow, smooth motion). Durations should be multiples of ``1 / fps``.
    """
    font = font_file()
    if font is None:
        raise RuntimeError(f"no font for drawtext: none of {FONT_CANDIDATES} is installed")
    if not slides:
        raise ValueError("slides must not be empty")
    w, h = size
    title_px, line_px = h // 9, h // 16
    parts = []
    for i, (lines, seconds) in enumerate(slides):
        chain = f"color=c={background}:s={_wh(size)}:r={fps}:d={seconds}"
        y = h // 12
        for k, line in enumerate(lines):
            px = title_px if k == 0 else line_px
            chain += (f",drawtext=fontfile={font}:text='{line}':fontsize={px}:fontcolor={ink}"
                      f":x={w // 16}:y={y}")
            y += int(px * (1.8 if k == 0 else 1.5))
        parts.append(f"{chain}[s{i}];")
    labels = "".join(f"[s{i}]" for i in range(len(slides)))
    graph = "".join(parts) + f"{labels}concat=n={len(slides)}:v=1:a=0"
    if inset:
        iw, ih = w // 3 // 2 * 2, h // 3 // 2 * 2
        total = sum(s for _, s in slides)
        # testsrc2 draws a timecode in its top-left corner: crop it off (the inset holds no text)
        graph += (f"[bg];testsrc2=s={iw}x{ih * 5 // 4}:r={fps}:d={total},crop={iw}:{ih}:0:{ih // 4}[pip];"
                  f"[bg][pip]overlay=x='W-w-{w // 40}-{w // 24}*(1-cos(2*PI*t/40))':y=H-h-{h // 40}"
                  ":eval=frame:shortest=1")
    return _encode(_out(path), graph + "[v]")


def make_pan(path: str | Path, seconds: float, speed_px_per_sec: float, size: tuple[int, int] = (640, 360),
             fps: int = 5, noise: int = 0) -> Path:
    """A camera panning right at ``speed_px_per_sec`` over a still page of text, H.264 mp4.

    The page is three frames wide: rows of words in several sizes on white (no motion of its
    own). ``speed_px_per_sec=0`` gives a still picture; ``noise`` (0-100) adds fresh grain to
    every frame (ffmpeg ``noise=alls=N:allf=t``), like a noisy camera or heavy compression.
    """
    font = font_file()
    if font is None:
        raise RuntimeError(f"no font for drawtext: none of {FONT_CANDIDATES} is installed")
    w, h = size
    words = ["archive", "search", "video", "frame", "text", "index", "query", "model", "speech", "slide"]
    chain = f"color=c=white:s={3 * w}x{h}:r={fps}:d={seconds}"
    for row in range(6):
        px = h // (8 + 2 * (row % 3))
        line = " ".join(words[(row + k) % len(words)] for k in range(12))
        chain += f",drawtext=fontfile={font}:text='{line}':fontsize={px}:fontcolor=black:x={w // 20}:y={row * h // 6 + 5}"
    max_x = 2 * w
    chain += f",crop={w}:{h}:x='min({speed_px_per_sec}*t,{max_x})':y=0"
    if noise:
        chain += f",noise=alls={noise}:allf=t"
    return _encode(_out(path), chain + "[v]")


def make_keyframed(path: str | Path, seconds: float, keyframe_sec: float = 2.0, fps: int = 10,
                   size: tuple[int, int] = (160, 120), audio: bool = True) -> Path:
    """testsrc2 with a keyframe exactly every ``keyframe_sec`` seconds (and nowhere else), plus a
    440 Hz AAC tone when ``audio`` (for cutting clips: a stream copy starts on one of these keyframes)."""
    path = _out(path)
    gop = str(round(keyframe_sec * fps))
    tone = ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"] if audio else []
    _ffmpeg("-f", "lavfi", "-i", f"testsrc2=s={_wh(size)}:r={fps}:d={seconds}", *tone, *X264,
            "-g", gop, "-keyint_min", gop, "-sc_threshold", "0", *(["-c:a", "aac"] if audio else []), path)
    return path


def make_photo_like(path: str | Path, width: int, height: int, seed: int = 0, seconds: float = 2) -> Path:
    """A still H.264 clip (1 fps, crf 12) of a colour image with a natural image's 1/f power spectrum."""
    import numpy as np
    from PIL import Image

    path = _out(path)
    rng = np.random.default_rng(seed)
    fy, fx = np.meshgrid(np.fft.fftfreq(height), np.fft.fftfreq(width), indexing="ij")
    amp = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / max(width, height))
    chans = []
    for _ in range(3):
        x = np.real(np.fft.ifft2(amp * np.exp(2j * np.pi * rng.random((height, width)))))
        chans.append((x - x.min()) / (x.max() - x.min()) * 255)
    png = path.with_suffix(".png")
    Image.fromarray(np.stack(chans, -1).astype(np.uint8)).save(png)
    _ffmpeg("-loop", "1", "-i", str(png), "-t", str(seconds), "-r", "1", "-c:v", "libx264", "-crf", "12",
            "-pix_fmt", "yuv420p", str(path))
    return path


def make_lavfi_still(path: str | Path, source: str, width: int, height: int, seconds: float = 2) -> Path:
    """An ffmpeg test source (``testsrc2``, ``smptebars``, ...) at 1 fps, H.264 crf 12."""
    path = _out(path)
    _ffmpeg("-f", "lavfi", "-i", f"{source}=s={width}x{height}:r=1:d={seconds}", "-c:v", "libx264", "-crf", "12",
            "-pix_fmt", "yuv420p", str(path))
    return path


def first_frame_rgb(path: str | Path, width: int, height: int):
    """The first frame decoded to RGB at full resolution: uint8 (height, width, 3), what a user would
    hand an image processor."""
    import numpy as np

    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-vf", "format=rgb24", "-frames:v", "1",
                          "-f", "rawvideo", "pipe:"], capture_output=True, check=True).stdout
    return np.frombuffer(out, np.uint8).reshape(height, width, 3)
