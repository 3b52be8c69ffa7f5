import json
import subprocess
import sys

import numpy as np
import pytest

from groundzero.data.proposals import ProposalConfig, make_windows, zero_shot_tokens
from groundzero.errors import IndexLockedError, IndexMismatchError
from groundzero.model.identity import read_identity
from groundzero.store import tables
from groundzero.store.catalog import connect, read_catalog
from groundzero.store.manifest import IndexParams, read_manifest, require_manifest
from groundzero.store.vectors import ContextIndex, decode_ids, encode_ids
from groundzero.store.writer import IndexWriter, VideoEntry
from tests.planted import unit


def _params(identity, **kw):
    return IndexParams(fps=1.0, frame_size=identity.image_size, proposals=ProposalConfig(**kw))


def _put(w, uri, T, seed=0, dim=32):
    emb = unit(np.random.default_rng(seed).normal(size=(T, dim)))
    ts = np.arange(T, dtype=np.float64)
    win = make_windows(T, 1.0, w.params.proposals)
    tok = zero_shot_tokens(emb, win, w.params.proposals.tokens_per_proposal)
    e = VideoEntry(uri=uri, rel_path=uri.rsplit("/", 1)[-1], size_bytes=T, mtime_ns=seed, duration_sec=T)
    return w.put_indexed(e, "run1", ts, emb, win, tok), emb


def test_ids_round_trip():
    ids = encode_ids(12345, 7, 6)
    seq, prop, tok = decode_ids(ids)
    assert (seq == 12345).all() and prop.tolist() == np.repeat(np.arange(7), 6).tolist()
    assert tok.tolist() == list(range(6)) * 7


def test_tables_round_trip(tmp_path):
    emb = unit(np.random.default_rng(0).normal(size=(5, 8)))
    ts = np.arange(5) * 0.5
    tables.write_frames(tmp_path / "f.parquet", "v", ts, emb)
    ts2, emb2 = tables.read_frames(tmp_path / "f.parquet")
    np.testing.assert_array_equal(ts2, ts)
    np.testing.assert_array_equal(emb2, tables.as_stored(emb))
    win = np.array([[0, 4], [1, 5]])
    tok = zero_shot_tokens(emb, win, 2)
    tables.write_proposals(tmp_path / "p.parquet", "v", win, ts, 2.0, tok)
    p = tables.read_proposals(tmp_path / "p.parquet")
    assert p["start_sec"].tolist() == [0.0, 0.5] and p["end_sec"].tolist() == [2.0, 2.5]
    np.testing.assert_array_equal(p["tokens"].reshape(2, 2, 8), tables.as_stored(tok))


def test_frame_reader_reads_only_the_row_groups_asked_for(tmp_path):
    G = tables.FRAME_ROW_GROUP
    T = 4 * G - 24  # 4 row groups, the last one short
    emb = unit(np.random.default_rng(1).normal(size=(T, 16)))
    ts = np.arange(T) * 1.0
    tables.write_frames(tmp_path / "f.parquet", "v", ts, emb)
    r = tables.FrameReader(tmp_path / "f.parquet")
    assert r.groups_read == 0 and r.nbytes == 0 and len(r.timestamps) == T
    assert np.isnan(r.timestamps).all()  # opening reads only the footer
    got = r.frames(np.array([[10, 20], [G + 5, G + 6]]))
    assert r.groups_read == 2 and r.nbytes == 2 * G * 16 * 4
    np.testing.assert_array_equal(r.timestamps[: 2 * G], ts[: 2 * G])  # the timestamps of the groups read
    assert np.isnan(r.timestamps[2 * G :]).all()
    np.testing.assert_array_equal(got[10:20], tables.as_stored(emb[10:20]))
    np.testing.assert_array_equal(got[G + 5], tables.as_stored(emb[G + 5]))
    assert not got[2 * G :].any()  # never read: zeros
    got = r.frames(np.array([[G - 1, 2 * G + 1]]))  # straddles three groups, two already read
    assert r.groups_read == 3
    np.testing.assert_array_equal(got[G - 1 : 2 * G + 1], tables.as_stored(emb[G - 1 : 2 * G + 1]))
    np.testing.assert_array_equal(r.frames(np.array([[T - 1, T]]))[T - 1], tables.as_stored(emb[T - 1]))
    np.testing.assert_array_equal(r.frames(), tables.as_stored(emb))
    assert r.groups_read == 4 and r.nbytes == T * 16 * 4
    np.testing.assert_array_equal(r.timestamps, ts)


