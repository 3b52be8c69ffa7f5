"""The plan of an index run: which listed videos are new, changed, to retry, unchanged or removed.

Incremental runs skip a video whose content is unchanged (:func:`make_plan`):

* S3 object: same size and same ETag (``content_id``); LastModified alone moving
  (a metadata-only copy) changes nothing.
* local file: same size and mtime is the fast check. When the mtime moved but
  the size did not, the file is hashed (SHA-256 of all its bytes) and compared
  with the hash the catalog recorded when it was indexed: equal means a
  ``touch`` or a copy that kept the bytes, and the video is not re-indexed (its
  new mtime is recorded, so the next run takes the fast path again). A full hash
  rather than a sample of head and tail: an in-place edit that keeps the size
  (a patched header, a fixed block) must not be missed, and the cost is paid only
  for files whose mtime moved.

A video whose subtitle sidecars changed (added, edited or removed: their names, sizes and
mtimes, :attr:`~groundzero.store.writer.VideoEntry.sidecar_stamp`) is re-indexed too.

A video that failed to download (``fetch_failed``: throttling, a network error)
is retried by the next run without ``--retry-failed``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from groundzero.indexer.config import IndexConfig
from groundzero.indexer.rows import file_sha256
from groundzero.indexer.sources import list_archive
from groundzero.store.catalog import read_catalog
from groundzero.store.layout import IndexLayout
from groundzero.store.manifest import read_manifest
from groundzero.store.s3 import is_s3_url
from groundzero.store.s3_index import S3Index
from groundzero.store.writer import VideoEntry

#: failure reasons worth trying again on the next run even when the file did not change
TRANSIENT_REASONS = frozenset({"fetch_failed"})


@dataclass
class Plan:
    """What a run will do with each listed file."""

    new: list[VideoEntry] = field(default_factory=list)
    changed: list[VideoEntry] = field(default_factory=list)
    retry: list[VideoEntry] = field(default_factory=list)
    unchanged: list[VideoEntry] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  #: uris in the catalog, gone from the archive
    #: unchanged videos whose listing metadata moved (mtime, LastModified): recorded, not re-indexed
    touched: list[VideoEntry] = field(default_factory=list)

    @property
    def todo(self) -> list[VideoEntry]:
        return self.new + self.changed + self.retry

    def counts(self) -> dict[str, int]:
        return {"new": len(self.new), "changed": len(self.changed), "retry": len(self.retry),
                "unchanged": len(self.unchanged), "removed": len(self.removed)}



def make_plan(entries: list[VideoEntry], previous: dict[str, dict], retry_failed: bool,
              hash_file: Callable[[str], str] = file_sha256) -> Plan:
    """Compare the listing with the catalog by content identity (see module docstring)."""
    plan = Plan()
    for e in entries:
        old = previous.get(e.uri)
        if old is None:
            plan.new.append(e)
            continue
        same, e = same_content(old, e, hash_file)
        if not same or old.get("sidecar_stamp", "") != e.sidecar_stamp:  # a caption file added or edited
            plan.changed.append(e)
        elif old["status"] == "failed" and (retry_failed or old.get("reason") in TRANSIENT_REASONS):
            plan.retry.append(e)
        else:
            plan.unchanged.append(e)
            if old["mtime_ns"] != e.mtime_ns:
                plan.touched.append(e)
    listed = {e.uri for e in entries}
    plan.removed = sorted(u for u in previous if u not in listed)
    return plan


def same_content(old: dict, e: VideoEntry, hash_file: Callable[[str], str]) -> tuple[bool, VideoEntry]:
    """Whether listed ``e`` holds the content of catalog row ``old``; also returns ``e`` with its
    ``content_id`` filled in when a local file had to be hashed."""
    if old["size_bytes"] != e.size_bytes:
        return False, e
    if e.content_id:  # S3: the ETag; a row without one (unknown) counts as changed
        return old.get("content_id") == e.content_id, e
    if old["mtime_ns"] == e.mtime_ns:
        return True, e
    known = old.get("content_hash") or ""
    if not known:  # never decoded successfully, so never hashed
        return False, e
    try:
        digest = hash_file(e.uri)
    except OSError:
        return False, e  # unreadable now: let the decoder record why
    return digest == known, replace(e, content_id=f"sha256:{digest}")


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def plan_index(cfg: IndexConfig) -> Plan:
    """The plan of a run without running it (``--dry-run``); takes no lock, loads no model."""
    cfg.validate()
    remote = S3Index.open(cfg.index_dir, cfg.s3, cfg.cache_dir) if is_s3_url(cfg.index_dir) else None
    layout = remote.pull("catalog") if remote else IndexLayout(Path(cfg.index_dir).expanduser())
    previous = {r["uri"]: r for r in read_catalog(layout, read_manifest(layout))} if layout.root.is_dir() else {}
    return make_plan(list_archive(cfg.archive, cfg.exclude, cfg.s3), previous, cfg.retry_failed)
