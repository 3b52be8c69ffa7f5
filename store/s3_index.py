"""An index kept on S3: a local working copy, published as versioned manifests plus a ``LATEST`` pointer.

Under ``s3://bucket/prefix/`` the objects have the relative paths of a local
index directory (:mod:`groundzero.store`), plus one pointer::

    LATEST                                   {"version": 8, "manifest": "manifests/000008.json", ...}
    manifests/000008.json                    one per published snapshot, created once, never rewritten
    catalog/videos-000008-<run>.parquet      catalog and FAISS files: named by version *and* run
    vectors/context-000008-<run>.faiss
    vectors/text-000008-<run>.sqlite         full-text index of the text segments (when any)
    videos/<video_id>-<run>.frames.parquet   per-video files (already unique per run)
    videos/<video_id>-<run>.proposals.parquet
    videos/<video_id>-<run>.segments.parquet
    catalog/runs/<run_id>.json               run records (rewritten while their run goes on)

**Writers** (``groundzero index ... --index s3://...``) work on a local copy:

1. :meth:`S3Index.pull` finds the head (below), downloads what the cache lacks
   of it — manifest, catalog, FAISS and text indexes, proposal and segments files
   (the writer rebuilds FAISS from them when it grows), run records — and writes
   the manifest into the cache last.
2. The run writes the cache exactly as it writes any local index directory
   (:class:`~groundzero.store.writer.IndexWriter`: lock, commits, garbage collection).
3. After each local commit, :meth:`S3Index.push` uploads the files the new
   snapshot names that the previous one did not, *then* creates
   ``manifests/NNNNNN.json`` with ``If-None-Match: *`` — **the commit point** —
   and *then* overwrites ``LATEST``.

**Readers** (``Searcher``, ``groundzero catalog``) pull the head into their
cache (files already there are not downloaded again) and open it as a local
index. The **head** is ``LATEST``'s version, or a higher ``manifests/NNNNNN.json``
when one exists (one ``LIST`` with ``StartAfter``): a writer that died between
creating a manifest and moving ``LATEST`` left a whole snapshot that the pointer
merely lags behind; the next writer moves ``LATEST`` up.

Why nobody sees a half-committed snapshot: a manifest is created only after
every object it names is stored; reads are strongly consistent after writes
(AWS S3 since December 2020; MinIO and Ceph RGW as well);
and an object a published manifest names is never rewritten. That last point
is why version-scoped files get the run id in their S3 names: a run that failed
half-way, or a second writer, cannot overwrite a file that a published snapshot
names. A failed push leaves orphans with unique names and ``LATEST`` where it was.

One writer at a time: S3 has no ``flock``. A writer checks that the head has not
moved since it pulled before uploading, and of two writers racing from the same
head only one can create ``manifests/NNNNNN.json``; the other gets
:class:`~groundzero.errors.IndexLockedError` and publishes nothing.

The cache (default ``$GROUNDZERO_CACHE_DIR`` or ``~/.cache/groundzero``, then
``s3/<bucket>/<prefix>``) holds a ``.s3-origin`` marker, so it is never used for
another index. Keep it between nightly runs (a persistent volume): an empty
cache means downloading every proposal file again.

**Garbage collection** on S3 (:meth:`S3Index.collect_garbage`, run once per index run,
after its last publish) follows the local retention rule: :mod:`groundzero.store.s3_gc`.

Modules: this one (the protocol: pull, push, the cache), :mod:`~groundzero.store.s3_snapshot`
(a snapshot's manifest key and the files it names), :mod:`~groundzero.store.s3_objects` (the
S3 calls and transfers), :mod:`~groundzero.store.s3_gc` (deleting old snapshots' objects).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from groundzero.errors import ConfigError, IndexLockedError, IndexNotFoundError, RemoteStoreError
from groundzero.store import s3_gc
from groundzero.store.gc import GcReport, RetentionPolicy
from groundzero.store.layout import IndexLayout
from groundzero.store.manifest import Manifest, atomic_write
from groundzero.store.s3 import S3Config, S3Url, is_s3_url, make_client
from groundzero.store.s3_objects import S3Objects
from groundzero.store.s3_snapshot import MANIFEST_KEY, catalog_files, manifest_files, manifest_rel

log = logging.getLogger(__name__)

LATEST = "LATEST"
ORIGIN = ".s3-origin"
#: what a pull fetches: "catalog" (manifest, catalog, runs), "writer" (+ FAISS, text index, proposals,
#: segments), "all" (+ frames)
LEVELS = ("catalog", "writer", "all")


def default_cache_dir(url: S3Url) -> Path:
    base = Path(os.environ.get("GROUNDZERO_CACHE_DIR") or Path.home() / ".cache" / "groundzero")
    return base.expanduser() / "s3" / url.bucket / (quote(url.prefix.strip("/"), safe="") or "_root")


class S3Index:
    """The link between one ``s3://bucket/prefix`` index and its local cache (see module docstring)."""

    def __init__(self, url: S3Url, cache_dir: Path, cfg: S3Config, client=None):
        self.url, self.cfg = url, cfg
        self.layout = IndexLayout(cache_dir)
        self.client = client or make_client(cfg)
        self.objects = S3Objects(url, cfg, self.client, self.layout)  #: the S3 calls
        self.base_version: int | None = None  #: the published snapshot the cache holds (pulled or pushed)
        self._base_files: set[str] = set()  #: files that snapshot names (all stored on S3)
        self._running_runs: set[str] = set()  #: run records pulled while they said "running"

    @classmethod
    def open(cls, url: str, cfg: S3Config | None = None, cache_dir: str | Path | None = None,
             client=None) -> S3Index:
        u = S3Url.parse(url)
        cfg = (cfg or S3Config()).resolved().validate()
        root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir(u)
        _claim_cache(root, u)
        return cls(u, root.resolve(), cfg, client)

    def __str__(self) -> str:
        return str(self.url)

    # -- reading ---------------------------------------------------------------

    def head(self) -> tuple[int | None, int | None]:
        """(newest published version, the version ``LATEST`` names); (None, None) for an empty index."""
        latest = None
        try:
            text = self.objects.get(LATEST, missing_ok=True)
            latest = int(json.loads(text)["version"]) if text is not None else None
        except (ValueError, KeyError, TypeError):
            log.warning("%s: %s is unreadable; finding the newest manifest by listing", self.url, LATEST)
        newest = latest
        start = self.url.key(manifest_rel(latest)) if latest else ""
        for key in self.objects.list_keys("manifests/", start_after=start):
            m = MANIFEST_KEY.search(key)
            if m:
                newest = max(newest or 0, int(m.group(1)))
        return newest, latest

    def pull(self, level: str = "all", repair: bool = False) -> IndexLayout:
        """Bring the cache to the head snapshot; returns the cache's layout.

        ``level`` says which files (:data:`LEVELS`); ``repair`` (writers) moves a lagging
        ``LATEST`` up to the head. An empty index leaves a cache without ``manifest.json``.
        """
        if level not in LEVELS:
            raise ConfigError(f"pull level must be one of {LEVELS}, got {level!r}")
        version, latest = self.head()
        self.layout.make_dirs()
        self._pull_runs()
        if version is None:
            if self.layout.manifest.exists():
                log.warning("%s holds no published snapshot: dropping the cache's unpublished one", self.url)
                self.layout.manifest.unlink()
            self.base_version, self._base_files = None, set()
            return self.layout
        text = self.objects.get(manifest_rel(version)) or ""
        d = json.loads(text)
        files = manifest_files(d)
        self.objects.download_missing(files if level != "catalog" else {d["catalog_file"]})
        if level != "catalog":
            self.objects.download_missing(catalog_files(self.layout.path(d["catalog_file"]), level))
        # the manifest goes in last: the cache's snapshot is whole whenever it is visible
        atomic_write(self.layout.versioned_manifest(version), text)
        atomic_write(self.layout.manifest, text)
        self.base_version = version
        self._base_files = files | catalog_files(self.layout.path(d["catalog_file"]), "all")
        if repair and latest != version:
            log.warning("%s: %s named snapshot %s, the newest is %d; moving it up", self.url, LATEST,
                        latest, version)
            self._put_latest(version, d)
        log.info("pulled %s snapshot %d into %s", self.url, version, self.layout.root)
        return self.layout

    # -- writing ---------------------------------------------------------------

    def push(self, m: Manifest) -> Manifest:
        """Publish snapshot ``m``, just committed to the cache (see module docstring for the order).

        Returns the manifest as published (version-scoped files renamed with the run id).
        Raises :class:`IndexLockedError` if another writer published meanwhile, and
        :class:`RemoteStoreError` if S3 fails beyond its retries; either way nothing of
        ``m`` is visible and ``LATEST`` is unchanged.
        """
        version, _ = self.head()
        if version != self.base_version:
            raise IndexLockedError(
                f"{self.url} moved from snapshot {self.base_version} to {version} while this run was "
                f"writing (another writer?); this run's snapshot {m.version} was not published. Make sure "
                "one run at a time writes this index, then run again")
        d = m.to_dict()
        own = manifest_files(d)
        videos = catalog_files(self.layout.path(m.catalog_file), "all")
        renames = {f: _run_scoped(f, m.run_id) for f in own - self._base_files if m.run_id not in f}
        uploads = sorted((f, renames.get(f, f)) for f in (own | videos) - self._base_files)
        for local, remote in uploads:
            if local != remote:
                _link(self.layout.path(local), self.layout.path(remote))
        self.objects.parallel(lambda lr: self.objects.upload(self.layout.path(lr[0]), lr[1]), uploads)
        published = _renamed(d, renames)
        text = json.dumps(published, indent=2)
        self.objects.create(manifest_rel(m.version), text)  # the commit point
        self._put_latest(m.version, published)
        atomic_write(self.layout.versioned_manifest(m.version), text)
        atomic_write(self.layout.manifest, text)
        self.base_version = m.version
        self._base_files = manifest_files(published) | videos
        log.info("published %s snapshot %d (%d files uploaded)", self.url, m.version, len(uploads))
        return Manifest.from_dict(published)

    def push_run(self, path: Path) -> None:
        """Upload a run record (``catalog/runs/<run_id>.json``); records are outside snapshots."""
        self.objects.upload(path, path.relative_to(self.layout.root).as_posix())

    def push_finished_runs(self) -> None:
        """Upload records pulled as ``running`` that the local writer has since marked ``aborted``."""
        for rel in sorted(self._running_runs):
            p = self.layout.path(rel)
            try:
                if json.loads(p.read_text()).get("status") != "running":
                    self.push_run(p)
            except (OSError, ValueError):
                continue
        self._running_runs.clear()

    def collect_garbage(self, policy: RetentionPolicy | None = None, now: float | None = None) -> GcReport:
        """Delete the S3 objects no retained snapshot names (:func:`groundzero.store.s3_gc.collect_garbage`).

        Call after :meth:`push`, holding the index (one writer). Raises
        :class:`RemoteStoreError` when S3 fails; the published snapshots stay whole.
        """
        return s3_gc.collect_garbage(self.objects, self.base_version, policy, now)

    # -- helpers -------------------------------------------------------------

    def _put_latest(self, version: int, d: dict) -> None:
        """Move ``LATEST``. A failure here is logged, not raised: the snapshot is already published."""
        body = json.dumps({"version": version, "manifest": manifest_rel(version), "run_id": d.get("run_id"),
                           "created_at": d.get("created_at")})
        try:
            self.objects.put(LATEST, body)
        except RemoteStoreError as e:
            log.warning("%s: snapshot %d is published but %s could not be moved (%s); readers find it by "
                        "listing manifests/, and the next run moves %s", self.url, version, LATEST, e, LATEST)

    def _pull_runs(self) -> None:
        """Download run records the cache lacks, and those it last saw ``running``."""
        for key in self.objects.list_keys("catalog/runs/"):
            rel = key[len(self.url.prefix):]
            if not rel.endswith(".json") or "/" in rel[len("catalog/runs/"):]:
                continue
            p = self.layout.path(rel)
            try:
                stale = not p.exists() or json.loads(p.read_text()).get("status") == "running"
            except (OSError, ValueError):
                stale = True
            if stale:
                self.objects.download(rel)
                try:
                    if json.loads(p.read_text()).get("status") == "running":
                        self._running_runs.add(rel)
                except (OSError, ValueError):
                    pass