def test_float32_files_written_before_half_floats_read_unchanged(tmp_path):
    """An index written with float32 embeddings reads the same values back; the half-float store keeps
    a 1152-d unit vector's direction to a cosine above 0.99999."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    emb = unit(np.random.default_rng(3).normal(size=(300, 1152)))
    tables.write_frames(tmp_path / "f.parquet", "v", np.arange(300.0), emb)
    t = pq.read_table(tmp_path / "f.parquet")
    assert t.schema.field("embedding").type.value_type == pa.float16()
    old = t.set_column(3, "embedding", pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), 1152))
    pq.write_table(old, tmp_path / "old.parquet", row_group_size=tables.FRAME_ROW_GROUP)
    np.testing.assert_array_equal(tables.FrameReader(tmp_path / "old.parquet").frames(), emb)
    np.testing.assert_array_equal(tables.read_frames(tmp_path / "old.parquet")[1], emb)
    stored = tables.read_frames(tmp_path / "f.parquet")[1]
    cos = (stored * emb).sum(1) / np.linalg.norm(stored, axis=1)
    assert cos.min() > 0.99999
    assert (tmp_path / "f.parquet").stat().st_size < 0.55 * (tmp_path / "old.parquet").stat().st_size


def test_frame_reader_reads_files_of_one_row_group(tmp_path):
    """Frame files written before row groups (one group): read whole, same values."""
    import pyarrow.parquet as pq

    emb = unit(np.random.default_rng(2).normal(size=(600, 8)))
    tables.write_frames(tmp_path / "f.parquet", "v", np.arange(600.0), emb)
    pq.write_table(pq.read_table(tmp_path / "f.parquet"), tmp_path / "old.parquet", row_group_size=10_000)
    assert pq.ParquetFile(tmp_path / "old.parquet").metadata.num_row_groups == 1
    r = tables.FrameReader(tmp_path / "old.parquet")
    np.testing.assert_array_equal(r.frames(np.array([[300, 310]])), tables.as_stored(emb))
    assert r.groups_read == 1
    np.testing.assert_array_equal(r.timestamps, np.arange(600.0))


def test_commit_publishes_snapshot_and_catalog_is_queryable(tmp_path, tiny_model_dir):
    _, ident = read_identity(str(tiny_model_dir))
    with IndexWriter.open(tmp_path, ident, _params(ident)) as w:
        assert read_manifest(w.layout) is None
        _, emb_one = _put(w, "/a/one.mp4", 100)
        _put(w, "/a/two.mp4", 30, seed=1)
        w.put_failed(VideoEntry("/a/bad.mp4", "bad.mp4", 0, 0), "run1", "empty_file", "bad.mp4 is empty")
        # staged but not committed: invisible to readers
        assert read_manifest(w.layout) is None
        m = w.commit("run1")
    assert m.version == 1 and m.n_videos == 2 and m.n_tokens == (4 + 1) * 6
    layout, m2 = require_manifest(tmp_path)
    con = connect(layout, m2)
    assert con.execute("SELECT count(*) FROM frames").fetchone()[0] == 130
    assert con.execute("SELECT status, reason FROM videos WHERE rel_path='bad.mp4'").fetchone() == ("failed", "empty_file")
    # DuckDB sees the embedding as a list of D floats
    assert con.execute("SELECT len(embedding) FROM frames LIMIT 1").fetchone()[0] == 32
    # and reads the half floats exactly
    got = con.execute("SELECT f.embedding FROM frames f JOIN videos v USING (video_id) "
                      "WHERE v.rel_path = 'one.mp4' AND f.frame_idx = 57").fetchone()[0]
    np.testing.assert_array_equal(np.array(got, np.float32), tables.as_stored(emb_one[57]))


def test_remove_and_reindex_keep_faiss_consistent(tmp_path, tiny_model_dir):
    _, ident = read_identity(str(tiny_model_dir))
    with IndexWriter.open(tmp_path, ident, _params(ident)) as w:
        _put(w, "/a/one.mp4", 100)
        _put(w, "/a/two.mp4", 30, seed=1)
        w.commit("r1")
    with IndexWriter.open(tmp_path, ident, _params(ident)) as w:
        row, _ = _put(w, "/a/one.mp4", 50, seed=2)  # changed video: same seq, new data
        assert row["video_seq"] == 0
        w.remove("/a/two.mp4")
        m = w.commit("r2")
    assert m.version == 2 and m.n_tokens == 2 * 6
    idx = ContextIndex.load(tmp_path / m.faiss_file)
    _, ids = idx.search(np.ones((1, 32), np.float32), 100)
    seq, prop, _ = decode_ids(ids[ids >= 0])
    assert set(seq.tolist()) == {0} and prop.max() == 1
    assert [r["rel_path"] for r in read_catalog(*require_manifest(tmp_path))] == ["one.mp4"]


def test_second_writer_is_refused(tmp_path, tiny_model_dir):
    _, ident = read_identity(str(tiny_model_dir))
    with IndexWriter.open(tmp_path, ident, _params(ident)):
        with pytest.raises(IndexLockedError, match="being written by another run"):
            IndexWriter.open(tmp_path, ident, _params(ident))
        # also from another process
        code = ("import sys; from groundzero.store.writer import IndexWriter; from groundzero.model.identity import read_identity;"
                "from groundzero.store.manifest import IndexParams; from groundzero.data.proposals import ProposalConfig;"
                f"_, i = read_identity({str(tiny_model_dir)!r});"
                f"IndexWriter.open({str(tmp_path)!r}, i, IndexParams(1.0, i.image_size, ProposalConfig()))")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        assert r.returncode != 0 and "IndexLockedError" in r.stderr
    # released on close
    IndexWriter.open(tmp_path, ident, _params(ident)).close()


def test_other_model_or_params_are_refused(tmp_path, tiny_model_dir):
    from groundzero.model.tiny import TinySiglipConfig, build_tiny_siglip

    _, ident = read_identity(str(tiny_model_dir))
    with IndexWriter.open(tmp_path / "idx", ident, _params(ident)) as w:
        _put(w, "/a/one.mp4", 10)
        w.commit("r1")
    _, other = read_identity(str(build_tiny_siglip(tmp_path / "m2", TinySiglipConfig(seed=3))))
    with pytest.raises(IndexMismatchError, match="was built with model"):
        IndexWriter.open(tmp_path / "idx", other, _params(other))
    with pytest.raises(IndexMismatchError, match="window_sec"):
        IndexWriter.open(tmp_path / "idx", ident, _params(ident, window_sec=30, stride_sec=15))
    m = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert m["version"] == 1  # nothing was touched
