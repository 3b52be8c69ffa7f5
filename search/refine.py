"""Coarse to fine: re-sample the region around a hit at a higher frame rate and re-ground its edges.

The index holds frames at 1 fps, so a span's edges are known to a second at best. For the
top few hits of a search (the GroundZero card's 1 fps -> 4 fps step), the video is read again
around the span — ``[start - pad, end + pad]``, by a seek, at ``fps`` — the frames are embedded
with the same backbone and image processing as at index time, and each edge moves to where the
query's similarity curve crosses half-way between its level inside the coarse span and its
level in the padding around it (:func:`refine_edges`). A span whose inside does not stand out
from its surroundings keeps its coarse edges.

It needs the video: a local file, or an ``s3://`` object read through a presigned link (ffmpeg
fetches only the byte ranges it needs; the endpoint from ``AWS_ENDPOINT_URL``, as for an ``s3://``
index). Videos that cannot be read keep their coarse spans.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from groundzero.errors import GroundZeroError
from groundzero.search.ground_zeroshot import smooth
from groundzero.search.results import Hit

log = logging.getLogger(__name__)


def refine_edges(ts: np.ndarray, sim: np.ndarray, start_sec: float, end_sec: float, fps: float,
                 smooth_frames: int = 3, min_contrast: float = 0.01) -> tuple[float, float]:
    """New ``(start_sec, end_sec)`` of a coarse span from a fine similarity curve around it.

    Args:
        ts: float64 (N,) frame times (seconds), increasing, covering the span and some padding.
        sim: float (N,) cosine of each frame with the query.
        start_sec, end_sec: the coarse span; fps: the fine sampling rate.
    The threshold is midway between the median inside the span and the median of the padding;
    the new start is the first frame at or above it within one padding of the old start, the
    new end the last such frame within one padding of the old end. Unchanged when either side
    has no frames or the inside is not at least ``min_contrast`` above the padding.

    >>> ts = np.arange(0, 10, 0.25); sim = ((ts >= 3.5) & (ts < 7.25)).astype(float)
    >>> refine_edges(ts, sim, 3.0, 8.0, 4.0, smooth_frames=1)
    (3.5, 7.25)
    """
    c = smooth(np.asarray(sim, np.float64), smooth_frames)
    inside = (ts >= start_sec) & (ts < end_sec)
    outside = ~inside
    if not inside.any() or not outside.any():
        return start_sec, end_sec
    hi, lo = float(np.median(c[inside])), float(np.median(c[outside]))
    if hi - lo < min_contrast:
        return start_sec, end_sec
    above = c >= (hi + lo) / 2
    pad = max(start_sec - float(ts[0]), float(ts[-1]) + 1.0 / fps - end_sec)
    near_start = above & (ts >= start_sec - pad) & (ts < start_sec + pad)
    near_end = above & (ts >= end_sec - pad) & (ts < end_sec + pad)
    new_start = float(ts[near_start][0]) if near_start.any() else start_sec
    new_end = float(ts[near_end][-1]) + 1.0 / fps if near_end.any() else end_sec
    return (new_start, new_end) if new_end > new_start else (start_sec, end_sec)


class Refiner:
    """Re-grounds hits' edges at ``fps`` (see the module docstring).

    Args:
        backbone: the index's backbone (:class:`groundzero.model.backbone.Backbone`).
        decode: how the index's frames were made (:meth:`DecodeConfig.for_model
            <groundzero.indexer.decode.DecodeConfig.for_model>`), at the fine sampling rate.
        pad_sec: how far around the span to look; smooth_frames: moving-average width of the fine curve.
    """

    def __init__(self, backbone, decode, pad_sec: float = 2.0, smooth_frames: int = 3):
        self.backbone, self.decode, self.pad_sec, self.smooth_frames = backbone, decode, pad_sec, smooth_frames
        self._streams: dict[str, int | None] = {}  # uri -> the video stream indexing chose

    def refine(self, hit: Hit, q: np.ndarray, duration_sec: float, picture: tuple[int, int] | None = None) -> Hit:
        """``hit`` with its edges re-grounded; unchanged when its video cannot be read.

        Args: q float32 (D,) the query's sentence embedding; duration_sec: the video's length;
        picture: its (height, width) as displayed (the catalog's), which NaFlex frames are sized from
        (probed when None).
        """
        from groundzero.indexer.decode import decode_window
        from groundzero.search.clips import video_source

        a = max(0.0, hit.start_sec - self.pad_sec)
        b = hit.end_sec + self.pad_sec if duration_sec <= 0 else min(duration_sec, hit.end_sec + self.pad_sec)
        try:
            ts, frames = decode_window(video_source(hit.uri, expires_sec=600), a, b, self.decode,
                                       self._stream(hit.uri), picture if picture and min(picture) > 0 else None)
        except (GroundZeroError, OSError, ValueError) as e:
            log.info("refine: %s kept its coarse span: %s", hit.rel_path, e)
            return hit
        if len(ts) == 0:
            return hit
        sim = self.backbone.embed_images(frames) @ np.asarray(q, np.float32)  # (N,)
        s, e = refine_edges(ts, sim, hit.start_sec, hit.end_sec, self.decode.fps, self.smooth_frames)
        if duration_sec > 0:
            e = min(e, duration_sec)
        return replace(hit, start_sec=s, end_sec=e) if e > s else hit

    def _stream(self, uri: str) -> int | None:
        """The video stream the indexer read (probed once per local file; an s3:// object keeps
        ffmpeg's first non-cover-art stream, as probing it would mean fetching it)."""
        if uri not in self._streams:
            from groundzero.indexer.probe import probe

            self._streams[uri] = None if uri.startswith("s3://") else probe(uri).stream_index
        return self._streams[uri]
