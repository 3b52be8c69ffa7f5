"""The row protocol between the pipeline's stages.

The decode stage turns one video (one input row) into a stream of frame rows
followed by exactly one *end row*; the embed stage replaces ``frame`` by
``embedding``; the driver's :class:`VideoAssembler` gathers a video's rows
back together, in any order, and hands over a complete video once its end row
and all its frames have arrived::

    frame row:  video_id, frame_idx, timestamp_sec, frame (S, S, 3) uint8, end_meta = ""
    end row:    video_id, frame_idx = -1, timestamp_sec = 0, frame = zeros, end_meta = JSON

For a NaFlex model (``DecodeConfig.max_patches`` > 0) every row holds the frame as the patch
sequence the model takes, so rows of videos of any aspect ratio share one shape:
``frame`` (max_patches, p*p*3) uint8, zero-padded, and ``spatial`` (2,) int64, the frame's
(h / p, w / p) (:func:`groundzero.model.naflex.to_patches`).

``end_meta`` says how decoding ended: ``{"ok": true, "n_frames", "duration_sec",
"width", "height", "content_hash", "decode_s", "decode_cpu_s"}`` (the decode task's wall and CPU
seconds for the video, ffmpeg's included) (plus ``"reused"``, when still frames reuse embeddings:
``[[frame_idx, timestamp_sec, same_as], ...]``, the frames that emitted no row because their
picture barely changed from frame ``same_as``'s, :mod:`groundzero.indexer.stills`; the assembler
gives each a copy of that frame's embedding, so the timeline keeps every frame; plus
``"segments"``, the video's text segments as :meth:`~groundzero.data.segments.TextSegment.to_json` dicts, and ``"text_notes"``, when the run
reads text channels) or ``{"ok": false, "reason", "error", ...}``;
either may carry a ``"note"`` on what the file holds that was not indexed (other
video streams, :attr:`groundzero.indexer.probe.VideoInfo.note`), for the catalog.
A video whose decoding failed part-way has emitted frames before its failing
end row; the assembler discards them, so a truncated video is never half-indexed.
Rows repeated by a retried Ray task are deduplicated by ``(video_id, frame_idx)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import resource
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np

from groundzero.errors import DecodeError
from groundzero.indexer.channels import ChannelReader, ChannelsConfig
from groundzero.indexer.decode import DecodeConfig, iter_frames
from groundzero.indexer.fetch import local_copy
from groundzero.indexer.probe import probe
from groundzero.indexer.stills import StillConfig, StillFrames
from groundzero.model.naflex import to_patches
from groundzero.store.s3 import S3Config

log = logging.getLogger(__name__)


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def decode_rows(batch: dict[str, np.ndarray], cfg: DecodeConfig, s3: S3Config | None = None,
                tmp_dir: str | None = None, channels: ChannelsConfig | None = None,
                still: StillConfig | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Ray Data generator stage: videos in (columns ``video_id``, ``path``, optional
    ``content_id`` and ``sidecars``: a JSON list of subtitle files' uris), frame rows out.
    ``path`` is a local path or an ``s3://`` uri, downloaded to ``tmp_dir`` first
    (:mod:`groundzero.indexer.fetch`), sidecars too. With ``channels``, the video's text segments
    (:mod:`groundzero.indexer.channels`) ride on its end row (``segments``, ``text_notes``).

    Never raises for a bad video: every failure becomes the video's end row.
    """
    n = len(batch["video_id"])
    content_ids = batch.get("content_id", [""] * n)
    sidecar_lists = batch.get("sidecars", ["[]"] * n)
    for video_id, uri, content_id, sidecars in zip(batch["video_id"], batch["path"], content_ids, sidecar_lists):
        video_id, uri = str(video_id), str(uri)
        meta: dict = {"ok": False}
        clock = _Clock()
        local = uri
        try:
            with ExitStack() as stack:
                local = stack.enter_context(local_copy(uri, str(content_id or ""), s3, tmp_dir))
                reader = ChannelReader(channels) if channels is not None else None
                yield from _frame_rows(video_id, local, cfg, meta, reader,
                                       StillFrames(still) if still is not None else None)
                if reader is not None:
                    subs, notes = {}, []
                    for u in json.loads(sidecars or "[]"):
                        try:
                            subs[stack.enter_context(local_copy(u, "", s3, tmp_dir))] = u
                        except DecodeError as e:  # the captions' problem, not the video's
                            notes.append(f"captions: {e}")
                    segments, read_notes = reader.read(local, list(subs))
                    for path, u in [*subs.items(), (local, uri)]:  # notes name the uris, not downloads
                        read_notes = [n.replace(path, u) for n in read_notes]
                    meta.update(segments=[s.to_json() for s in segments], text_notes=notes + read_notes)
        except DecodeError as e:  # messages name the uri, not a temporary download's path
            meta.update(reason=e.reason, error=str(e).replace(local, uri))
        except Exception as e:  # keep the run going; the catalog says what broke
            log.exception("unexpected error decoding %s", uri)
            meta.update(reason="decode_failed", error=f"{uri}: {type(e).__name__}: {e}")
        meta.update(clock.spent("decode"))
        yield {
            "video_id": np.array([video_id], dtype=object),
            "frame_idx": np.array([-1], np.int64),
            "timestamp_sec": np.zeros(1, np.float64),
            **_pixels(np.zeros((1, cfg.patch_size, cfg.patch_size, 3) if cfg.max_patches else
                               (1, cfg.size, cfg.size, 3), np.uint8), cfg),
            "end_meta": np.array([json.dumps(meta)], dtype=object),
        }


