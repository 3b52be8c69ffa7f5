"""The one writer of an index directory: stage videos, then commit a snapshot.

Usage (the indexer's driver is the only caller)::

    with IndexWriter.open(index_dir, identity, params) as w:
        w.put_indexed(entry, timestamps, embeddings)   # writes this video's Parquet files
        w.put_failed(entry, reason, error)
        w.remove(uri)
        w.commit(run_id)                              # atomically publishes all of the above

Nothing staged is visible to readers until :meth:`commit` swaps the manifest;
a crash before that leaves the previous snapshot whole (the orphaned Parquet
files are harmless and are ignored).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from core.errors import IndexLockedError, IndexMismatchError
from core.model.backbone import ModelIdentity
from core.proposals import make_windows
from core.store import tables
from core.store.catalog import read_catalog, write_catalog
from core.store.layout import IndexLayout
from core.store.manifest import IndexParams, Manifest, check_model, read_manifest, write_manifest
from core.store.vectors import ContextIndex, encode_ids

log = logging.getLogger(__name__)


def video_id_for(uri: str) -> str:
    """Stable id of a video location (sha1 of its uri, 16 hex digits)."""
    return hashlib.sha1(uri.encode()).hexdigest()[:16]


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class VideoEntry:
    """What the archive listing and the decoder know about one video file."""

    uri: str
    rel_path: str
    size_bytes: int
    mtime_ns: int
    content_hash: str = ""
    duration_sec: float = 0.0
    width: int = 0
    height: int = 0


class IndexWriter:
    """Stages changes to one index directory under an exclusive lock."""

    def __init__(self, layout: IndexLayout, identity: ModelIdentity, params: IndexParams,
                 faiss_factory: str, lock_fd: int):
        self.layout = layout
        self.identity = identity
        self.params = params
        self.faiss_factory = faiss_factory
        self._lock_fd = lock_fd
        self.manifest = read_manifest(layout)
        self.rows: dict[str, dict] = {r["uri"]: r for r in read_catalog(layout, self.manifest)}
        if self.manifest is not None and self.manifest.faiss_file:
            self.vectors = ContextIndex.load(layout.path(self.manifest.faiss_file))
        else:
            self.vectors = ContextIndex.create(identity.embed_dim, faiss_factory)
        self._next_seq = 1 + max((r["video_seq"] for r in self.rows.values()), default=-1)
        self.extra: dict = dict(self.manifest.extra) if self.manifest else {}
        self._dirty = False

    @classmethod
    def open(cls, index_dir: str | Path, identity: ModelIdentity, params: IndexParams,
             faiss_factory: str = "Flat", retokenize: bool = False) -> "IndexWriter":
        """Take the writer lock and check the index matches the model and parameters.

        With ``retokenize`` the context-token kind and count may differ (the caller
        then rewrites every proposal with :meth:`retokenize`); nothing else may.
        """
        layout = IndexLayout(Path(index_dir).expanduser())
        layout.root.mkdir(parents=True, exist_ok=True)
        layout.make_dirs()
        fd = os.open(layout.lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # flock is released by the kernel when the holder dies, so a crashed
            # run never leaves a stale lock behind.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.close(fd)
            raise IndexLockedError(
                f"index {layout.root} is being written by another run ({holder or 'unknown process'}); "
                "wait for it to finish, or use another --index directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {utc_now()}".encode(), 0)
        try:
            m = read_manifest(layout)
            if m is not None:
                check_model(m, identity, layout.root)
                same = (replace(m.params, token_kind="", proposals=replace(m.params.proposals, tokens_per_proposal=0))
                        == replace(params, token_kind="", proposals=replace(params.proposals, tokens_per_proposal=0))
                        if retokenize else m.params == params)
                if not same:
                    raise IndexMismatchError(
                        f"index {layout.root} was built with {m.params.to_dict()}, this run asks for "
                        f"{params.to_dict()}; use the same settings or a new --index directory"
                    )
            return cls(layout, identity, params, faiss_factory, fd)
        except BaseException:
            os.close(fd)
            raise

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> "IndexWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- staging ---------------------------------------------------------------

    def previous(self, uri: str) -> dict | None:
        """The committed (or staged) catalog row of a uri, if any."""
        return self.rows.get(uri)

    def uris(self) -> set[str]:
        return set(self.rows)

    def _seq_for(self, uri: str) -> int:
        old = self.rows.get(uri)
        if old is not None:
            return int(old["video_seq"])
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        return seq

    def put_indexed(self, entry: VideoEntry, run_id: str, timestamps_sec: np.ndarray,
                    embeddings: np.ndarray, windows: np.ndarray, tokens: np.ndarray) -> dict:
        """Write one video's frames and proposals; stage its catalog row and vectors.

        Args:
            timestamps_sec: float64 (T,) in frame order; embeddings: float32 (T, D).
            windows: int64 (P, 2) proposal frame ranges; tokens: float32 (P, K, D) context tokens.
        """
        known = entry.uri in self.rows
        vid, seq = video_id_for(entry.uri), self._seq_for(entry.uri)
        p = self.params
        stem = f"videos/{vid}-{run_id}"
        frames_file, props_file = f"{stem}.frames.parquet", f"{stem}.proposals.parquet"
        tables.write_frames(self.layout.path(frames_file), vid, timestamps_sec, embeddings)
        tables.write_proposals(self.layout.path(props_file), vid, windows, timestamps_sec, p.fps, tokens)
        if known:  # removal rebuilds IndexIDMap2's reverse map (O(ntotal)): only when there is something to remove
            self.vectors.remove_video(seq)
        self.vectors.add(encode_ids(seq, len(windows), tokens.shape[1]), tokens.reshape(-1, tokens.shape[-1]))
        row = self._row(entry, vid, seq, run_id, status="indexed", n_frames=len(timestamps_sec),
                        n_proposals=len(windows), frames_file=frames_file, proposals_file=props_file)
        self.rows[entry.uri] = row
        self._dirty = True
        return row

    def put_failed(self, entry: VideoEntry, run_id: str, reason: str, error: str) -> dict:
        """Record a failure. A video that failed no longer matches what was indexed, so it
        leaves search; its earlier data files stay on disk with the earlier snapshots."""
        known = entry.uri in self.rows
        vid, seq = video_id_for(entry.uri), self._seq_for(entry.uri)
        if known:
            self.vectors.remove_video(seq)
        row = self._row(entry, vid, seq, run_id, status="failed", reason=reason, error=error)
        self.rows[entry.uri] = row
        self._dirty = True
        return row

    def remove(self, uri: str) -> None:
        """Forget a video that is no longer in the archive."""
        row = self.rows.pop(uri, None)
        if row is not None:
            self.vectors.remove_video(int(row["video_seq"]))
            self._dirty = True

    def _row(self, e: VideoEntry, vid: str, seq: int, run_id: str, *, status: str, reason: str = "",
             error: str = "", n_frames: int = 0, n_proposals: int = 0, frames_file: str = "",
             proposals_file: str = "") -> dict:
        return {
            "video_id": vid, "video_seq": seq, "uri": e.uri, "rel_path": e.rel_path,
            "size_bytes": e.size_bytes, "mtime_ns": e.mtime_ns, "content_hash": e.content_hash,
            "duration_sec": float(e.duration_sec), "width": e.width, "height": e.height,
            "n_frames": n_frames, "n_proposals": n_proposals, "status": status, "reason": reason,
            "error": error, "frames_file": frames_file, "proposals_file": proposals_file,
            "run_id": run_id, "updated_at": utc_now(),
        }

    def retokenize(self, params: IndexParams, make_tokens, run_id: str) -> int:
        """Recompute every indexed video's context tokens from its stored frames (no decoding).

        ``make_tokens(frame_emb (T, D), windows (P, 2)) -> (P, K, D)``. The FAISS index is
        rebuilt; returns the number of videos rewritten. Visible after :meth:`commit`.
        """
        self.params = params
        self.vectors = ContextIndex.create(self.identity.embed_dim, self.faiss_factory)
        n = 0
        for uri, row in sorted(self.rows.items(), key=lambda kv: kv[1]["video_seq"]):
            if row["status"] != "indexed":
                continue
            ts, emb = tables.read_frames(self.layout.path(row["frames_file"]))
            windows = make_windows(len(ts), params.fps, params.proposals)
            tokens = make_tokens(emb, windows)
            props_file = f"videos/{row['video_id']}-{run_id}.proposals.parquet"
            tables.write_proposals(self.layout.path(props_file), row["video_id"], windows, ts, params.fps, tokens)
            self.vectors.add(encode_ids(int(row["video_seq"]), len(windows), tokens.shape[1]),
                             tokens.reshape(-1, tokens.shape[-1]))
            self.rows[uri] = {**row, "proposals_file": props_file, "n_proposals": len(windows),
                              "run_id": run_id, "updated_at": utc_now()}
            n += 1
        self._dirty = True
        return n

    # -- commit ----------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        return self._dirty

    def commit(self, run_id: str) -> Manifest:
        """Publish everything staged so far as a new snapshot (atomic for readers)."""
        version = (self.manifest.version if self.manifest else 0) + 1
        cat_file = self.layout.catalog_file(version)
        rows = sorted(self.rows.values(), key=lambda r: r["video_seq"])
        write_catalog(self.layout.path(cat_file), rows)
        faiss_file = self.layout.faiss_file(version)
        self.vectors.save(self.layout.path(faiss_file))
        m = Manifest(
            version=version, created_at=utc_now(), run_id=run_id, model=self.identity,
            params=self.params, catalog_file=cat_file, faiss_file=faiss_file,
            faiss_factory=self.faiss_factory,
            n_videos=sum(r["status"] == "indexed" for r in rows), n_tokens=self.vectors.ntotal,
            extra=self.extra,
        )
        write_manifest(self.layout, m)
        self.manifest = m
        self._dirty = False
        log.info("committed snapshot %d: %d videos, %d tokens", version, m.n_videos, m.n_tokens)
        return m
