"""What the service searches: one committed snapshot at a time, swapped when a newer one appears.

The model loads once. A snapshot (:class:`Snapshot`: a :class:`~groundzero.search.searcher.Searcher` over
one manifest version, plus that version's whole catalog) is immutable once built. While the
service runs, :meth:`IndexState.snapshot` checks ``manifest.json`` at most every
``reload_every_sec`` (one ``stat``; the writer swaps the file with ``os.replace``, so a new
snapshot shows as a new inode). A changed manifest is opened off to the side, in a thread,
while requests go on against the old snapshot; the reference is swapped only once the new one
has loaded whole. A manifest only ever names files written before it, so a reader never sees a
half-written index; one that cannot be opened (another model, missing files) is reported in
``reload_error`` and the old snapshot stays in service.

An ``s3://`` index is read from its local copy (``groundzero.store.s3_index``); only a change to
that copy is noticed, so restart the service to serve a newer snapshot published to S3.

Requests search in parallel: a :class:`~groundzero.search.searcher.Searcher` is safe to call from
several threads at once (its frame cache takes a lock only for its dictionary operations, and one
per video while that video's files are read), and :meth:`Snapshot.search` takes its lock only to
look up and store results. The app runs up to ``ServeConfig.search_threads`` searches at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from groundzero.data.segments import TextSegment
from groundzero.errors import GroundZeroError, IndexDamagedError
from groundzero.model.backbone import Backbone
from groundzero.search.results import SearchResult
from groundzero.search.searcher import Searcher
from groundzero.search.service.config import ServeConfig
from groundzero.store.catalog import read_catalog
from groundzero.store.layout import IndexLayout
from groundzero.store.manifest import read_manifest
from groundzero.store.tables import read_segments

log = logging.getLogger(__name__)


class SnapshotGoneError(GroundZeroError):
    """Files of the snapshot in service were deleted (the writer's garbage collection)."""


def folder_of(rel_path: str) -> str:
    """The collection a video belongs to: its folder inside the archive ("" at the top).

    >>> folder_of("depositions/2019/smith.mp4"), folder_of("intro.mp4")
    ('depositions/2019', '')
    """
    parent = str(PurePosixPath(rel_path).parent)
    return "" if parent == "." else parent


@dataclass
class Snapshot:
    """One committed index version, ready to search. Only ``search`` touches mutable state (its
    result cache, under ``_lock``; the searcher's own caches are thread-safe)."""

    version: int
    searcher: Searcher
    catalog: dict[str, dict]  #: video_id -> catalog row (indexed and failed)
    loaded_at: str
    result_cache_size: int = 64
    damage: str = ""  #: why a search of this snapshot failed on a damaged or missing file; "" none seen
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _results: OrderedDict = field(default_factory=OrderedDict)

    def search(self, query: str, k: int, channels: tuple[str, ...] | None = None) -> SearchResult:
        """``Searcher.search``, memoised per (query, k, channels); ``channels`` None: the searcher's
        default channels.

        Safe to call from many threads at once, and searches run in parallel: the lock is held only
        to look up and store results (the searcher is thread-safe). Two identical searches at the
        same moment may both run; they find the same result.
        """
        key = (query.strip(), k, channels)
        with self._lock:
            result = self._results.get(key)
            if result is not None:
                self._results.move_to_end(key)
                return result
        try:
            result = self.searcher.search(query, top_k=k, channels=channels)
        except IndexDamagedError as e:  # shown by /api/health until a newer snapshot is in service
            raise self._damaged(e) from None
        except FileNotFoundError as e:
            raise self._gone(str(e.filename)) from e
        if self.result_cache_size > 0:
            with self._lock:
                self._results[key] = result
                self._results.move_to_end(key)
                while len(self._results) > self.result_cache_size:
                    self._results.popitem(last=False)
        return result

    def segments(self, row: dict) -> list[TextSegment]:
        """The text segments (speech and on-screen text) of ``row``, a video of this snapshot's catalog,
        by start time; [] when it has none. A segments file this snapshot names but that is gone
        (garbage-collected once a newer snapshot was committed) raises :class:`SnapshotGoneError`."""
        rel = row.get("segments_file") or ""
        if not rel:
            return []
        try:
            segments = read_segments(self.searcher.layout.path(rel))
        except IndexDamagedError as e:
            raise self._damaged(e) from None
        return sorted(segments, key=lambda s: (s.start_sec, s.end_sec))

    def _gone(self, path: str) -> SnapshotGoneError:
        # the writer keeps a superseded snapshot's files for a while only (groundzero.store.gc)
        return SnapshotGoneError(
            f"snapshot {self.version} in service has lost files to garbage collection or deletion ({path}); "
            "the service reloads newer snapshots by itself unless started with --reload-every -1 or the "
            "newer one failed to open (see /api/health): restart it")

    def _damaged(self, e: IndexDamagedError) -> GroundZeroError:
        """What to raise for a damaged or missing file of this snapshot, noted in :attr:`damage`
        (shown by /api/health until a newer snapshot is in service)."""
        err: GroundZeroError = self._gone(str(e.path)) if e.missing else e
        self.damage = str(err)
        log.warning("%s", self.damage)
        return err

    def folders(self) -> dict[str, int]:
        """Folder -> number of indexed videos in it (and below it)."""
        counts: dict[str, int] = {}
        for row in self.catalog.values():
            if row["status"] != "indexed":
                continue
            parts = PurePosixPath(row["rel_path"]).parts[:-1]
            for i in range(1, len(parts) + 1):
                f = "/".join(parts[:i])
                counts[f] = counts.get(f, 0) + 1
        return dict(sorted(counts.items()))

    @property
    def n_indexed(self) -> int:
        return sum(r["status"] == "indexed" for r in self.catalog.values())


class IndexState:
    """Holds the snapshot in service and swaps in newer ones (see the module docstring)."""

    def __init__(self, cfg: ServeConfig, backbone: Backbone | None = None):
        """Loads the model (unless ``backbone`` is given: one already loaded) and the current snapshot."""
        self.cfg = cfg
        self.layout = IndexLayout(Path(cfg.index_dir).expanduser())
        self.backbone = backbone
        self._reload_error = ""
        self.checked_at = ""
        self._stamp = self._manifest_stamp()
        self._snap = self._load()  # errors here are the caller's (the CLI prints them)
        self._next_check = time.monotonic() + max(cfg.reload_every_sec, 0.0)
        self._check_lock = threading.Lock()
        self._reloader: threading.Thread | None = None

    @property
    def damage(self) -> str:
        """Why the snapshot in service fails searches (a damaged or missing index file); '' when none seen."""
        snap = getattr(self, "_snap", None)
        return snap.damage if snap is not None else ""

    @property
    def reload_error(self) -> str:
        """Why a newer snapshot could not be opened, and why the one in service fails (:attr:`damage`);
        '' when neither (what ``/api/health`` reports)."""
        damage = f"snapshot {self._snap.version} in service is damaged: {self.damage}" if self.damage else ""
        return "; ".join(m for m in (self._reload_error, damage) if m)

    @reload_error.setter
    def reload_error(self, message: str) -> None:
        self._reload_error = message

    def snapshot(self) -> Snapshot:
        """The snapshot to answer this request with (starts a reload when the manifest changed)."""
        if self.cfg.reload_every_sec >= 0 and time.monotonic() >= self._next_check:
            self._check()
        return self._snap

    def _load(self) -> Snapshot:
        s = Searcher(self.cfg.index_dir, model=self.cfg.model, device=self.cfg.device, cfg=self.cfg.search,
                     head=self.cfg.head, backbone=self.backbone, fetch_threads=self.cfg.fetch_threads)
        # A fast tokenizer sets its padding and truncation on its first call, and raises "Already borrowed"
        # if that happens while another thread encodes: set them now, before requests share it (later calls,
        # with the same settings, only read them).
        s.backbone.tokenize(["warm up"])
        self.backbone = s.backbone
        self.layout = s.layout  # where the snapshot really is (an s3:// index: its local copy)
        catalog = {r["video_id"]: r for r in read_catalog(s.layout, s.manifest)}
        log.info("serving snapshot %d of %s (%d videos)", s.manifest.version, self.layout.root, len(s.videos))
        return Snapshot(version=s.manifest.version, searcher=s, catalog=catalog,
                        loaded_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        result_cache_size=self.cfg.result_cache)

    def _manifest_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.layout.manifest.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _check(self) -> None:
        if not self._check_lock.acquire(blocking=False):
            return  # another request is checking right now
        try:
            self._next_check = time.monotonic() + self.cfg.reload_every_sec
            self.checked_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
            if self._reloader is not None and self._reloader.is_alive():
                return
            stamp = self._manifest_stamp()
            if stamp is None or stamp == self._stamp:
                return
            self._stamp = stamp
            self._reloader = threading.Thread(target=self._reload, name="gz-index-reload", daemon=True)
            self._reloader.start()
        finally:
            self._check_lock.release()

    def _reload(self) -> None:
        try:
            m = read_manifest(self.layout)
            if m is None or m.version == self._snap.version:
                return
            snap = self._load()
        except Exception as e:  # noqa: BLE001 - whatever the failure, the old snapshot stays in service
            self.reload_error = f"snapshot in {self.layout.root} could not be opened, still serving " \
                                f"version {self._snap.version}: {e}"
            log.warning("%s", self.reload_error)
            return
        if snap.version > self._snap.version:
            self._snap = snap  # one reference assignment: requests see the old or the new, whole
            self.reload_error = ""

    def wait_reloaded(self, timeout: float = 30.0) -> None:
        """Block until a reload in progress has finished (tests)."""
        t = self._reloader
        if t is not None:
            t.join(timeout)
