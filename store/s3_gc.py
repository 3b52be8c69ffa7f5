"""Garbage collection of an index kept on S3: delete the objects no retained snapshot names.

Run once per index run, after its last publish (:meth:`groundzero.store.s3_index.S3Index.collect_garbage`),
it follows the local rule (:func:`groundzero.store.gc.retained_versions`): the newest
``keep_snapshots`` snapshots stay whole, older ones superseded less than ``keep_sec`` ago
keep their catalog, per-video files and text index; every other manifest, and then every store object
(``videos/``, ``vectors/``, ``catalog/videos-*``) that no kept snapshot names, is deleted,
except objects written less than ``keep_sec`` ago (whatever wrote them may not have
published yet). Run records are never deleted. Do not add an S3 lifecycle rule that expires
these objects: it cannot tell live files from dead ones.
"""

from __future__ import annotations

import json
import logging
import re
import time

from groundzero.store.gc import GcReport, RetentionPolicy, retained_versions
from groundzero.store.s3_objects import S3Objects
from groundzero.store.s3_snapshot import MANIFEST_KEY, catalog_files, manifest_files, manifest_rel

log = logging.getLogger(__name__)

#: what S3 garbage collection may delete: per-video Parquet, FAISS files, text indexes, catalog snapshots
_GC_FILE = re.compile(r"^(?:videos/[\w.\-]+\.parquet|vectors/context-[\w.\-]+\.faiss|vectors/text-[\w.\-]+\.sqlite"
                      r"|catalog/videos-[\w.\-]+\.parquet)$")


def collect_garbage(objects: S3Objects, base_version: int | None, policy: RetentionPolicy | None = None,
                    now: float | None = None) -> GcReport:
    """Delete the S3 objects no retained snapshot up to ``base_version`` names (see the module docstring).

    Call after a publish, holding the index (one writer); ``base_version`` is the
    snapshot just published (None: nothing to collect). Reads every published
    manifest (small) and the catalogs of the kept snapshots (from the cache, else S3)
    *before* deleting anything; deletes manifests first, then files, so a collection
    that fails half-way leaves only more garbage for the next one. Raises
    :class:`~groundzero.errors.RemoteStoreError` when S3 fails; the published snapshots stay whole.
    """
    policy = policy or RetentionPolicy()
    now = time.time() if now is None else now
    report = GcReport()
    if base_version is None:
        return report
    listed = objects.list_objects("")
    versions = sorted(int(m.group(1)) for rel in listed if (m := MANIFEST_KEY.fullmatch(rel)))
    history = {v: json.loads(objects.get(manifest_rel(v)) or "{}") for v in versions if v <= base_version}
    whole, kept = retained_versions(history, policy, now)
    report.kept_snapshots = sorted(kept)
    referenced: set[str] = set()
    for v in kept:
        d = history[v]
        files = manifest_files(d)
        if v not in whole and d.get("faiss_file"):
            files.discard(d["faiss_file"])
        objects.download_missing({d["catalog_file"]})
        referenced |= files | catalog_files(objects.layout.path(d["catalog_file"]), "all")
    old_enough = {rel for rel, modified in listed.items() if now - modified >= policy.keep_sec}
    dead_manifests = sorted(manifest_rel(v) for v in history if v not in kept)
    dead_files = sorted(rel for rel in old_enough if _GC_FILE.match(rel) and rel not in referenced)
    for batch in (dead_manifests, dead_files):  # manifests first: none outlives a file it names
        objects.delete(batch)
    report.deleted = dead_manifests + dead_files
    if report.deleted:
        log.info("%s: gc deleted %d objects; kept snapshots %s", objects.url, len(report.deleted),
                 report.kept_snapshots)
    return report
