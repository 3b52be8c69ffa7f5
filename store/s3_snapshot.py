"""What one published snapshot of an S3 index is made of: its manifest's key and the files it names.

Shared by :mod:`groundzero.store.s3_index` (pull, push) and :mod:`groundzero.store.s3_gc`
(what a collection keeps). Paths are index-relative (``catalog/videos-000008-<run>.parquet``),
as in a local index directory.
"""

from __future__ import annotations

import re
from pathlib import Path

from groundzero.store.manifest import catalog_video_files

#: a published manifest's key; group 1 is its version
MANIFEST_KEY = re.compile(r"manifests/(\d{6,})\.json$")
_STORE_FILE = re.compile(r"^(?:catalog|vectors|videos)/[\w.\-/]+$")


def manifest_rel(version: int) -> str:
    return f"manifests/{version:06d}.json"


def manifest_files(d: dict) -> set[str]:
    """Relative paths of the store files a manifest (as a dict) names itself: catalog, FAISS, the
    text index, and any other store file named in ``extra`` (e.g. FAISS shards)."""
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
    """Per-video files a catalog names: proposals and text segments (and frames, for ``level="all"``)."""
    return catalog_video_files(path, ("proposals_file", "segments_file") + (("frames_file",) if level == "all" else ()))
