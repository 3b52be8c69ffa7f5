"""Serving the archive's own video files: byte ranges, thumbnails, S3 links.

Nothing here turns a request string into a path. Callers look the video id up in the
catalog and pass the catalog's ``uri``; the request only ever chooses *which bytes* of
that file (``Range``) or *which instant* (a float ``t``).
"""

from __future__ import annotations

import mimetypes
import re
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CHUNK_BYTES = 256 * 1024
VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
               ".mkv": "video/x-matroska", ".avi": "video/x-msvideo", ".ts": "video/mp2t",
               ".mpg": "video/mpeg", ".mpeg": "video/mpeg", ".ogv": "video/ogg"}
_RANGE = re.compile(r"^[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*$")


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
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(f"the range {header[:80]!r} selects no bytes")
        return ByteRange(max(0, size - n), size - 1)
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise RangeNotSatisfiable(f"the range {header[:80]!r} lies outside the file's {size} bytes")
    return ByteRange(start, end)


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


def presigned_url(uri: str, expires_sec: int = 3600, client=None) -> str:
    """An HTTPS link to an ``s3://bucket/key`` object that a browser can fetch for a while.

    Signing is local (no request to S3); it needs AWS credentials in the usual places.
    """
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise ValueError(f"{uri!r} is not an s3://bucket/key uri")
    if client is None:
        import boto3

        client = boto3.client("s3")
    return client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                         ExpiresIn=expires_sec)


class ThumbnailError(Exception):
    """ffmpeg could not produce a frame (file unreadable, or nothing at that instant)."""


class Thumbnailer:
    """JPEG frames grabbed with ffmpeg, remembered in a small LRU (key: uri, time to 0.1 s, width)."""

    def __init__(self, cache_size: int = 512, timeout_sec: float = 20.0, ffmpeg: str = "ffmpeg"):
        self.cache_size, self.timeout_sec, self.ffmpeg = cache_size, timeout_sec, ffmpeg
        self._cache: OrderedDict[tuple[str, float, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def jpeg(self, uri: str, t_sec: float, width: int) -> bytes:
        key = (uri, round(t_sec, 1), width)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        data = self._grab(uri, key[1], width)
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return data

    def _grab(self, uri: str, t_sec: float, width: int) -> bytes:
        # -ss before -i seeks by keyframe then decodes up to t: fast and frame-exact.
        cmd = [self.ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-ss", f"{t_sec:.3f}", "-i", uri,
               "-frames:v", "1", "-vf", f"scale={width}:-2", "-q:v", "4", "-f", "image2pipe", "-c:v", "mjpeg",
               "pipe:1"]
        try:
            r = subprocess.run(cmd, capture_output=True, timeout=self.timeout_sec, check=False)
        except FileNotFoundError as e:
            raise ThumbnailError("ffmpeg is not installed on the server (apt-get install ffmpeg)") from e
        except subprocess.TimeoutExpired as e:
            raise ThumbnailError(f"ffmpeg took over {self.timeout_sec:.0f} s for a frame of {uri}") from e
        if r.returncode != 0 or not r.stdout:
            err = r.stderr.decode("utf-8", "replace").strip().splitlines()
            raise ThumbnailError(f"no frame at {t_sec:.1f} s in {uri}: {err[-1] if err else 'no output'}")
        return r.stdout
