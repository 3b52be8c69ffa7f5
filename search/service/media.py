"""Serving the archive's own video files: byte ranges, thumbnails, S3 links.

Nothing here turns a request string into a path. Callers look the video id up in the
catalog and pass the catalog's ``uri``; the request only ever chooses *which bytes* of
that file (``Range``) or *which instant* (a float ``t``).
"""

from __future__ import annotations

import mimetypes
import os
import re
import subprocess
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK_BYTES = 256 * 1024
VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
               ".mkv": "video/x-matroska", ".avi": "video/x-msvideo", ".ts": "video/mp2t",
               ".mpg": "video/mpeg", ".mpeg": "video/mpeg", ".ogv": "video/ogg"}
_RANGE = re.compile(r"^[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*$")
#: byte positions are read up to this many digits; a longer number is larger than any file (and than
#: what ``int()`` converts: 4300 digits at most)
MAX_POSITION_DIGITS = 18


class RangeNotSatisfiable(Exception):
    """The Range header asks for bytes the file does not have (answer 416)."""


@dataclass(frozen=True)
class ByteRange:
    start: int  #: first byte, inclusive
    end: int  #: last byte, inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range a ``Range`` header asks for, or None to send the whole file.

    RFC 9110 section 14.2: a unit other than ``bytes`` and a list of several ranges are
    ignored (the whole file is sent); a ``bytes=`` range that is malformed, reversed or starts
    past the end is unsatisfiable.

    >>> parse_range("bytes=0-99", 1000), parse_range("bytes=-100", 1000), parse_range("bytes=990-", 1000)
    (ByteRange(start=0, end=99), ByteRange(start=900, end=999), ByteRange(start=990, end=999))
    >>> parse_range("bytes=0-5000", 1000), parse_range("items=0-5", 1000), parse_range(None, 1000)
    (ByteRange(start=0, end=999), None, None)
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        return None
    m = _RANGE.match(spec)
    if m is None or (not m.group(1) and not m.group(2)):
        raise RangeNotSatisfiable(f"malformed Range header {header[:80]!r}; expected bytes=START-END")
    first, last = m.group(1), m.group(2)
    if not first:  # suffix: the last N bytes
        n = _position(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(f"the range {header[:80]!r} selects no bytes")
        return ByteRange(max(0, size - n), size - 1)
    start = _position(first)
    end = min(_position(last), size - 1) if last else size - 1
    if start >= size or (last and _position(last) < start):
        raise RangeNotSatisfiable(f"the range {header[:80]!r} lies outside the file's {size} bytes")
    return ByteRange(start, end)


def _position(digits: str) -> int:
    """A byte position of a Range header; one of more than 18 significant digits reads as 10**18.

    That is past the end of any file, and orders the same against any real position (so a
    huge start is unsatisfiable, a huge end or suffix means "to the end").

    >>> _position("0042"), _position("9" * 5000) == 10**18, _position("0" * 5000 + "7")
    (42, True, 7)
    """
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= MAX_POSITION_DIGITS else 10**MAX_POSITION_DIGITS


def content_type(uri: str) -> str:
    suffix = Path(uri).suffix.lower()
    return VIDEO_TYPES.get(suffix) or mimetypes.guess_type(uri)[0] or "application/octet-stream"


def iter_file(path: str, start: int, length: int, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
    """``length`` bytes of ``path`` from ``start``, in chunks (the file is opened when iteration starts)."""
    with open(path, "rb") as f:
        f.seek(start)
        left = length
        while left > 0:
            data = f.read(min(chunk, left))
            if not data:  # the file shrank since it was measured
                return
            left -= len(data)
            yield data


def iter_then_close(f: BinaryIO, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The rest of the open file ``f`` in chunks; ``f`` is closed at the end, or when the client goes away."""
    try:
        while data := f.read(chunk):
            yield data
    finally:
        f.close()


class ThumbnailError(Exception):
    """ffmpeg could not produce a frame (file unreadable, or nothing at that instant)."""


#: a grab at t that finds no frame (t in the last frame's interval) takes the last frame of this many
#: seconds before t instead
LOOKBACK_SEC = 10.0


def cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class Thumbnailer:
    """JPEG frames grabbed with ffmpeg, remembered in a small LRU (key: uri, time to 0.1 s, width).

    At most ``max_procs`` ffmpeg processes run at once (default: one per CPU); a burst of
    requests queues for them. ``running`` and ``peak`` count the processes (now, and at most so far).
    """

    def __init__(self, cache_size: int = 512, timeout_sec: float = 20.0, ffmpeg: str = "ffmpeg",
                 max_procs: int | None = None):
        self.cache_size, self.timeout_sec, self.ffmpeg = cache_size, timeout_sec, ffmpeg
        self.max_procs = max_procs or cpu_count()
        self.running = self.peak = 0
        self._cache: OrderedDict[tuple[str, float, int], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.max_procs)

    @staticmethod
    def key(uri: str, t_sec: float, width: int) -> tuple[str, float, int]:
        return uri, round(t_sec, 1), width

    def cached(self, uri: str, t_sec: float, width: int) -> bytes | None:
        """The remembered frame, if any (no ffmpeg; cheap enough for an event loop)."""
        key = self.key(uri, t_sec, width)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        return None

    def jpeg(self, uri: str, t_sec: float, width: int, source: str | None = None) -> bytes:
        """The frame of ``uri`` shown at ``t_sec``, ``width`` pixels wide.

        ``source``: what ffmpeg reads, when not ``uri`` itself (a presigned S3 link: the cache
        stays keyed on the stable ``uri``). When no frame starts at or after ``t_sec`` (``t_sec`` lies
        in the last frame's interval, up to the video's duration) the last frame before it is taken.
        """
        data = self.cached(uri, t_sec, width)
        if data is not None:
            return data
        key = self.key(uri, t_sec, width)
        data = self._grab(source or uri, key[1], width)
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return data

    def _grab(self, uri: str, t_sec: float, width: int) -> bytes:
        # -ss before -i seeks by keyframe then decodes up to t: fast and frame-exact.
        out = ["-vf", f"scale={width}:-2", "-q:v", "4", "-c:v", "mjpeg"]
        r = self._run(["-ss", f"{t_sec:.3f}", "-i", uri, "-frames:v", "1", *out, "-f", "image2pipe", "pipe:1"], uri)
        if r.stdout:
            return r.stdout
        if t_sec > 0:  # nothing starts at or after t: the frame shown at t started before it
            with tempfile.TemporaryDirectory(prefix="gz-thumb-") as d:
                last = os.path.join(d, "last.jpg")  # -update 1: each frame overwrites it; the last one stays
                back = min(t_sec, LOOKBACK_SEC)
                self._run(["-ss", f"{t_sec - back:.3f}", "-t", f"{back + 0.5:.3f}", "-i", uri, *out,
                           "-update", "1", "-f", "image2", last], uri)
                if os.path.isfile(last) and os.path.getsize(last) > 0:
                    with open(last, "rb") as f:
                        return f.read()
        err = r.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ThumbnailError(f"no frame at {t_sec:.1f} s in {uri}: {err[-1] if err else 'no output'}")

    def _run(self, args: list[str], uri: str) -> subprocess.CompletedProcess:
        """One ffmpeg run, once one of the ``max_procs`` slots is free."""
        cmd = [self.ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", *args]
        with self._slots:
            with self._lock:
                self.running += 1
                self.peak = max(self.peak, self.running)
            try:
                return subprocess.run(cmd, capture_output=True, timeout=self.timeout_sec, check=False)
            except FileNotFoundError as e:
                raise ThumbnailError("ffmpeg is not installed on the server (apt-get install ffmpeg)") from e
            except subprocess.TimeoutExpired as e:
                raise ThumbnailError(f"ffmpeg took over {self.timeout_sec:.0f} s for a frame of {uri}") from e
            finally:
                with self._lock:
                    self.running -= 1
