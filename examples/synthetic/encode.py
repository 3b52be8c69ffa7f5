"""Frames to H.264: a timeline's frames, streamed into ``ffmpeg`` (libx264, yuv420p, mp4).

:func:`iter_frames` renders a timeline at a frame rate (reusing the last frame while
nothing changes); :func:`write_video` pipes frames into ffmpeg, the file appearing
under its name only once complete.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from groundzero.errors import ConfigError, FFmpegNotFoundError, GroundZeroError
from groundzero.synthetic.events import Event, is_static
from groundzero.synthetic.render import render_frame


def iter_frames(events: Sequence[Event], duration_sec: float, fps: int,
                size: tuple[int, int]) -> Iterator[np.ndarray]:
    """Frames ``i = 0 .. round(duration_sec * fps) - 1`` at ``t = i / fps`` s, each (H, W, 3) uint8.

    Keeps only the active events at hand, and reuses the previous frame while
    nothing on screen moves or changes (long empty stretches cost nothing):
    the same array may be yielded again, so consumers must not modify it.
    """
    pending = sorted(events, key=lambda e: e.start_sec)
    active: list[Event] = []
    nxt = 0
    last_key: tuple[int, ...] | None = None
    frame = np.empty(0)
    for i in range(round(duration_sec * fps)):
        t = i / fps
        while nxt < len(pending) and pending[nxt].start_sec <= t:
            active.append(pending[nxt])
            nxt += 1
        active = [e for e in active if e.end_sec > t]
        key = tuple(id(e) for e in active)
        if key != last_key or not all(is_static(e) for e in active):
            frame = render_frame(active, t, size)
            last_key = key
        yield frame


def write_video(
    path: str | Path, frames: Iterator[np.ndarray], fps: int, size: tuple[int, int]
) -> Path:
    """Encode ``frames`` ((H, W, 3) uint8 RGB each) to H.264 mp4 at ``path``, streaming.

    Frames are piped one by one as raw RGB into ``ffmpeg ... -c:v libx264
    -preset ultrafast -pix_fmt yuv420p``; the file appears under its name only
    once complete. Raises FFmpegNotFoundError without ffmpeg on PATH and
    GroundZeroError (with ffmpeg's message) when encoding fails.
    """
    path = Path(path)
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise FFmpegNotFoundError(
            "ffmpeg not found on PATH; install it (Debian: apt-get install ffmpeg)"
        )
    w, h = size
    part = path.with_name(path.name + ".part")
    cmd = [
        exe, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-map_metadata", "-1", "-fflags", "+bitexact", "-f", "mp4", str(part),
    ]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        assert proc.stdin is not None
        try:
            for frame in frames:
                if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
                    raise ConfigError(
                        f"{path}: frame {frame.shape} {frame.dtype}, expected ({h}, {w}, 3) uint8"
                    )
                proc.stdin.write(frame.tobytes())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg died: its status and message are reported below
        except BaseException:
            proc.kill()
            proc.wait()
            part.unlink(missing_ok=True)
            raise
        rc = proc.wait()
        if rc != 0:
            err.seek(0)
            msg = err.read().decode(errors="replace").strip()
            part.unlink(missing_ok=True)
            raise GroundZeroError(f"{path}: ffmpeg failed to encode (exit {rc}): {msg[-2000:]}")
    part.replace(path)
    return path
