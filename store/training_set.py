"""Reading an index's frame embeddings for training: annotation video ids -> frames.

Annotation files name videos by id (QVHighlights ``vid``, Charades ``VID``, Ego4D
``clip_uid``, MAD movie id); an indexed video matches an id when its file name
without extension equals it (``archive/xyz/AbC_60_210.mp4`` is ``AbC_60_210``).
Training only reads Parquet: it never decodes video again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from groundzero.store import tables
from groundzero.store.catalog import read_catalog
from groundzero.store.manifest import Manifest, require_manifest


def video_frames_by_id(index_dir: str | Path, vids: set[str]) -> tuple[Manifest, dict[str, np.ndarray]]:
    """float32 (T, D) frame embeddings of every indexed video whose stem is in ``vids``."""
    layout, manifest = require_manifest(index_dir)
    out: dict[str, np.ndarray] = {}
    for row in read_catalog(layout, manifest):
        stem = Path(row["rel_path"]).stem
        if row["status"] == "indexed" and stem in vids and stem not in out:
            out[stem] = tables.read_frames(layout.path(row["frames_file"]))[1]
    return manifest, out
