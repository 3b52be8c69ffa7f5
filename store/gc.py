"""Garbage collection: delete store files no retained snapshot refers to.

Run by the writer right after each commit, under the writer's lock. What it
deletes:

* *orphans* — files a killed or failed run wrote but never published (per-video
  Parquet files, catalog and FAISS files of a commit that did not finish,
  ``.*.tmp`` files of interrupted writes, versioned manifests newer than the
  published one);
* files of *old snapshots* beyond the retention (:class:`RetentionPolicy`).

What readers need, and so what is kept: a reader (``Searcher``) reads the
manifest, then loads that snapshot's catalog and FAISS index whole, and reads
per-video Parquet files lazily, query by query. So

* the last ``keep_snapshots`` snapshots are kept whole (a reader that has just
  read the manifest can still load them);
* a snapshot superseded less than ``keep_sec`` ago keeps its manifest, catalog,
  per-video files and text index (read query by query), but not its FAISS file
  (long-lived readers hold it in memory). A reader open for longer than ``keep_sec`` after a newer snapshot
  appeared should reopen (``Searcher`` on the new manifest).

Only names the store itself writes are ever deleted (``videos/*.parquet``,
``vectors/context-*.faiss``, ``vectors/text-*.sqlite``, ``catalog/videos-*.parquet``, ``manifests/NNNNNN.json``
and ``.*.tmp`` beside them); run records and anything else are left alone.
Deleting a file twice is harmless, and manifests go before the files they name,
so a collection that is killed half-way leaves only more garbage for the next.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from groundzero.store.layout import IndexLayout
from groundzero.store.manifest import Manifest, catalog_video_files

log = logging.getLogger(__name__)

_MANIFEST_RE = re.compile(r"^(\d{6,})\.json$")


@dataclass(frozen=True)
class RetentionPolicy:
    keep_snapshots: int = 3  #: the newest snapshots kept whole (the current one included)
    keep_sec: float = 3600.0  #: per-video files of snapshots superseded less than this ago are kept


@dataclass
class GcReport:
    deleted: list[str] = field(default_factory=list)  #: paths relative to the index root
    freed_bytes: int = 0
    kept_snapshots: list[int] = field(default_factory=list)


def collect_garbage(layout: IndexLayout, current: Manifest, policy: RetentionPolicy = RetentionPolicy(),
                    now: float | None = None, unlink=None) -> GcReport:
    """Delete what no retained snapshot of ``current``'s history refers to.

    ``unlink(path)`` deletes one file (default ``Path.unlink(missing_ok=True)``). Raises
    ``OSError`` / ``pyarrow.ArrowInvalid`` *before deleting anything* if a retained
    snapshot's catalog cannot be read.
    """
    now = time.time() if now is None else now
    unlink = unlink or (lambda p: p.unlink(missing_ok=True))
    report = GcReport()
    history = _history(layout, current)  # version -> manifest dict, published ones only
    whole, kept = retained_versions(history, policy, now)
    report.kept_snapshots = sorted(kept)

    referenced: set[str] = set()
    for v in kept:
        d = history[v]
        referenced.add(d["catalog_file"])
        if v in whole and d.get("faiss_file"):
            referenced.add(d["faiss_file"])
        if d.get("text_file"):
            referenced.add(d["text_file"])
        referenced |= _files_of_catalog(layout, d["catalog_file"])

    def delete(p: Path) -> None:
        try:
            size = p.stat().st_size
        except OSError:
            return
        unlink(p)
        report.deleted.append(p.relative_to(layout.root).as_posix())
        report.freed_bytes += size

    # Manifests first: a manifest never outlives a file it names, even if we are killed here.
    for p in sorted(layout.manifests_dir.glob("*.json")):
        m = _MANIFEST_RE.match(p.name)
        if m and int(m.group(1)) not in kept:
            delete(p)
    for d, pattern in ((layout.videos_dir, "*.parquet"), (layout.vectors_dir, "context-*.faiss"),
                       (layout.vectors_dir, "text-*.sqlite"), (layout.catalog_dir, "videos-*.parquet")):
        for p in sorted(d.glob(pattern)):
            if p.relative_to(layout.root).as_posix() not in referenced:
                delete(p)
    for d in (layout.videos_dir, layout.vectors_dir, layout.catalog_dir, layout.manifests_dir, layout.root):
        for p in sorted(d.glob(".*.tmp")):  # interrupted atomic writes (we hold the lock: none is live)
            delete(p)
    if report.deleted:
        log.info("gc: deleted %d files (%.1f MB); kept snapshots %s", len(report.deleted),
                 report.freed_bytes / 1e6, report.kept_snapshots)
    return report


def retained_versions(history: dict[int, dict], policy: RetentionPolicy, now: float) -> tuple[set[int], set[int]]:
    """``(whole, kept)`` of the published snapshots ``history`` (version -> manifest dict).

    ``whole``: the newest ``keep_snapshots`` (every file kept, FAISS included); ``kept``:
    those plus every snapshot superseded less than ``keep_sec`` before ``now`` (or at an
    unreadable time), whose catalog and per-video files stay for readers still using them.
    The one rule of the local collection and of the S3 one (:mod:`groundzero.store.s3_index`).
    """
    versions = sorted(history)
    whole = set(versions[-max(1, policy.keep_snapshots):])
    kept = set(whole)
    for older, newer in itertools.pairwise(versions):
        superseded_at = _timestamp(history[newer].get("created_at", ""))
        if superseded_at is None or now - superseded_at < policy.keep_sec:
            kept.add(older)
    return whole, kept


def referenced_files(layout: IndexLayout, m: Manifest) -> set[str]:
    """Every file (relative path) the snapshot ``m`` needs."""
    out = {m.catalog_file} | {f for f in (m.faiss_file, m.text_file) if f}
    return out | _files_of_catalog(layout, m.catalog_file)


def _history(layout: IndexLayout, current: Manifest) -> dict[int, dict]:
    """Published snapshots up to ``current``: versioned manifests that parse, plus ``current``."""
    out: dict[int, dict] = {}
    for p in layout.manifests_dir.glob("*.json"):
        m = _MANIFEST_RE.match(p.name)
        if not m or int(m.group(1)) > current.version:  # newer ones were never published
            continue
        try:
            out[int(m.group(1))] = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
    out[current.version] = current.to_dict()
    return out


def _files_of_catalog(layout: IndexLayout, catalog_file: str) -> set[str]:
    # Raises when the catalog cannot be read: guessing "refers to nothing" would delete live files.
    return catalog_video_files(layout.path(catalog_file))


def _timestamp(iso: str) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None
