"""Content checksums in the manifest (bit rot), paths confined to the index directory, and
file permissions that follow the umask."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from groundzero.errors import IndexDamagedError
from groundzero.store import manifest as manifest_mod
from groundzero.store.catalog import RunRecord, read_catalog
from groundzero.store.check import errors, verify_index
from groundzero.store.layout import IndexLayout
from groundzero.store.manifest import atomic_write, read_manifest, require_manifest, snapshot_files
from groundzero.store.writer import IndexWriter
from tests.planted import plant_index
from tests.store.test_damage import flip_embedding_bytes
from tests.store.test_store import _put


def _plant(root: Path, model_dir: Path) -> None:
    q = np.random.default_rng(3).normal(size=32)
    plant_index(root, model_dir, q, durations=[90, 60], target_video=1, target_start=10, target_end=20)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _no_rereads(monkeypatch) -> list[Path]:
    """Record every file the commit hashes by reading it back (it should hash as it writes)."""
    reread: list[Path] = []
    real = manifest_mod.sha256_file
    monkeypatch.setattr(manifest_mod, "sha256_file", lambda p, *a: reread.append(Path(p)) or real(p, *a))
    return reread


def test_manifest_records_the_checksum_of_every_file_hashed_as_written(tmp_path, tiny_model_dir, monkeypatch):
    reread = _no_rereads(monkeypatch)
    _plant(tmp_path, tiny_model_dir)
    layout, m = require_manifest(tmp_path)
    files = snapshot_files(layout, m)
    assert len(files) == 2 + 2 * 2  # catalog, FAISS, frames + proposals of two videos
    assert m.checksums == {f: _sha(layout.path(f)) for f in files}
    assert reread == []  # no file was read back to hash it
    versioned = json.loads(layout.versioned_manifest(m.version).read_text())
    assert versioned["checksums"] == m.checksums


def test_checksums_carry_over_to_the_next_snapshot(tmp_path, tiny_model_dir, monkeypatch):
    _plant(tmp_path, tiny_model_dir)
    layout, m1 = require_manifest(tmp_path)
    manifest_mod._written.clear()  # a new process: what the first run wrote is only in its manifest
    reread = _no_rereads(monkeypatch)
    with IndexWriter.open(tmp_path, m1.model, m1.params) as w:
        _put(w, "/archive/new.mp4", 70, seed=5)
        returned = w.commit("run2")
    _, m2 = require_manifest(tmp_path)
    assert reread == []
    files = snapshot_files(layout, m2)
    assert len(files) == 2 + 2 * 3 and m2.checksums == {f: _sha(layout.path(f)) for f in files}
    assert {f: m1.checksums[f] for f in files if f.startswith("videos/") and f in m1.checksums} == \
        {f: m2.checksums[f] for f in files if f in m1.checksums}
    assert returned == m2  # what commit returns (and an S3 index publishes) carries the checksums
    assert verify_index(tmp_path, deep=True) == []


def test_an_older_index_without_checksums_loads_and_verify_warns(tmp_path, tiny_model_dir):
    _plant(tmp_path, tiny_model_dir)
    layout, m = require_manifest(tmp_path)
    for p in (layout.manifest, layout.versioned_manifest(m.version)):
        d = json.loads(p.read_text())
        del d["checksums"]
        p.write_text(json.dumps(d, indent=2))
    layout, old = require_manifest(tmp_path)
    assert old.checksums is None and read_catalog(layout, old)
    problems = verify_index(tmp_path, deep=True)
    assert not errors(problems) and [p.code for p in problems] == ["checksums_absent"]

    # the next run records checksums for what it writes; the older files stay without (a warning)
    manifest_mod._written.clear()
    with IndexWriter.open(tmp_path, old.model, old.params) as w:
        _put(w, "/archive/new.mp4", 70, seed=5)
        w.commit("run2")
    _, m2 = require_manifest(tmp_path)
    assert m2.checksums is not None and len(m2.checksums) == 2 + 2  # catalog, FAISS, the new video's files
    problems = verify_index(tmp_path, deep=True)
    assert not errors(problems) and [p.code for p in problems] == ["checksum_absent"]
    assert "4 files" in problems[0].message


def test_bit_rot_in_embedding_values_is_found_by_the_checksum(tmp_path, tiny_model_dir):
    _plant(tmp_path, tiny_model_dir)
    layout, m = require_manifest(tmp_path)
    frames = next(r["frames_file"] for r in read_catalog(layout, m) if r["status"] == "indexed")
    flip_embedding_bytes(layout.path(frames))  # asserts the file still reads, with other values
    pq.read_table(layout.path(frames))
    problems = verify_index(tmp_path)  # not deep: only the checksum can see it
    assert [p.code for p in problems] == ["checksum_mismatch"] and frames in problems[0].message


def test_a_malformed_checksums_field_is_a_damaged_manifest(tmp_path, tiny_model_dir):
    _plant(tmp_path, tiny_model_dir)
    layout = IndexLayout(tmp_path)
    d = json.loads(layout.manifest.read_text())
    d["checksums"] = ["not", "a", "mapping"]
    layout.manifest.write_text(json.dumps(d))
    with pytest.raises(IndexDamagedError, match="manifest.json is damaged"):
        read_manifest(layout)


@pytest.mark.parametrize("rel", ["../outside.parquet", "/etc/passwd", "videos/../../outside", "", "a\\..\\b",
                                 "videos/link/x.parquet"])
def test_paths_a_manifest_or_catalog_names_stay_inside_the_index(tmp_path, rel):
    root = tmp_path / "index"
    (root / "videos").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "videos" / "link").symlink_to(tmp_path / "elsewhere")  # a symlink out of the index
    layout = IndexLayout(root)
    with pytest.raises(IndexDamagedError, match="not a file inside the index directory"):
        layout.path(rel)
    assert layout.path("videos/a-run.frames.parquet") == root / "videos" / "a-run.frames.parquet"
    # an index directory reached through a symlink is fine
    (tmp_path / "alias").symlink_to(root)
    assert IndexLayout(tmp_path / "alias").path("videos/x.parquet") == tmp_path / "alias" / "videos" / "x.parquet"


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_index_files_follow_the_umask(tmp_path, tiny_model_dir, umask):
    old = os.umask(umask)
    try:
        _plant(tmp_path, tiny_model_dir)
        layout, m = require_manifest(tmp_path)
        RunRecord("r1", "/archive", "model", "2026-01-01T00:00:00+00:00").save(layout)
        atomic_write(tmp_path / "catalog" / "runs" / "r2.json", "{}")
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in tmp_path.rglob("*") if p.is_file() and p.name not in (".lock",)}
    assert {"manifest.json", f"manifests/{m.version:06d}.json", "catalog/runs/r1.json", m.faiss_file,
            m.catalog_file} <= set(modes)
    assert {k: v for k, v in modes.items() if v != want} == {}, oct(want)


def test_unreadable_and_foreign_files_are_named(tmp_path):
    import faiss

    from groundzero.store.layout import read_error
    from groundzero.store.vectors import ContextIndex

    e = read_error(tmp_path / "manifest.json", PermissionError(13, "Permission denied"), tmp_path)
    assert "cannot be read" in str(e) and "manifest.json" in str(e)
    faiss.write_index(faiss.IndexFlatIP(4), str(tmp_path / "bare.faiss"))  # a FAISS index, but without ids
    with pytest.raises(IndexDamagedError, match="bare.faiss is damaged"):
        ContextIndex.load(tmp_path / "bare.faiss")
    with pytest.raises(IndexDamagedError, match="gone.faiss is missing") as ei:
        ContextIndex.load(tmp_path / "gone.faiss")
    assert ei.value.missing
