"""Consistency check of an index directory: manifest, catalog, Parquet files and FAISS agree.

``verify_index(index_dir)`` returns a list of :class:`Problem` (empty when the
committed snapshot is consistent); it never raises: a damaged file is a finding
that names it. Errors are things a search could trip on; warnings are harmless
left-overs (orphan files of a killed run, which the next commit's garbage
collection deletes) or checks that could not be made. Checks, for the current snapshot:

* ``manifest.json`` parses, its versioned copy exists, every file it names lies inside the
  index directory, its catalog and FAISS files exist;
* content checksums: every file of the snapshot still has the SHA-256 the manifest recorded
  at commit (bit rot, an edit); a manifest without checksums (an older index) -> warning;
* catalog: readable, one row per uri, unique ``video_id`` and ``video_seq``; every indexed row's
  frames / proposals / segments files exist, are readable (``deep``: every page, with its CRC), hold
  ``n_frames`` / ``n_proposals`` / ``n_segments`` rows of that video; failed rows name no files;
* text index (:mod:`groundzero.store.text`): there is one if any video has text segments; it opens,
  passes SQLite's ``integrity_check`` and FTS5's ``integrity-check``, and holds ``n_segments`` rows
  of each indexed video, none of any other;
* FAISS: readable, dimension = the model's, ``ntotal`` = ``manifest.n_tokens``, no duplicate ids,
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

from groundzero.errors import GroundZeroError, IndexDamagedError
from groundzero.store.catalog import read_catalog
from groundzero.store.gc import referenced_files
from groundzero.store.layout import READ_ERRORS, IndexLayout, describe
from groundzero.store.manifest import Manifest, read_manifest, sha256_file
from groundzero.store.text import TextIndex, integrity_problems
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
    """Check the committed snapshot of ``index_dir`` (see module docstring). Never raises."""
    layout = IndexLayout(Path(index_dir).expanduser())
    out: list[Problem] = []
    try:
        _verify(layout, deep, out)
    except Exception as e:  # noqa: BLE001 - verify reports; whatever stopped it is one more finding
        out.append(Problem("error", "verify_failed", f"{layout.root}: the check stopped at {type(e).__name__}: "
                                                     f"{e}; the index is damaged in a way not checked for"))
    return out


def _verify(layout: IndexLayout, deep: bool, out: list[Problem]) -> None:
    def err(code: str, msg: str) -> None:
        out.append(Problem("error", code, msg))

    try:
        m = read_manifest(layout, confine=False)
    except GroundZeroError as e:  # damaged, or another format version
        good = _newest_good_manifest(layout)
        hint = f"; the newest readable snapshot manifest is {good}" if good else ""
        err("manifest_unreadable", f"{e}{hint}")
        return
    if m is None:
        err("no_manifest", f"{layout.root} holds no committed snapshot")
        return
    versioned = layout.versioned_manifest(m.version)
    try:
        same = json.loads(versioned.read_bytes()) == json.loads(layout.manifest.read_bytes())
    except READ_ERRORS:
        same = False
    if not same:
        err("versioned_manifest", f"{versioned} is missing, unreadable or differs from manifest.json")

    sums = _Checksums(layout, m, out)
    cat_path = _confined(layout, m.catalog_file, "catalog_file", out)
    rows: list[dict] | None = None
    if cat_path is not None:
        if not cat_path.is_file():
            err("catalog_missing", f"catalog file {m.catalog_file} does not exist")
        else:
            sums.ok(m.catalog_file)
            try:
                rows = read_catalog(layout, m)
            except IndexDamagedError as e:
                err("catalog_unreadable", str(e))

    indexed: list[dict] = []
    readable: list[dict] = []  # indexed rows whose proposals file can be read
    if rows is not None:
        for col in ("uri", "video_id", "video_seq"):
            dup = [v for v, c in Counter(r[col] for r in rows).items() if c > 1]
            if dup:
                err(f"duplicate_{col}", f"{len(dup)} {col} values occur more than once in the catalog, "
                                        f"e.g. {dup[0]!r}")
        indexed = [r for r in rows if r["status"] == "indexed"]
        if m.n_videos != len(indexed):
            err("n_videos", f"manifest says {m.n_videos} indexed videos, the catalog has {len(indexed)}")
        for r in rows:
            if r["status"] == "indexed":
                found = _check_video_files(layout, r, sums, deep)
                out += found
                if not any(p.code.startswith("proposals_file") for p in found):
                    readable.append(r)
            elif r["status"] == "failed":
                if r["frames_file"] or r["proposals_file"] or r["segments_file"]:
                    err("failed_row_has_files", f"{r['rel_path']} failed but names data files")
            else:
                err("bad_status", f"{r['rel_path']} has status {r['status']!r}")

    k = m.params.proposals.tokens_per_proposal
    if m.faiss_file is None:
        if indexed:
            err("faiss_missing", "indexed videos but the manifest names no FAISS file")
    else:
        faiss_path = _confined(layout, m.faiss_file, "faiss_file", out)
        if faiss_path is None:
            pass
        elif not faiss_path.is_file():
            err("faiss_missing", f"FAISS file {m.faiss_file} does not exist")
        else:
            sums.ok(m.faiss_file)  # a mismatch is its own finding; the file may still parse: go on
            try:
                idx = ContextIndex.load(faiss_path)
            except IndexDamagedError as e:
                err("faiss_unreadable", str(e))
            else:
                if rows is not None:
                    out += _check_faiss(layout, m, idx, readable, indexed, k, deep)
    if rows is not None or m.text_file:
        out += _check_text(layout, m, indexed if rows is not None else None, sums)
    sums.report_absent()
    out += _check_orphans(layout, m, per_video=rows is not None)


def _confined(layout: IndexLayout, rel: str, what: str, out: list[Problem]) -> Path | None:
    """``layout.path(rel)``, or None with a finding for a path outside the index directory."""
    try:
        return layout.path(rel)
    except IndexDamagedError as e:
        out.append(Problem("error", "path_outside_index", f"{what}: {e}"))
        return None


def _newest_good_manifest(layout: IndexLayout) -> str | None:
    """The newest ``manifests/NNNNNN.json`` that parses (what to restore ``manifest.json`` from)."""
    for p in sorted(layout.manifests_dir.glob("[0-9]*.json"), reverse=True):
        try:
            Manifest.from_dict(json.loads(p.read_bytes()))
            return p.relative_to(layout.root).as_posix()
        except (*READ_ERRORS, GroundZeroError):
            continue
    return None


class _Checksums:
    """The manifest's content checksums, each file hashed at most once."""

    def __init__(self, layout: IndexLayout, m: Manifest, out: list[Problem]):
        self.layout, self.sums, self.out = layout, m.checksums, out
        self.absent: list[str] = []
        self._seen: dict[str, bool] = {}
        if self.sums is None:
            out.append(Problem("warning", "checksums_absent",
                               "the manifest records no content checksums (an index written before GroundZero "
                               "recorded them): bit rot cannot be found; the next index run records them for "
                               "the files it writes, re-index into a new --index directory for all"))

    def ok(self, rel: str) -> bool:
        """False (with a ``checksum_mismatch`` finding) when ``rel``'s bytes differ from its checksum."""
        if rel in self._seen:
            return self._seen[rel]
        good = True
        if self.sums is not None:
            want = self.sums.get(rel)
            if want is None:
                self.absent.append(rel)
            else:
                try:
                    good = sha256_file(self.layout.path(rel)) == want
                except (*READ_ERRORS, GroundZeroError):
                    good = True  # missing or unreadable: the check that reads it reports that
                if not good:
                    self.out.append(Problem(
                        "error", "checksum_mismatch",
                        f"index file {self.layout.root / rel} is damaged: its content differs from the SHA-256 "
                        "recorded when it was written (bit rot, or an edit); restore it from a backup or "
                        "re-index into a new --index directory"))
        self._seen[rel] = good
        return good

    def report_absent(self) -> None:
        if self.absent:
            self.out.append(Problem("warning", "checksum_absent",
                                    f"{len(self.absent)} files of the snapshot have no recorded checksum "
                                    f"(written before checksums were), e.g. {self.absent[0]}"))


