"""The one writer of an index directory: stage videos, then commit a snapshot.

Usage (the indexer's driver is the only caller)::

    with IndexWriter.open(index_dir, identity, params) as w:
        w.put_indexed(entry, run_id, timestamps, embeddings, windows, tokens,
                      segments=segments)               # writes this video's Parquet files
        w.put_failed(entry, reason, error)
        w.remove(uri)
        w.commit(run_id)                              # atomically publishes all of the above

Nothing staged is visible to readers until :meth:`commit` swaps the manifest;
a crash before that (or during it) leaves the previous snapshot whole. What a
killed run leaves behind is cleaned up by the next writer:

* its files — per-video Parquet, catalog / FAISS files of an unfinished commit,
  ``.*.tmp`` files — are unreferenced, and :func:`groundzero.store.gc.collect_garbage`
  deletes them after the next commit (also old snapshots beyond retention);
* its run record still says ``running``: the next writer marks it ``aborted``
  (it holds the lock, so that run cannot still be alive), and deletes the ``.*.tmp``
  files of its interrupted writes before writing anything (:func:`remove_tmp_files`);
* its lock: see :mod:`groundzero.store.lock` (flock: freed by the kernel at once;
  lease: expires after ``lease_sec``).

A run that cannot go on (the disk is full: :func:`disk_full_errno`) calls
:meth:`IndexWriter.discard_uncommitted`, which deletes at once what it wrote since its last
commit, the ``.*.tmp`` files, and the garbage of earlier runs, so the space is free for the
next run (which would otherwise fail before its first commit could collect any of it).

The context-token vectors of staged videos are kept in memory and applied to
the FAISS index at commit: all removals in one pass, then all additions (for
an IVF index a removal pass scans every list, so one per commit, not one per
video). At commit the growth policy (:mod:`groundzero.store.vectors`) may rebuild the
index from the store's proposal files (Flat -> IVF, or retraining).

Text segments (captions, speech, on-screen text) go the same way: written per video at
:meth:`IndexWriter.put_indexed`, kept in memory, and applied at commit to a copy of the previous
snapshot's full-text index (:mod:`groundzero.store.text`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from groundzero.data.proposals import make_windows
from groundzero.data.segments import TextSegment
from groundzero.errors import IndexDamagedError, IndexMismatchError
from groundzero.model.identity import ModelIdentity
from groundzero.store import tables, text
from groundzero.store.catalog import read_catalog, write_catalog
from groundzero.store.cleanup import (
    mark_dead_runs,
    remove_tmp_files,
    tmp_files,
    utc_now,
)
from groundzero.store.gc import RetentionPolicy, collect_garbage
from groundzero.store.layout import IndexLayout
from groundzero.store.lock import LockConfig, WriterLock, acquire_writer_lock
from groundzero.store.manifest import (
    IndexParams,
    Manifest,
    check_model,
    read_manifest,
    remember_written,
    write_manifest,
)
from groundzero.store.rebuild import build_from_store, codes_from_store
from groundzero.store.vectors import (
    ContextIndex,
    VectorState,
    encode_ids,
    plan_structure,
    validate_spec,
)

log = logging.getLogger(__name__)


def video_id_for(uri: str) -> str:
    """Stable id of a video location (sha1 of its uri, 16 hex digits)."""
    return hashlib.sha1(uri.encode()).hexdigest()[:16]




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
    content_id: str = ""  #: "etag:<ETag>" for S3 objects, "sha256:<hex>" for local files; "" unknown
    note: str = ""  #: the decoder's note on what was not indexed (e.g. other video streams); "" none
    sidecars: tuple[str, ...] = ()  #: uris of its subtitle files (groundzero.indexer.sources)
    sidecar_stamp: str = ""  #: their names, sizes and mtimes / ETags: a change re-indexes the video


class IndexWriter:
    """Stages changes to one index directory under the writer's lock (see module docstring)."""

    def __init__(self, layout: IndexLayout, identity: ModelIdentity, params: IndexParams,
                 faiss_factory: str, lock: WriterLock, retention: RetentionPolicy | None = None):
        self.layout = layout
        self.identity = identity
        self.params = params
        self.faiss_factory = faiss_factory  #: "auto[:...]" growth policy or a fixed FAISS factory string
        self.lock = lock
        self.retention = retention or RetentionPolicy()
        self.manifest = read_manifest(layout)
        self.rows: dict[str, dict] = {r["uri"]: r for r in read_catalog(layout, self.manifest)}
        if self.manifest is not None and self.manifest.faiss_file:
            self.vectors = ContextIndex.load(layout.path(self.manifest.faiss_file))
        else:
            self.vectors = ContextIndex.create(identity.embed_dim, "Flat")
        self.extra: dict = dict(self.manifest.extra) if self.manifest else {}
        self.vector_state = VectorState.from_dict(self.extra.get("vectors"), self.vectors)
        self._next_seq = 1 + max((r["video_seq"] for r in self.rows.values()), default=-1)
        # what self.vectors holds per video: seq -> n_proposals, times _committed_k tokens each
        self._committed_k = self.manifest.params.proposals.tokens_per_proposal if self.manifest else 0
        self._committed = self._proposals_by_seq()
        self._pending_add: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # seq -> (ids, vectors)
        self._pending_remove: set[int] = set()  # seqs whose committed vectors must go
        self._rebuild = False  # retokenize: build the vectors afresh from the proposal files
        # the text index, likewise: seq -> (video_id, segments) to add, seqs whose committed rows must go
        self._text_add: dict[int, tuple[str, Sequence[TextSegment]]] = {}
        self._text_remove: set[int] = set()
        self._dirty = False
        # what this writer wrote: files since its last commit (no snapshot names them), the file
        # being written when a write failed, bytes in all, and per indexed video (for estimates)
        self._staged: list[Path] = []
        self.writing: Path | None = None
        self.bytes_written = 0
        self._videos_written, self._video_bytes, self._attempt_bytes = 0, 0, 0

    @classmethod
    def open(cls, index_dir: str | Path, identity: ModelIdentity, params: IndexParams,
             faiss_factory: str = "Flat", retokenize: bool = False, lock: LockConfig | None = None,
             retention: RetentionPolicy | None = None) -> IndexWriter:
        """Take the writer lock and check the index matches the model and parameters.

        With ``retokenize`` the context-token kind and count may differ (the caller
        then rewrites every proposal with :meth:`retokenize`); nothing else may.
        ``faiss_factory``: ``"auto"`` (grow Flat -> IVF, :class:`~groundzero.store.vectors.GrowthPolicy`)
        or a fixed FAISS factory string. Raises :class:`~groundzero.errors.IndexLockedError` when
        another run holds the lock.
        """
        layout = IndexLayout(Path(index_dir).expanduser())
        layout.root.mkdir(parents=True, exist_ok=True)
        layout.make_dirs()
        held = acquire_writer_lock(layout.root, lock)
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
            validate_spec(faiss_factory, identity.embed_dim)
            remove_tmp_files(layout)  # first: frees space the run records below may need
            mark_dead_runs(layout, held.holder)
            return cls(layout, identity, params, faiss_factory, held, retention)
        except BaseException:
            held.release()
            raise

    def close(self) -> None:
        self.lock.release()

    def __enter__(self) -> IndexWriter:  # noqa: PYI034 - py310 has no typing.Self
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- staging ---------------------------------------------------------------

    def previous(self, uri: str) -> dict | None:
        """The committed (or staged) catalog row of a uri, if any."""
        return self.rows.get(uri)

    def uris(self) -> set[str]:
        return set(self.rows)

    @contextmanager
    def _writing(self, path: Path) -> Iterator[Path]:
        """Around the write of one store file: it counts as staged (deleted by
        :meth:`discard_uncommitted`) from before its first byte, and ``writing`` names it if the
        write fails."""
        self.writing = path
        self._staged.append(path)
        yield path
        self.writing = None
        try:
            self.bytes_written += path.stat().st_size
        except OSError:
            pass

    def _seq_for(self, uri: str) -> int:
        old = self.rows.get(uri)
        if old is not None:
            return int(old["video_seq"])
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        return seq

    def _drop_vectors(self, seq: int) -> None:
        self._pending_add.pop(seq, None)
        if seq in self._committed:
            self._pending_remove.add(seq)
        # text rows: deleting a rowid range that holds none costs nothing, so no bookkeeping of who has any
        self._text_add.pop(seq, None)
        self._text_remove.add(seq)

    def put_indexed(self, entry: VideoEntry, run_id: str, timestamps_sec: np.ndarray,
                    embeddings: np.ndarray, windows: np.ndarray, tokens: np.ndarray,
                    segments: Sequence[TextSegment] = (), text_notes: Sequence[str] = ()) -> dict:
        """Write one video's frames, proposals and text segments; stage its catalog row, vectors and text.

        Args:
            timestamps_sec: float64 (T,) in frame order; embeddings: float32 (T, D).
            windows: int64 (P, 2) proposal frame ranges; tokens: float32 (P, K, D) context tokens.
            segments: what is said and shown as text, every source together (no file when empty).
            text_notes: why text is missing or partial (the catalog's ``text_note``, joined by "; ").
        """
        vid, seq = video_id_for(entry.uri), self._seq_for(entry.uri)
        p = self.params
        stem = f"videos/{vid}-{run_id}"
        frames_file, props_file = f"{stem}.frames.parquet", f"{stem}.proposals.parquet"
        segs_file = f"{stem}.segments.parquet" if segments else ""
        if len(segments) > text.MAX_SEGMENTS:
            raise ValueError(f"{entry.uri}: {len(segments)} text segments, more than {text.MAX_SEGMENTS}")
        self._attempt_bytes = timestamps_sec.nbytes + embeddings.nbytes + tokens.nbytes
        before = self.bytes_written
        with self._writing(self.layout.path(frames_file)) as path:
            tables.write_frames(path, vid, timestamps_sec, embeddings)
        with self._writing(self.layout.path(props_file)) as path:
            tables.write_proposals(path, vid, windows, timestamps_sec, p.fps, tokens)
        if segs_file:
            with self._writing(self.layout.path(segs_file)) as path:
                tables.write_segments(path, vid, segments)
        self._videos_written += 1
        self._video_bytes += self.bytes_written - before
        self._drop_vectors(seq)
        self._pending_add[seq] = (encode_ids(seq, len(windows), tokens.shape[1]),
                                  tables.as_stored(tokens.reshape(-1, tokens.shape[-1])))  # as rebuilt
        if segments:
            self._text_add[seq] = (vid, tuple(segments))
        row = self._row(entry, vid, seq, run_id, status="indexed", n_frames=len(timestamps_sec),
                        n_proposals=len(windows), frames_file=frames_file, proposals_file=props_file,
                        segments_file=segs_file, n_segments=len(segments), text_note="; ".join(text_notes))
        self.rows[entry.uri] = row
        self._dirty = True
        return row

    def put_failed(self, entry: VideoEntry, run_id: str, reason: str, error: str) -> dict:
        """Record a failure. A video that failed no longer matches what was indexed, so it
        leaves search; its earlier data files stay on disk with the earlier snapshots."""
        vid, seq = video_id_for(entry.uri), self._seq_for(entry.uri)
        self._drop_vectors(seq)
        row = self._row(entry, vid, seq, run_id, status="failed", reason=reason, error=error)
        self.rows[entry.uri] = row
        self._dirty = True
        return row

    def remove(self, uri: str) -> None:
        """Forget a video that is no longer in the archive."""
        row = self.rows.pop(uri, None)
        if row is not None:
            self._drop_vectors(int(row["video_seq"]))
            self._dirty = True

    def refresh(self, entry: VideoEntry) -> None:
        """Record new listing metadata (mtime, content id) of a video whose content is unchanged,
        so the next run's fast size + mtime check matches again."""
        row = self.rows.get(entry.uri)
        if row is not None:
            self.rows[entry.uri] = {**row, "mtime_ns": entry.mtime_ns,
                                    "content_id": entry.content_id or row.get("content_id", "")}
            self._dirty = True

    def _row(self, e: VideoEntry, vid: str, seq: int, run_id: str, *, status: str, reason: str = "",
             error: str = "", n_frames: int = 0, n_proposals: int = 0, frames_file: str = "",
             proposals_file: str = "", segments_file: str = "", n_segments: int = 0, text_note: str = "") -> dict:
        return {
            "video_id": vid, "video_seq": seq, "uri": e.uri, "rel_path": e.rel_path,
            "size_bytes": e.size_bytes, "mtime_ns": e.mtime_ns, "content_hash": e.content_hash,
            "duration_sec": float(e.duration_sec), "width": e.width, "height": e.height,
            "n_frames": n_frames, "n_proposals": n_proposals, "status": status, "reason": reason,
            "error": error, "frames_file": frames_file, "proposals_file": proposals_file,
            "run_id": run_id, "updated_at": utc_now(), "content_id": e.content_id,
            "note": e.note or None, "segments_file": segments_file, "n_segments": n_segments,
            "text_note": text_note, "sidecar_stamp": e.sidecar_stamp,
        }

    def retokenize(self, params: IndexParams, make_tokens, run_id: str) -> int:
        """Recompute every indexed video's context tokens from its stored frames (no decoding).

        ``make_tokens(frame_emb (T, D), windows (P, 2)) -> (P, K, D)``. The FAISS index is
        rebuilt at :meth:`commit` from the new proposal files; returns the number of videos
        rewritten. Visible after :meth:`commit`. Text segments are kept as they are.
        """
        self.params = params
        n = 0
        for uri, row in sorted(self.rows.items(), key=lambda kv: kv[1]["video_seq"]):
            if row["status"] != "indexed":
                continue
            ts, emb = tables.read_frames(self.layout.path(row["frames_file"]))
            windows = make_windows(len(ts), params.fps, params.proposals)
            tokens = make_tokens(emb, windows)
            props_file = f"videos/{row['video_id']}-{run_id}.proposals.parquet"
            with self._writing(self.layout.path(props_file)) as path:
                tables.write_proposals(path, row["video_id"], windows, ts, params.fps, tokens)
            self.rows[uri] = {**row, "proposals_file": props_file, "n_proposals": len(windows),
                              "run_id": run_id, "updated_at": utc_now()}
            n += 1
        self._pending_add.clear()
        self._pending_remove.clear()
        self._rebuild = True
        self._dirty = True
        return n

    # -- commit ----------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        return self._dirty

    def commit(self, run_id: str) -> Manifest:
        """Publish everything staged so far as a new snapshot (atomic for readers).

        Order: vectors brought up to date (maybe rebuilt, see growth) -> catalog file ->
        FAISS file -> text index (when text changed) -> versioned manifest -> ``manifest.json``
        swapped (the commit point) -> garbage collection. Killed anywhere before the swap, readers and the next
        writer see the previous snapshot; after it, the new one.
        """
        self.lock.check()
        version = (self.manifest.version if self.manifest else 0) + 1
        self._update_vectors()
        cat_file = self.layout.catalog_file(version)
        rows = sorted(self.rows.values(), key=lambda r: r["video_seq"])
        with self._writing(self.layout.path(cat_file)) as path:
            write_catalog(path, rows)
        faiss_file = self.layout.faiss_file(version)
        with self._writing(self.layout.path(faiss_file)) as path:
            self.vectors.save(path)
        text_file = self._update_text(version)
        self.extra["vectors"] = self.vector_state.to_dict()
        m = Manifest(
            version=version, created_at=utc_now(), run_id=run_id, model=self.identity,
            params=self.params, catalog_file=cat_file, faiss_file=faiss_file,
            faiss_factory=self.faiss_factory,
            n_videos=sum(r["status"] == "indexed" for r in rows), n_tokens=self.vectors.ntotal,
            extra=dict(self.extra), text_file=text_file,
        )
        self.lock.check()  # a lease lost meanwhile must not overwrite its successor's snapshot
        with self._writing(self.layout.versioned_manifest(version)):  # manifest.json itself is never deleted
            m = write_manifest(self.layout, m)  # as written: with the snapshot's content checksums
        self._staged.clear()  # published: every file written so far is named by a snapshot
        self.manifest = m
        self._dirty = False
        log.info("committed snapshot %d: %d videos, %d tokens (%s)", version, m.n_videos, m.n_tokens,
                 self.vector_state.factory)
        try:
            collect_garbage(self.layout, m, self.retention)
        except Exception as e:  # noqa: BLE001 - never fail a published commit over cleanup; the next one retries
            log.warning("garbage collection after snapshot %d skipped: %s", version, e)
        return m

    def discard_uncommitted(self) -> int:
        """Delete what this writer wrote since its last commit (no snapshot names any of it),
        every ``.*.tmp`` file of the store, and the garbage of earlier runs (:func:`collect_garbage`,
        as after a commit); returns the bytes freed. For a run that cannot go on (a full disk):
        the space is free at once. What was staged is forgotten: close the writer after this.
        """
        freed = 0
        for p in [*self._staged, *tmp_files(self.layout)]:
            try:
                size = p.stat().st_size
                p.unlink()
                freed += size
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("could not delete %s: %s", p, e)
        self._staged.clear()
        self._pending_add.clear()
        self._pending_remove.clear()
        self._text_add.clear()
        self._text_remove.clear()
        self._dirty = False
        if self.manifest is not None:
            try:
                freed += collect_garbage(self.layout, self.manifest, self.retention).freed_bytes
            except Exception as e:  # noqa: BLE001 - cleanup only: the files stay for the next commit's collection
                log.warning("garbage collection skipped: %s", e)
        return freed

    def space_needed(self, n_videos: int) -> int:
        """About how many bytes ``n_videos`` more indexed videos and one commit of them take:
        the mean size of the videos this writer wrote (else the raw size of the one it was
        writing), plus a new FAISS file of the whole index, a copy of the text index and a catalog."""
        per_video = self._video_bytes // self._videos_written if self._videos_written else self._attempt_bytes
        faiss = 4 * self.identity.embed_dim * self.vectors.ntotal + n_videos * per_video // 4
        try:
            text_bytes = self.layout.path(self.manifest.text_file).stat().st_size if self.manifest and \
                self.manifest.text_file else 0
        except OSError:
            text_bytes = 0
        return n_videos * per_video + faiss + text_bytes + 256 * (len(self.rows) + n_videos)

    def _update_vectors(self) -> None:
        """Apply staged removals and additions, or rebuild per the growth policy."""
        removed = sum(self._committed[s] * self._committed_k for s in self._pending_remove)
        n = self.vectors.ntotal - removed + sum(len(ids) for ids, _ in self._pending_add.values())
        if self._rebuild:
            n = self._count_store_tokens()
        target = plan_structure(self.faiss_factory, n, self.identity.embed_dim, self.vector_state)
        if target is None and self._rebuild:
            target = self.vector_state.factory
        if target is not None:
            self._build_from_store(target, n)
        else:
            if self.vectors.is_pq and self.vectors.codes is None:  # written before re-scoring existed
                committed = [r for r in self._indexed_rows() if int(r["video_seq"]) in self._committed]
                self.vectors.codes = codes_from_store(self.layout, committed, self.identity.embed_dim)
                log.info("added re-scoring codes for the %d vectors of %d videos", len(self.vectors.codes),
                         len(committed))
            if self._pending_remove:
                self.vectors.remove_ids(np.concatenate(
                    [encode_ids(s, self._committed[s], self._committed_k) for s in self._pending_remove]))
            if self._pending_add:
                ids, vecs = zip(*self._pending_add.values())
                self.vectors.add(np.concatenate(ids), np.concatenate(vecs))
        self._pending_add.clear()
        self._pending_remove.clear()
        self._rebuild = False
        self._committed_k = self.params.proposals.tokens_per_proposal
        self._committed = self._proposals_by_seq()

    def _update_text(self, version: int) -> str:
        """The text index of the new snapshot: the previous one's file when no text changed, else a
        new file (the previous one's rows less the videos gone or re-indexed, plus the new videos').
        Returns its relative path ("" when no video has text)."""
        prev = self.manifest.text_file if self.manifest else ""
        add, remove = dict(self._text_add), set(self._text_remove)
        self._text_add.clear()
        self._text_remove.clear()
        if not any(int(r["n_segments"] or 0) for r in self._indexed_rows()):
            return ""  # the last video with text is gone (or none ever had any)
        if prev and not add and not remove:
            return prev
        rel = self.layout.text_file(version)
        with self._writing(self.layout.path(rel)) as path:
            try:
                if not prev:
                    raise IndexDamagedError("no previous text index")  # the first video with text
                text.write_text_index(path, self.layout.path(prev), remove, add)
            except IndexDamagedError as e:  # none yet, or gone or damaged: built from the segments files
                if prev:
                    log.warning("rebuilding the text index from the segments files: %s", e)
                text.write_text_index(path, None, (), {**self._store_text(skip=set(add)), **add})
            remember_written(path)
        return rel

    def _store_text(self, skip: set[int]) -> dict[int, tuple[str, Sequence[TextSegment]]]:
        """seq -> (video_id, segments) of every indexed video with text but those of ``skip``, read
        from its segments file."""
        return {int(r["video_seq"]): (r["video_id"], tables.read_segments(self.layout.path(r["segments_file"])))
                for r in self._indexed_rows() if r["segments_file"] and int(r["video_seq"]) not in skip}

    def _build_from_store(self, factory: str, n: int) -> None:
        """A fresh index of structure ``factory`` over every indexed video's stored tokens."""
        self.vectors, self.vector_state = build_from_store(self.layout, self._indexed_rows(), self.identity.embed_dim,
                                                           self.faiss_factory, factory, n)
        log.info("built %s over %d vectors", factory, self.vectors.ntotal)

    def _indexed_rows(self) -> list[dict]:
        return sorted((r for r in self.rows.values() if r["status"] == "indexed"), key=lambda r: r["video_seq"])

    def _count_store_tokens(self) -> int:
        k = self.params.proposals.tokens_per_proposal
        return sum(int(r["n_proposals"]) * k for r in self._indexed_rows())

    def _proposals_by_seq(self) -> dict[int, int]:
        """seq -> n_proposals of every indexed video in the catalog rows (no FAISS scan)."""
        return {int(r["video_seq"]): int(r["n_proposals"]) for r in self.rows.values() if r["status"] == "indexed"}
