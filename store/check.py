"""Consistency check of an index directory: manifest, catalog, Parquet files and FAISS agree.

``verify_index(index_dir)`` returns a list of :class:`Problem` (empty when the
committed snapshot is consistent). Errors are things a search could trip on;
warnings are harmless left-overs (orphan files of a killed run, which the next
commit's garbage collection deletes). Checks, for the current snapshot:

* ``manifest.json`` parses, its versioned copy exists, its catalog and FAISS files exist;
* catalog: one row per uri, unique ``video_id`` and ``video_seq``; every indexed row's
  frames / proposals files exist, hold ``n_frames`` / ``n_proposals`` rows of that video;
  failed rows name no files;
* FAISS: dimension = the model's, ``ntotal`` = ``manifest.n_tokens``, no duplicate ids,
  and the id set is exactly the ids the catalog implies (``n_proposals * K`` per indexed
  video, none for failed ones);
* ``deep``: the stored vectors equal the proposals files' tokens (Flat and IVF-Flat);
* ``manifest.n_videos`` = indexed rows; ``.*.tmp`` and unreferenced store files -> warnings.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from groundzero.store.catalog import read_catalog
from groundzero.store.gc import referenced_files
from groundzero.store.layout import IndexLayout
from groundzero.store.manifest import Manifest, read_manifest
from groundzero.store.vectors import ContextIndex, encode_ids


@dataclass(frozen=True)
class Problem:
    severity: str  #: "error" | "warning"
    code: str  #: short stable name, e.g. "faiss_ids_mismatch"
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.code}: {self.message}"


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def verify_index(index_dir: str | Path, deep: bool = False) -> list[Problem]:
    """Check the committed snapshot of ``index_dir`` (see module docstring)."""
    layout = IndexLayout(Path(index_dir).expanduser())
    out: list[Problem] = []

    def err(code: str, msg: str) -> None:
        out.append(Problem("error", code, msg))

    try:
        m = read_manifest(layout)
    except (ValueError, KeyError, OSError) as e:
        return [Problem("error", "manifest_unreadable", f"{layout.manifest}: {e}")]
    if m is None:
        return [Problem("error", "no_manifest", f"{layout.root} holds no committed snapshot")]
    versioned = layout.versioned_manifest(m.version)
    if not versioned.is_file() or json.loads(versioned.read_text()) != json.loads(layout.manifest.read_text()):
        err("versioned_manifest", f"{versioned} is missing or differs from manifest.json")
    if not layout.path(m.catalog_file).is_file():
        return out + [Problem("error", "catalog_missing", f"catalog file {m.catalog_file} does not exist")]
    rows = read_catalog(layout, m)

    for col in ("uri", "video_id", "video_seq"):
        dup = [v for v, c in Counter(r[col] for r in rows).items() if c > 1]
        if dup:
            err(f"duplicate_{col}", f"{len(dup)} {col} values occur more than once in the catalog, e.g. {dup[0]!r}")
    indexed = [r for r in rows if r["status"] == "indexed"]
    if m.n_videos != len(indexed):
        err("n_videos", f"manifest says {m.n_videos} indexed videos, the catalog has {len(indexed)}")
    k = m.params.proposals.tokens_per_proposal
    for r in rows:
        if r["status"] == "indexed":
            out += _check_video_files(layout, r)
        elif r["status"] == "failed":
            if r["frames_file"] or r["proposals_file"]:
                err("failed_row_has_files", f"{r['rel_path']} failed but names data files")
        else:
            err("bad_status", f"{r['rel_path']} has status {r['status']!r}")

    if m.faiss_file is None:
        if indexed:
            err("faiss_missing", "indexed videos but the manifest names no FAISS file")
    elif not layout.path(m.faiss_file).is_file():
        err("faiss_missing", f"FAISS file {m.faiss_file} does not exist")
    else:
        out += _check_faiss(layout, m, indexed, k, deep)

    out += _check_orphans(layout, m)
    return out


def _check_video_files(layout: IndexLayout, r: dict) -> list[Problem]:
    out = []
    for kind, n_col in (("frames_file", "n_frames"), ("proposals_file", "n_proposals")):
        f = r[kind]
        path = layout.path(f) if f else None
        if path is None or not path.is_file():
            out.append(Problem("error", f"{kind}_missing", f"{r['rel_path']}: {kind} {f!r} does not exist"))
            continue
        try:
            t = pq.read_table(path, columns=["video_id"])
        except (OSError, ValueError) as e:  # a truncated or foreign file (ArrowInvalid is a ValueError)
            out.append(Problem("error", f"{kind}_unreadable", f"{r['rel_path']}: {f}: {e}"))
            continue
        if t.num_rows != int(r[n_col]):
            out.append(Problem("error", f"{kind}_rows", f"{r['rel_path']}: {f} has {t.num_rows} rows, "
                                                        f"the catalog says {n_col}={r[n_col]}"))
        if t.num_rows and set(t.column("video_id").to_pylist()) != {r["video_id"]}:
            out.append(Problem("error", f"{kind}_video_id", f"{r['rel_path']}: {f} holds another video's rows"))
    return out


def _check_faiss(layout: IndexLayout, m: Manifest, indexed: list[dict], k: int, deep: bool) -> list[Problem]:
    out = []
    idx = ContextIndex.load(layout.path(m.faiss_file))
    if idx.dim != m.model.embed_dim:
        out.append(Problem("error", "faiss_dim", f"FAISS dimension {idx.dim} != model's {m.model.embed_dim}"))
    if idx.ntotal != m.n_tokens:
        out.append(Problem("error", "n_tokens", f"FAISS holds {idx.ntotal} vectors, manifest says {m.n_tokens}"))
    ids = idx.ids()
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        out.append(Problem("error", "faiss_duplicate_ids", f"{int((counts > 1).sum())} FAISS ids occur more than once"))
    want = (np.concatenate([encode_ids(int(r["video_seq"]), int(r["n_proposals"]), k) for r in indexed])
            if indexed else np.zeros(0, np.int64))
    extra, missing = np.setdiff1d(uniq, want), np.setdiff1d(want, uniq)
    if len(extra) or len(missing):
        out.append(Problem("error", "faiss_ids_mismatch",
                           f"FAISS has {len(extra)} ids no indexed video accounts for and lacks {len(missing)} "
                           "that the catalog implies"))
    if deep and not out:
        out += _check_vectors(layout, idx, indexed, k, m.model.embed_dim)
    return out


def _check_vectors(layout: IndexLayout, idx: ContextIndex, indexed: list[dict], k: int, d: int) -> list[Problem]:
    from groundzero.store import tables

    stored = idx.stored_vectors()
    if stored is None:
        return []  # PQ codes: not comparable exactly
    ids, vecs = stored
    pos = {int(i): j for j, i in enumerate(ids.tolist())}
    for r in indexed:
        tok = tables.read_proposals(layout.path(r["proposals_file"]))["tokens"].reshape(-1, d)
        rows = [pos[int(i)] for i in encode_ids(int(r["video_seq"]), int(r["n_proposals"]), k)]
        if not np.allclose(vecs[rows], tok, atol=1e-6):
            return [Problem("error", "faiss_vectors", f"{r['rel_path']}: FAISS vectors differ from its proposals file")]
    return []


def _check_orphans(layout: IndexLayout, m: Manifest) -> list[Problem]:
    """Warnings: store files that no kept snapshot (a versioned manifest up to ``m``) uses."""
    live: set[str] = set()
    for p in [*layout.manifests_dir.glob("*.json"), layout.manifest]:
        try:
            snap = Manifest.from_dict(json.loads(p.read_text()))
            if snap.version <= m.version:
                live |= referenced_files(layout, snap)
        except (OSError, ValueError, KeyError):  # unreadable manifest or catalog: its files are reported
            continue
    out = []
    for d, pattern in ((layout.videos_dir, "*.parquet"), (layout.vectors_dir, "*.faiss"),
                       (layout.catalog_dir, "videos-*.parquet")):
        for p in d.glob(pattern):
            rel = p.relative_to(layout.root).as_posix()
            if rel not in live:
                out.append(Problem("warning", "orphan_file", f"{rel} belongs to no snapshot (a killed run's?)"))
    for d in (layout.videos_dir, layout.vectors_dir, layout.catalog_dir, layout.manifests_dir, layout.root):
        for p in d.glob(".*.tmp"):
            out.append(Problem("warning", "tmp_file", f"{p.relative_to(layout.root)} is an interrupted write"))
    return out