def _check_video_files(layout: IndexLayout, r: dict, sums: _Checksums, deep: bool) -> list[Problem]:
    out: list[Problem] = []
    for kind, n_col in (("frames_file", "n_frames"), ("proposals_file", "n_proposals"),
                        ("segments_file", "n_segments")):
        f = r[kind]
        if kind == "segments_file" and not f and not r[n_col]:
            continue  # a video without text has no segments file
        if not f:
            out.append(Problem("error", f"{kind}_missing", f"{r['rel_path']}: {kind} {f!r} does not exist"))
            continue
        path = _confined(layout, f, f"{r['rel_path']}: {kind}", out)
        if path is None:
            continue
        if not path.is_file():
            out.append(Problem("error", f"{kind}_missing", f"{r['rel_path']}: {kind} {f!r} does not exist"))
            continue
        sums.ok(f)  # a mismatch is its own finding; the file may still parse: go on
        try:
            # deep: every page decoded, its CRC checked (damage a checksum-less older file hides)
            t = pq.read_table(path, columns=None if deep else ["video_id"], page_checksum_verification=True)
        except READ_ERRORS as e:  # a truncated or foreign file (ArrowInvalid is a ValueError)
            out.append(Problem("error", f"{kind}_unreadable",
                               f"{r['rel_path']}: index file {path} is damaged ({describe(path, e)})"))
            continue
        if "video_id" not in t.column_names:
            out.append(Problem("error", f"{kind}_unreadable", f"{r['rel_path']}: {f} has no video_id column"))
            continue
        if t.num_rows != int(r[n_col]):
            out.append(Problem("error", f"{kind}_rows", f"{r['rel_path']}: {f} has {t.num_rows} rows, "
                                                        f"the catalog says {n_col}={r[n_col]}"))
        if t.num_rows and set(t.column("video_id").to_pylist()) != {r["video_id"]}:
            out.append(Problem("error", f"{kind}_video_id", f"{r['rel_path']}: {f} holds another video's rows"))
    return out