class _Clock:
    """Wall and CPU seconds since it was made: this process's and its finished children's (ffmpeg)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), _cpu_seconds()

    def spent(self, stage: str) -> dict[str, float]:
        return {f"{stage}_s": round(time.perf_counter() - self.wall, 4),
                f"{stage}_cpu_s": round(_cpu_seconds() - self.cpu, 4)}


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have exited (user + system)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _pixels(frames: np.ndarray, cfg: DecodeConfig) -> dict[str, np.ndarray]:
    """The rows' picture columns: ``frame`` as decoded, or NaFlex patches plus ``spatial``."""
    if not cfg.max_patches:
        return {"frame": frames}
    patches, spatial = to_patches(frames, cfg.patch_size, cfg.max_patches)
    return {"frame": patches, "spatial": spatial}


def _frame_rows(video_id: str, path: str, cfg: DecodeConfig, meta: dict, reader: ChannelReader | None = None,
                stills: StillFrames | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Frame rows of one local file; fills ``meta``; raises :class:`DecodeError` on failure.
    ``reader`` sees every chunk of frames (on-screen text finds the picture's changes there);
    ``stills`` says which frames reuse an embedding (no row; listed in ``meta["reused"]``)."""
    info = probe(path)
    if reader is not None:
        reader.info = info
    meta.update(duration_sec=info.duration_sec, width=info.width, height=info.height)
    if info.note:
        meta["note"] = info.note
    n = 0
    reused: list[list] = []
    for chunk in iter_frames(path, cfg, info):
        k = len(chunk.timestamps_sec)
        if reader is not None:
            reader.feed(chunk.frames, chunk.timestamps_sec)
        frame_idx = np.arange(chunk.first_frame_idx, chunk.first_frame_idx + k, dtype=np.int64)
        ts = chunk.timestamps_sec.astype(np.float64)
        keep = slice(None)
        if stills is not None:
            same_as = stills.feed(chunk.frames, ts, frame_idx)
            reused += [[int(frame_idx[i]), float(ts[i]), int(same_as[i])] for i in np.flatnonzero(same_as >= 0)]
            keep = np.flatnonzero(same_as < 0)
        n += k
        m = len(frame_idx[keep])
        if m == 0:
            continue
        yield {
            "video_id": np.array([video_id] * m, dtype=object),
            "frame_idx": frame_idx[keep],
            "timestamp_sec": ts[keep],
            **_pixels(chunk.frames[keep], cfg),
            "end_meta": np.array([""] * m, dtype=object),
        }
    if n == 0:
        raise DecodeError("decode_failed", f"{path}: ffmpeg produced no frames; the video stream may be empty")
    if stills is not None:
        meta["reused"] = reused
    meta.update(ok=True, n_frames=n, content_hash=file_sha256(path))


@dataclass
class _Pending:
    frames: dict[int, tuple[float, np.ndarray]] = field(default_factory=dict)
    end: dict | None = None
    embed_s: float = 0.0  #: the embed stage's wall seconds for this video's rows
    embed_cpu_s: float = 0.0


@dataclass(frozen=True)
class AssembledVideo:
    """A whole video back from the pipeline: either embedded frames or a failure."""

    video_id: str
    meta: dict  #: the decoded end_meta (see module docstring)
    timestamps_sec: np.ndarray  #: float64 (T,) in frame order (empty on failure)
    embeddings: np.ndarray  #: float32 (T, D) (empty on failure)

    @property
    def ok(self) -> bool:
        return bool(self.meta.get("ok"))


class VideoAssembler:
    """Driver side: feed embedded batches, get complete videos back."""

    def __init__(self) -> None:
        self._pending: dict[str, _Pending] = {}
        self._done: set[str] = set()  # rows arriving late for a finished video are ignored

    def add(self, batch: dict[str, np.ndarray]) -> list[AssembledVideo]:
        """Consume one batch; return the videos it completed."""
        touched: set[str] = set()
        for i, vid in enumerate(batch["video_id"]):
            vid = str(vid)
            if vid in self._done:
                continue
            p = self._pending.setdefault(vid, _Pending())
            meta = batch["end_meta"][i]
            if meta:
                p.end = json.loads(meta)
            else:
                p.frames[int(batch["frame_idx"][i])] = (float(batch["timestamp_sec"][i]), batch["embedding"][i])
            if "embed_s" in batch:  # the embed stage's time, shared out over its batch's rows
                p.embed_s += float(batch["embed_s"][i])
                p.embed_cpu_s += float(batch["embed_cpu_s"][i])
            touched.add(vid)
        return [v for vid in sorted(touched) if vid in self._pending and (v := self._complete(vid)) is not None]

    def _complete(self, vid: str) -> AssembledVideo | None:
        p = self._pending[vid]
        if p.end is None:
            return None
        if p.end.get("ok"):
            reused = p.end.get("reused", [])
            if len(p.frames) < p.end["n_frames"] - len(reused):
                return None  # the end row overtook some frame rows
            del self._pending[vid]
            self._done.add(vid)
            frames = dict(p.frames)
            for k, t, same_as in reused:  # a still frame: its reference's embedding, its own time
                frames[int(k)] = (float(t), p.frames[int(same_as)][1])
            order = sorted(frames)
            ts = np.array([frames[k][0] for k in order], np.float64)
            emb = np.stack([frames[k][1] for k in order]).astype(np.float32)
            return AssembledVideo(vid, {**p.end, "embed_s": p.embed_s, "embed_cpu_s": p.embed_cpu_s}, ts, emb)
        del self._pending[vid]  # failed: frames emitted before the failure are dropped
        self._done.add(vid)
        return AssembledVideo(vid, p.end, np.zeros(0), np.zeros((0, 0), np.float32))

    def flush_incomplete(self) -> list[AssembledVideo]:
        """After the stream ends: every video still incomplete, as a failure."""
        out = []
        for vid, p in sorted(self._pending.items()):
            got = (f"{len(p.frames)} of {p.end['n_frames'] - len(p.end.get('reused', []))} embedded frames"
                   if p.end else "no end-of-video row")
            meta = {"ok": False, "reason": "decode_failed", "error": f"the pipeline lost rows of this video ({got})"}
            out.append(AssembledVideo(vid, meta, np.zeros(0), np.zeros((0, 0), np.float32)))
            self._done.add(vid)
        self._pending.clear()
        return out
