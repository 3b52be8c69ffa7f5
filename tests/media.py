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