def _check_text(layout: IndexLayout, m: Manifest, indexed: list[dict] | None, sums: _Checksums) -> list[Problem]:
    """The text index against the catalog's ``n_segments`` (``indexed`` None: the catalog is unreadable)."""
    want = {int(r["video_seq"]): int(r["n_segments"]) for r in indexed or () if r["n_segments"]}
    if not m.text_file:
        return [Problem("error", "text_missing", f"{len(want)} indexed videos have text segments but the "
                                                 "manifest names no text index")] if want else []
    out: list[Problem] = []
    path = _confined(layout, m.text_file, "text_file", out)
    if path is None:
        return out
    if not path.is_file():
        return [Problem("error", "text_missing", f"text index {m.text_file} does not exist")]
    sums.ok(m.text_file)  # a mismatch is its own finding; the file may still open: go on
    try:
        with TextIndex(path) as t:
            have = t.counts()
    except IndexDamagedError as e:
        return [Problem("error", "text_unreadable", str(e))]
    found = integrity_problems(path)
    if found:
        out.append(Problem("error", "text_unreadable", f"index file {path} is damaged: {'; '.join(found[:3])}"))
    if indexed is not None and have != want:
        off = sorted(s for s in set(have) | set(want) if have.get(s, 0) != want.get(s, 0))
        out.append(Problem("error", "text_rows", f"the text index holds other rows than the catalog's n_segments "
                                                 f"for {len(off)} videos, e.g. video_seq {off[0]}: "
                                                 f"{have.get(off[0], 0)} rows, n_segments={want.get(off[0], 0)}"))
    return out


