"""The consistency checker finds what it claims to find (so "no problems" elsewhere means something)."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from groundzero.cli.main import app
from groundzero.data.proposals import ProposalConfig, make_windows, zero_shot_tokens
from groundzero.model.identity import read_identity
from groundzero.store.check import errors, verify_index
from groundzero.store.manifest import IndexParams, require_manifest
from groundzero.store.vectors import ContextIndex, encode_ids
from groundzero.store.writer import IndexWriter, VideoEntry
from tests.planted import unit


def _index(root, model_dir, n=3):
    _, ident = read_identity(str(model_dir))
    with IndexWriter.open(root, ident, IndexParams(1.0, ident.image_size, ProposalConfig())) as w:
        for i in range(n):
            emb = unit(np.random.default_rng(i).normal(size=(100, ident.embed_dim)))
            win = make_windows(100, 1.0, w.params.proposals)
            w.put_indexed(VideoEntry(f"/a/{i}.mp4", f"{i}.mp4", i, i), "r", np.arange(100.0), emb, win,
                          zero_shot_tokens(emb, win, 6))
        w.put_failed(VideoEntry("/a/bad.mp4", "bad.mp4", 0, 0), "r", "empty_file", "empty")
        return w.commit("r")


def _codes(root):
    return {p.code for p in errors(verify_index(root, deep=True))}


def test_checker_finds_each_kind_of_damage(tmp_path, tiny_model_dir):
    m = _index(tmp_path, tiny_model_dir)
    assert verify_index(tmp_path, deep=True) == []
    r = CliRunner().invoke(app, ["catalog", "verify", "--index", str(tmp_path)])
    assert r.exit_code == 0 and "0 errors, 0 warnings" in r.stdout
    layout, _ = require_manifest(tmp_path)

    # an extra vector no video accounts for, and the count off
    idx = ContextIndex.load(layout.path(m.faiss_file))
    idx.add(encode_ids(99, 1, 1), unit(np.ones((1, idx.dim))))
    idx.save(layout.path(m.faiss_file))
    # (the file no longer has the content checksum recorded at commit, either)
    assert _codes(tmp_path) == {"faiss_ids_mismatch", "n_tokens", "checksum_mismatch"}

    # a stored vector that differs from its proposals file (deep check)
    idx = ContextIndex.load(layout.path(m.faiss_file))
    idx.remove_ids(encode_ids(99, 1, 1))
    ids, vecs = idx.stored_vectors()
    idx = ContextIndex.create(idx.dim)
    idx.add(ids, np.roll(vecs, 1, axis=0))
    idx.save(layout.path(m.faiss_file))
    assert _codes(tmp_path) == {"faiss_vectors", "checksum_mismatch"}

    # a per-video file gone, a catalog row twice
    _index(tmp_path / "b", tiny_model_dir)
    lb, mb = require_manifest(tmp_path / "b")
    cat = pq.read_table(lb.path(mb.catalog_file))
    first = cat.slice(0, 1).to_pylist()[0]
    lb.path(first["frames_file"]).unlink()
    pq.write_table(pa.concat_tables([cat, cat.slice(1, 1)]), lb.path(mb.catalog_file))
    codes = _codes(tmp_path / "b")
    assert {"frames_file_missing", "duplicate_uri", "duplicate_video_seq", "duplicate_video_id"} <= codes
    r = CliRunner().invoke(app, ["catalog", "verify", "--index", str(tmp_path / "b"), "--json"])
    assert r.exit_code == 1 and "frames_file_missing" in {p["code"] for p in json.loads(r.stdout)}

    # leftovers of a killed run are warnings, not errors
    _index(tmp_path / "c", tiny_model_dir)
    (tmp_path / "c" / "videos" / "0123456789abcdef-deadrun.frames.parquet").write_bytes(b"x")
    (tmp_path / "c" / "vectors" / ".context-000002.faiss.tmp").write_bytes(b"x")
    problems = verify_index(tmp_path / "c")
    assert not errors(problems) and {p.code for p in problems} == {"orphan_file", "tmp_file"}
