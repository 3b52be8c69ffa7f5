"""An index kept on S3: a local working copy, published as versioned manifests plus a ``LATEST`` pointer.

Under ``s3://bucket/prefix/`` the objects have the relative paths of a local
index directory (:mod:`core.store`), plus one pointer::

    LATEST                                   {"version": 8, "manifest": "manifests/000008.json", ...}
    manifests/000008.json                    one per published snapshot, created once, never rewritten
    catalog/videos-000008-<run>.parquet      catalog and FAISS files: named by version *and* run
    vectors/context-000008-<run>.faiss
    videos/<video_id>-<run>.frames.parquet   per-video files (already unique per run)
    videos/<video_id>-<run>.proposals.parquet
    catalog/runs/<run_id>.json               run records (rewritten while their run goes on)

**Writers** (``groundzero index ... --index s3://...``) work on a local copy:

1. :meth:`S3Index.pull` finds the head (below), downloads what the cache lacks
   of it — manifest, catalog, FAISS index, proposal files (the writer rebuilds
   FAISS from them when it grows), run records — and writes the manifest into
   the cache last.
2. The run writes the cache exactly as it writes any local index directory
   (:class:`~core.store.writer.IndexWriter`: lock, commits, garbage collection).
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
:class:`~core.errors.IndexLockedError` and publishes nothing.

The cache (default ``$GROUNDZERO_CACHE_DIR`` or ``~/.cache/groundzero``, then
``s3/<bucket>/<prefix>``) holds a ``.s3-origin`` marker, so it is never used for
another index. Keep it between nightly runs (a persistent volume): an empty
cache means downloading every proposal file again.

**Garbage collection** on S3 (:meth:`S3Index.collect_garbage`, run once per index run,
after its last publish) follows the local rule (:func:`core.store.gc.retained_versions`):
the newest ``keep_snapshots`` snapshots stay whole, older ones superseded less than
``keep_sec`` ago keep their catalog and per-video files; every other manifest, and
then every store object (``videos/``, ``vectors/``, ``catalog/videos-*``) that no
kept snapshot names, is deleted, except objects written less than ``keep_sec`` ago
(whatever wrote them may not have published yet). Run records are never deleted.
Do not add an S3 lifecycle rule that expires these objects: it cannot tell live
files from dead ones.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import pyarrow.parquet as pq

from core.errors import ConfigError, IndexLockedError, IndexNotFoundError, RemoteStoreError
from core.store.gc import GcReport, RetentionPolicy, retained_versions
from core.store.layout import IndexLayout
from core.store.manifest import Manifest, _atomic_write
from core.store.s3 import (
    S3Config,
    S3Url,
    error_code,
    is_not_found,
    is_s3_url,
    make_client,
    s3_error,
    transfer_config,
)

log = logging.getLogger(__name__)

LATEST = "LATEST"
ORIGIN = ".s3-origin"
#: what a pull fetches: "catalog" (manifest, catalog, runs), "writer" (+ FAISS, proposals), "all" (+ frames)
LEVELS = ("catalog", "writer", "all")
_MANIFEST_KEY = re.compile(r"manifests/(\d{6,})\.json$")
_STORE_FILE = re.compile(r"^(?:catalog|vectors|videos)/[\w.\-/]+$")
#: what S3 garbage collection may delete: per-video Parquet, FAISS files, catalog snapshots
_GC_FILE = re.compile(r"^(?:videos/[\w.\-]+\.parquet|vectors/context-[\w.\-]+\.faiss|catalog/videos-[\w.\-]+\.parquet)$")


def default_cache_dir(url: S3Url) -> Path:
    base = Path(os.environ.get("GROUNDZERO_CACHE_DIR") or Path.home() / ".cache" / "groundzero")
    return base.expanduser() / "s3" / url.bucket / (quote(url.prefix.strip("/"), safe="") or "_root")


def manifest_rel(version: int) -> str:
    return f"manifests/{version:06d}.json"


def manifest_files(d: dict) -> set[str]:
    """Relative paths of the store files a manifest (as a dict) names itself: catalog, FAISS,
    and any other store file named in ``extra`` (e.g. FAISS shards)."""
    out: set[str] = set()

    def walk(x: object) -> None:
        if isinstance(x, str) and _STORE_FILE.match(x) and ".." not in x:
            out.add(x)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk({k: v for k, v in d.items() if k != "model"})
    return out


def catalog_files(path: Path, level: str = "all") -> set[str]:
    """Per-video files a catalog names: proposals (and frames, for ``level="all"``)."""
    cols = ["proposals_file"] + (["frames_file"] if level == "all" else [])
    t = pq.read_table(path, columns=cols)
    return {f for c in cols for f in t.column(c).to_pylist() if f}


class S3Index:
    """The link between one ``s3://bucket/prefix`` index and its local cache (see module docstring)."""

    def __init__(self, url: S3Url, cache_dir: Path, cfg: S3Config, client=None):
        self.url, self.cfg = url, cfg
        self.layout = IndexLayout(cache_dir)
        self.client = client or make_client(cfg)
        self.base_version: int | None = None  #: the published snapshot the cache holds (pulled or pushed)
        self._base_files: set[str] = set()  #: files that snapshot names (all stored on S3)
        self._running_runs: set[str] = set()  #: run records pulled while they said "running"

    @classmethod
    def open(cls, url: str, cfg: S3Config | None = None, cache_dir: str | Path | None = None,
             client=None) -> "S3Index":
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
            text = self._get(LATEST, missing_ok=True)
            latest = int(json.loads(text)["version"]) if text is not None else None
        except (ValueError, KeyError, TypeError):
            log.warning("%s: %s is unreadable; finding the newest manifest by listing", self.url, LATEST)
        newest = latest
        start = self.url.key(manifest_rel(latest)) if latest else ""
        for key in self._list("manifests/", start_after=start):
            m = _MANIFEST_KEY.search(key)
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
        text = self._get(manifest_rel(version)) or ""
        d = json.loads(text)
        files = manifest_files(d)
        self._download_missing(files if level != "catalog" else {d["catalog_file"]})
        if level != "catalog":
            self._download_missing(catalog_files(self.layout.path(d["catalog_file"]), level))
        # the manifest goes in last: the cache's snapshot is whole whenever it is visible
        _atomic_write(self.layout.versioned_manifest(version), text)
        _atomic_write(self.layout.manifest, text)
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
        self._parallel(lambda lr: self._upload(self.layout.path(lr[0]), lr[1]), uploads)
        published = _renamed(d, renames)
        text = json.dumps(published, indent=2)
        self._create(manifest_rel(m.version), text)  # the commit point
        self._put_latest(m.version, published)
        _atomic_write(self.layout.versioned_manifest(m.version), text)
        _atomic_write(self.layout.manifest, text)
        self.base_version = m.version
        self._base_files = manifest_files(published) | videos
        log.info("published %s snapshot %d (%d files uploaded)", self.url, m.version, len(uploads))
        return Manifest.from_dict(published)

    def push_run(self, path: Path) -> None:
        """Upload a run record (``catalog/runs/<run_id>.json``); records are outside snapshots."""
        self._upload(path, path.relative_to(self.layout.root).as_posix())

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
        """Delete the S3 objects no retained snapshot names (see the module docstring).

        Call after :meth:`push`, holding the index (one writer). Reads every published
        manifest (small) and the catalogs of the kept snapshots (from the cache, else S3)
        *before* deleting anything; deletes manifests first, then files, so a collection
        that fails half-way leaves only more garbage for the next one. Raises
        :class:`RemoteStoreError` when S3 fails; the published snapshots stay whole.
        """
        policy = policy or RetentionPolicy()
        now = time.time() if now is None else now
        report = GcReport()
        if self.base_version is None:
            return report
        objects = self._list_objects("")
        versions = sorted(int(m.group(1)) for rel in objects if (m := _MANIFEST_KEY.fullmatch(rel)))
        history = {v: json.loads(self._get(manifest_rel(v)) or "{}") for v in versions if v <= self.base_version}
        whole, kept = retained_versions(history, policy, now)
        report.kept_snapshots = sorted(kept)
        referenced: set[str] = set()
        for v in kept:
            d = history[v]
            files = manifest_files(d)
            if v not in whole and d.get("faiss_file"):
                files.discard(d["faiss_file"])
            self._download_missing({d["catalog_file"]})
            referenced |= files | catalog_files(self.layout.path(d["catalog_file"]), "all")
        old_enough = {rel for rel, modified in objects.items() if now - modified >= policy.keep_sec}
        dead_manifests = sorted(manifest_rel(v) for v in history if v not in kept)
        dead_files = sorted(rel for rel in old_enough if _GC_FILE.match(rel) and rel not in referenced)
        for batch in (dead_manifests, dead_files):  # manifests first: none outlives a file it names
            self._delete(batch)
        report.deleted = dead_manifests + dead_files
        if report.deleted:
            log.info("%s: gc deleted %d objects; kept snapshots %s", self.url, len(report.deleted), report.kept_snapshots)
        return report

    # -- S3 calls --------------------------------------------------------------

    def _delete(self, rels: list[str]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        for i in range(0, len(rels), 1000):  # DeleteObjects takes at most 1,000 keys
            keys = [{"Key": self.url.key(r)} for r in rels[i : i + 1000]]
            try:
                out = self.client.delete_objects(Bucket=self.url.bucket, Delete={"Objects": keys, "Quiet": True})
            except (BotoCoreError, ClientError) as e:
                raise s3_error(e, "deleting old snapshot files under", str(self.url), self.cfg) from e
            if out.get("Errors"):
                err = out["Errors"][0]
                raise RemoteStoreError(f"{self.url}: could not delete {len(out['Errors'])} old objects, e.g. "
                                       f"{err.get('Key')}: {err.get('Code')} {err.get('Message')}; "
                                       "the next run tries again")

    def _get(self, rel: str, missing_ok: bool = False) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.url.bucket, Key=self.url.key(rel))["Body"].read().decode()
        except (BotoCoreError, ClientError) as e:
            if missing_ok and is_not_found(e):
                return None
            raise s3_error(e, "reading", self.url.uri(self.url.key(rel)), self.cfg) from e

    def _list(self, sub: str, start_after: str = "") -> list[str]:
        """Keys (full S3 keys) under ``sub``, after ``start_after``."""
        return [o["Key"] for o in self._iter_objects(sub, start_after)]

    def _list_objects(self, sub: str) -> dict[str, float]:
        """Index-relative path -> last-modified time (epoch seconds) of every object under ``sub``."""
        n = len(self.url.key(""))
        return {o["Key"][n:]: o["LastModified"].timestamp() for o in self._iter_objects(sub)}

    def _iter_objects(self, sub: str, start_after: str = "") -> list[dict]:
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs = {"Bucket": self.url.bucket, "Prefix": self.url.key(sub),
                  "PaginationConfig": {"PageSize": self.cfg.list_page_size}}
        if start_after:
            kwargs["StartAfter"] = start_after
        try:
            return [o for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs)
                    for o in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as e:
            raise s3_error(e, "listing", self.url.uri(self.url.key(sub)), self.cfg) from e

    def _download_missing(self, rels: set[str]) -> None:
        missing = sorted(r for r in rels if not self.layout.path(r).exists())
        self._parallel(self._download, missing)

    def _download(self, rel: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        dest = self.layout.path(rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:  # s3transfer writes a temporary name and renames it: a cache file is whole or absent
            self.client.download_file(self.url.bucket, self.url.key(rel), str(dest), Config=transfer_config(self.cfg))
        except (BotoCoreError, ClientError) as e:
            if is_not_found(e):
                raise RemoteStoreError(
                    f"{self.url}: the published snapshot names {rel}, which is missing from S3; the index "
                    "was damaged (a lifecycle rule or a manual delete?): rebuild it into a new prefix") from e
            raise s3_error(e, "downloading", self.url.uri(self.url.key(rel)), self.cfg) from e

    def _upload(self, path: Path, rel: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.upload_file(str(path), self.url.bucket, self.url.key(rel), Config=transfer_config(self.cfg))
        except (BotoCoreError, ClientError) as e:
            raise s3_error(e, "uploading", self.url.uri(self.url.key(rel)), self.cfg) from e
        except Exception as e:  # s3transfer wraps client errors in S3UploadFailedError
            cause = e.__cause__ or e.__context__
            if isinstance(cause, (BotoCoreError, ClientError)):
                raise s3_error(cause, "uploading", self.url.uri(self.url.key(rel)), self.cfg) from e
            raise s3_error(e, "uploading", self.url.uri(self.url.key(rel)), self.cfg) from e

    def _create(self, rel: str, text: str) -> None:
        """Create ``rel`` only if absent (If-None-Match: *): of two writers exactly one succeeds."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.url.key(rel)
        try:
            self.client.put_object(Bucket=self.url.bucket, Key=key, Body=text.encode(), IfNoneMatch="*",
                                   ContentType="application/json")
        except ClientError as e:
            if error_code(e) not in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                raise s3_error(e, "publishing", self.url.uri(key), self.cfg) from e
            if self._get(rel) == text:  # our own earlier attempt succeeded, its answer was lost
                return
            raise IndexLockedError(
                f"{self.url}: another writer published {rel} first; this run's snapshot was not published. "
                "Make sure one run at a time writes this index, then run again") from e
        except BotoCoreError as e:
            raise s3_error(e, "publishing", self.url.uri(key), self.cfg) from e

    def _put_latest(self, version: int, d: dict) -> None:
        """Move ``LATEST``. A failure here is logged, not raised: the snapshot is already published."""
        from botocore.exceptions import BotoCoreError, ClientError

        body = json.dumps({"version": version, "manifest": manifest_rel(version), "run_id": d.get("run_id"),
                           "created_at": d.get("created_at")})
        try:
            self.client.put_object(Bucket=self.url.bucket, Key=self.url.key(LATEST), Body=body.encode(),
                                   ContentType="application/json")
        except (BotoCoreError, ClientError) as e:
            log.warning("%s: snapshot %d is published but %s could not be moved (%s); readers find it by "
                        "listing manifests/, and the next run moves %s", self.url, version, LATEST, e, LATEST)

    def _pull_runs(self) -> None:
        """Download run records the cache lacks, and those it last saw ``running``."""
        for key in self._list("catalog/runs/"):
            rel = key[len(self.url.prefix):]
            if not rel.endswith(".json") or "/" in rel[len("catalog/runs/"):]:
                continue
            p = self.layout.path(rel)
            try:
                stale = not p.exists() or json.loads(p.read_text()).get("status") == "running"
            except (OSError, ValueError):
                stale = True
            if stale:
                self._download(rel)
                try:
                    if json.loads(p.read_text()).get("status") == "running":
                        self._running_runs.add(rel)
                except (OSError, ValueError):
                    pass

    def _parallel(self, fn, items: list) -> None:
        if len(items) <= 1:
            for it in items:
                fn(it)
            return
        with ThreadPoolExecutor(max_workers=self.cfg.transfer_threads) as pool:
            for f in [pool.submit(fn, it) for it in items]:
                f.result()


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
    _atomic_write(marker, str(url) + "\n")


def _run_scoped(rel: str, run_id: str) -> str:
    p = PurePosixPath(rel)
    return str(p.with_name(f"{p.stem}-{run_id}{p.suffix}"))


def _renamed(x, renames: dict[str, str]):
    if isinstance(x, str):
        return renames.get(x, x)
    if isinstance(x, dict):
        return {k: _renamed(v, renames) for k, v in x.items()}
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