def _check_faiss(layout: IndexLayout, m: Manifest, idx: ContextIndex, readable: list[dict], indexed: list[dict],
                 k: int, deep: bool) -> list[Problem]:
    """``indexed``: every indexed row; ``readable``: those whose proposals file can be read."""
    out = []
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
    if idx.codes is not None and not np.array_equal(idx.codes.ids(), uniq):
        out.append(Problem("error", "rescore_ids", "the FAISS file's re-scoring codes are not of the ids it indexes"))
    elif idx.codes is None and idx.is_pq:
        out.append(Problem("warning", "no_rescore_codes",
                           "the FAISS index holds PQ codes without exact re-scoring codes (written by an older "
                           "version): its shortlist is less exact; the next `groundzero index` run into this index "
                           "adds them"))
    extra, missing = np.setdiff1d(uniq, want), np.setdiff1d(want, uniq)
    if len(extra) or len(missing):
        out.append(Problem("error", "faiss_ids_mismatch",
                           f"FAISS has {len(extra)} ids no indexed video accounts for and lacks {len(missing)} "
                           "that the catalog implies"))
    if deep and not out:
        out += _check_vectors(layout, idx, readable, k, m.model.embed_dim)
    return out


def _check_vectors(layout: IndexLayout, idx: ContextIndex, indexed: list[dict], k: int, d: int) -> list[Problem]:
    from groundzero.store import tables

    stored = idx.stored_vectors() if idx.codes is None else None
    if stored is None and idx.codes is None:
        return []  # PQ codes: not comparable exactly
    if stored is not None:
        ids, vecs = stored
        pos = {int(i): j for j, i in enumerate(ids.tolist())}
    for r in indexed:
        try:
            tok = tables.read_proposals(layout.path(r["proposals_file"]))["tokens"].reshape(-1, d)
        except (*READ_ERRORS, GroundZeroError):
            continue  # reported by _check_video_files
        want = encode_ids(int(r["video_seq"]), int(r["n_proposals"]), k)
        if stored is not None:
            got, atol = vecs[[pos[int(i)] for i in want]], 1e-6
        else:  # PQ: its int8 re-scoring codes stand for the vectors, to within half a code step
            got, atol = idx.codes.vectors(want), 0.5 / 127 * np.abs(tok).max() + 1e-6
        if not np.allclose(got, tok, atol=atol):
            return [Problem("error", "faiss_vectors", f"{r['rel_path']}: FAISS vectors differ from its proposals file")]
    return []


def _check_orphans(layout: IndexLayout, m: Manifest, per_video: bool = True) -> list[Problem]:
    """Warnings: store files that no kept snapshot (a versioned manifest up to ``m``) uses.

    ``per_video`` False (the snapshot's catalog cannot be read, so what it names is unknown):
    only ``.*.tmp`` files are reported.
    """
    live: set[str] = set()
    for p in [*layout.manifests_dir.glob("*.json"), layout.manifest]:
        try:
            snap = Manifest.from_dict(json.loads(p.read_bytes()))
            if snap.version <= m.version:
                live |= referenced_files(layout, snap)
        except (*READ_ERRORS, GroundZeroError):  # unreadable manifest or catalog: its files are reported
            continue
    out = []
    for d, pattern in ((layout.videos_dir, "*.parquet"), (layout.vectors_dir, "*.faiss"),
                       (layout.vectors_dir, "*.sqlite"), (layout.catalog_dir, "videos-*.parquet")) if per_video else ():
        for p in d.glob(pattern):
            rel = p.relative_to(layout.root).as_posix()
            if rel not in live:
                out.append(Problem("warning", "orphan_file", f"{rel} belongs to no snapshot (a killed run's?)"))
    for d in (layout.videos_dir, layout.vectors_dir, layout.catalog_dir, layout.manifests_dir, layout.root):
        for p in d.glob(".*.tmp"):
            out.append(Problem("warning", "tmp_file", f"{p.relative_to(layout.root)} is an interrupted write"))
    return out