def resolve_index_dir(index: str | Path, s3: S3Config | None = None, cache_dir: str | Path | None = None,
                      level: str = "all") -> Path:
    """A local directory holding the index: ``index`` itself, or for ``s3://...`` a pulled cache.

    Raises :class:`IndexNotFoundError` for an S3 prefix with no published snapshot.
    """
    if not is_s3_url(index):
        return Path(index).expanduser()
    remote = S3Index.open(str(index), s3, cache_dir)
    remote.pull(level)
    if remote.base_version is None:
        raise IndexNotFoundError(f"{index} holds no published index (no {LATEST} or manifests/ there); build "
                                 f"one with `groundzero index ARCHIVE --index {index}`")
    return remote.layout.root


def _claim_cache(root: Path, url: S3Url) -> None:
    """Make ``root`` the cache of ``url``, refusing a directory that belongs to something else."""
    marker = root / ORIGIN
    if marker.exists():
        origin = marker.read_text().strip()
        if origin != str(url):
            raise ConfigError(f"cache directory {root} mirrors {origin}, not {url}; pass another --cache-dir")
        return
    if (root / "manifest.json").exists():
        raise ConfigError(f"{root} holds a local index; pass an empty or dedicated --cache-dir for {url}")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write(marker, str(url) + "\n")


def _run_scoped(rel: str, run_id: str) -> str:
    p = PurePosixPath(rel)
    return str(p.with_name(f"{p.stem}-{run_id}{p.suffix}"))


def _renamed(x, renames: dict[str, str]):
    if isinstance(x, str):
        return renames.get(x, x)
    if isinstance(x, dict):
        return {renames.get(k, k): _renamed(v, renames) for k, v in x.items()}  # checksums are keyed by name
    if isinstance(x, list):
        return [_renamed(v, renames) for v in x]
    return x


def _link(src: Path, dst: Path) -> None:
    """``dst`` names the same bytes as ``src`` (a hard link; a copy where links are refused)."""
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
