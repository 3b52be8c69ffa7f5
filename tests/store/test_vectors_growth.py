"""The FAISS index grows without a full rebuild each night: Flat while small, then an IVF
trained once, added to, retrained when the corpus has grown by a factor; search agrees with
exact search throughout, and an index written before growth existed still loads and grows."""

import json

import faiss
import numpy as np
import pytest

from groundzero.data.proposals import ProposalConfig, make_windows
from groundzero.errors import ConfigError
from groundzero.model.identity import read_identity
from groundzero.store.check import verify_index
from groundzero.store.manifest import IndexParams, require_manifest
from groundzero.store.vectors import ContextIndex, GrowthPolicy, VectorState, plan_structure
from groundzero.store.writer import IndexWriter, VideoEntry
from tests.planted import unit

D, T = 32, 240  # tiny model's dim; 240 s videos -> 9 proposals x 6 tokens = 54 vectors each
SPEC = "auto:flat_max_tokens=500,retrain_growth=2,min_lists=8,nprobe=4"
CENTERS = unit(np.random.default_rng(123).normal(size=(20, D)))


def _video(w, i: int, seed: int | None = None) -> None:
    rng = np.random.default_rng(i if seed is None else seed)
    win = make_windows(T, 1.0, w.params.proposals)
    c = CENTERS[rng.integers(0, len(CENTERS), size=(len(win), 6))]
    tokens = unit(c + 0.06 * rng.normal(size=c.shape))  # (P, K, D), clustered like real tokens
    emb = unit(rng.normal(size=(T, D)))
    w.put_indexed(VideoEntry(f"/a/v{i:03d}.mp4", f"v{i:03d}.mp4", i, i), "r", np.arange(float(T)), emb, win, tokens)


def _queries(n=60, seed=7):
    rng = np.random.default_rng(seed)
    return unit(CENTERS[rng.integers(0, len(CENTERS), n)] + 0.1 * rng.normal(size=(n, D)))


def _exact(index_dir, q, k=10):
    """Exact top-k ids by brute force over the stored proposals' tokens."""
    from groundzero.store import tables
    from groundzero.store.catalog import read_catalog
    from groundzero.store.vectors import encode_ids

    layout, m = require_manifest(index_dir)
    ids, vecs = [], []
    for r in read_catalog(layout, m):
        if r["status"] == "indexed":
            tok = tables.read_proposals(layout.path(r["proposals_file"]))["tokens"].reshape(-1, D)
            ids.append(encode_ids(r["video_seq"], r["n_proposals"], 6))
            vecs.append(tok)
    ids, vecs = np.concatenate(ids), np.concatenate(vecs)
    return ids[np.argsort(-(q @ vecs.T), axis=1)[:, :k]]


def _recall(got, want):
    return float(np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got, want)]))


def _state(index_dir):
    layout, m = require_manifest(index_dir)
    return VectorState.from_dict(m.extra.get("vectors")), ContextIndex.load(layout.path(m.faiss_file)), m


def _centroids(idx):
    ivf = faiss.extract_index_ivf(idx.index)
    return ivf.quantizer.reconstruct_n(0, ivf.nlist)


@pytest.fixture
def writer_args(tiny_model_dir):
    _, ident = read_identity(str(tiny_model_dir))
    return ident, IndexParams(1.0, ident.image_size, ProposalConfig())


def test_flat_then_ivf_then_incremental_adds_then_retraining(tmp_path, writer_args):
    ident, params = writer_args
    q = _queries()
    with IndexWriter.open(tmp_path, ident, params, SPEC) as w:
        for i in range(8):
            _video(w, i)
        w.commit("c1")
    s, idx, m = _state(tmp_path)
    assert s.factory == "Flat" and m.n_tokens == 8 * 54
    assert _recall(idx.search(q, 10)[1], _exact(tmp_path, q)) == 1.0  # exact

    with IndexWriter.open(tmp_path, ident, params, SPEC) as w:  # passes flat_max_tokens: train an IVF
        for i in range(8, 12):
            _video(w, i)
        w.commit("c2")
    s2, idx2, _ = _state(tmp_path)
    assert s2.factory == "IVF16,Flat" and s2.trained_on == 12 * 54 and idx2.nprobe == 4
    assert _recall(idx2.search(q, 10)[1], _exact(tmp_path, q)) >= 0.9

    with IndexWriter.open(tmp_path, ident, params, SPEC) as w:  # +50%: added to the trained IVF
        for i in range(12, 18):
            _video(w, i)
        w.remove("/a/v003.mp4")
        w.commit("c3")
    s3, idx3, m3 = _state(tmp_path)
    assert s3 == s2  # no retraining
    np.testing.assert_array_equal(_centroids(idx3), _centroids(idx2))
    assert m3.n_tokens == 17 * 54 and idx3.ntotal == m3.n_tokens
    seq_removed = 3
    assert not np.any((idx3.ids() >> 24) == seq_removed)
    assert _recall(idx3.search(q, 10)[1], _exact(tmp_path, q)) >= 0.9
    assert verify_index(tmp_path, deep=True) == []
    before = idx3

    with IndexWriter.open(tmp_path, ident, params, SPEC) as w:  # grown x2 since training: retrain
        for i in range(18, 26):
            _video(w, i)
        w.commit("c4")
    s4, idx4, m4 = _state(tmp_path)
    assert s4.trained_on == 25 * 54 and s4.factory == "IVF32,Flat"
    exact = _exact(tmp_path, q)
    after = idx4.search(q, 10)[1]
    assert _recall(after, exact) >= 0.9
    # compaction changes the lists, not the answers: the un-retrained index (the same vectors
    # added to the old IVF) and the retrained one agree with each other as well as with exact search
    layout, _ = require_manifest(tmp_path)
    from groundzero.store import tables
    from groundzero.store.catalog import read_catalog
    from groundzero.store.vectors import encode_ids

    for r in read_catalog(layout, m4):
        if int(r["video_seq"]) >= 18:
            tok = tables.read_proposals(layout.path(r["proposals_file"]))["tokens"].reshape(-1, D)
            before.add(encode_ids(r["video_seq"], r["n_proposals"], 6), tok)
    no_compaction = before.search(q, 10)[1]
    assert _recall(no_compaction, exact) >= 0.9 and _recall(after, no_compaction) >= 0.85
    assert verify_index(tmp_path, deep=True) == []


def test_index_written_before_growth_loads_and_grows(tmp_path, writer_args):
    ident, params = writer_args
    with IndexWriter.open(tmp_path, ident, params, "Flat") as w:
        for i in range(10):
            _video(w, i)
        w.commit("old")
    # make it look like a pre-growth index: no vector record in the manifest
    for f in (tmp_path / "manifest.json", tmp_path / "manifests" / "000001.json"):
        d = json.loads(f.read_text())
        d["extra"].pop("vectors")
        f.write_text(json.dumps(d))
    layout, m = require_manifest(tmp_path)
    old = ContextIndex.load(layout.path(m.faiss_file))
    assert isinstance(old.index, faiss.IndexIDMap2) and old.factory == "Flat"
    assert VectorState.from_dict(m.extra.get("vectors"), old) == VectorState("Flat", 0, 0)
    assert verify_index(tmp_path) == []
    with IndexWriter.open(tmp_path, ident, params, SPEC) as w:  # the next nightly run, with growth
        _video(w, 10)
        w.commit("new")
    s, _, m2 = _state(tmp_path)
    assert s.factory.startswith("IVF") and m2.n_tokens == 11 * 54 and m2.faiss_factory == SPEC
    assert verify_index(tmp_path, deep=True) == []
    from groundzero.search.searcher import Searcher

    hits = Searcher(tmp_path, device="cpu").search("a red circle", top_k=3).hits  # searches the IVF
    assert hits and all(h.rel_path.startswith("v0") for h in hits)


def test_pq_codes_above_pq_min_tokens(tmp_path, writer_args):
    ident, params = writer_args
    spec = "auto:flat_max_tokens=300,pq_min_tokens=600,min_lists=8,nprobe=8"
    with IndexWriter.open(tmp_path, ident, params, spec) as w:
        for i in range(14):
            _video(w, i)
        w.commit("c1")
    s, idx, _ = _state(tmp_path)
    assert s.factory == "IVF16,PQ8" and idx.stored_vectors() is None
    q = _queries()
    # PQ is lossy: what matters is that the exact top-10 is inside the shortlist it returns
    assert _recall(idx.search(q, 100)[1], _exact(tmp_path, q)) >= 0.9
    assert verify_index(tmp_path, deep=True) == []


def test_growth_policy_rules():
    p = GrowthPolicy.parse("auto:flat_max_tokens=1000,retrain_growth=3")
    assert p.flat_max_tokens == 1000 and p.retrain_growth == 3.0
    assert GrowthPolicy.parse("Flat") is None and GrowthPolicy.parse("IVF64,Flat") is None
    with pytest.raises(ConfigError, match="unknown growth setting 'nlists'"):
        GrowthPolicy.parse("auto:nlists=3")
    with pytest.raises(ConfigError, match="retrain_growth > 1"):
        GrowthPolicy.parse("auto:retrain_growth=1")
    p = GrowthPolicy()
    assert p.ivf_factory(1_000_000, 1152) == "IVF4096,PQ288"  # 4 * sqrt(1e6) = 4000 -> 4096
    assert p.ivf_factory(10_000_000, 1152) == "IVF16384,PQ288"  # above pq_min_tokens: 96-byte codes
    assert GrowthPolicy(pq_min_tokens=2_000_000).ivf_factory(1_000_000, 1152) == "IVF4096,Flat"
    assert p.ivf_factory(2000, 64) == "IVF32,Flat"  # capped by 39 training points per list
    assert p.nprobe_for("IVF4096,Flat") == 256 and p.nprobe_for("IVF16,Flat") == 16
    flat, ivf = VectorState("Flat"), VectorState("IVF1024,Flat", trained_on=200_000, nprobe=64)
    assert p.target(90_000, 1152, flat) is None and p.target(150_000, 1152, flat) == "IVF2048,PQ288"
    assert p.target(700_000, 1152, ivf) is None  # x3.5 since training: keep adding
    assert p.target(800_000, 1152, ivf) == "IVF4096,PQ288"  # x4: retrain
    assert p.target(40_000, 1152, ivf) == "Flat"  # shrunk below flat_max / 2
    # fixed factories: an IVF waits for enough vectors to train its lists, then stays as it is
    assert plan_structure("IVF64,Flat", 1000, 32, flat) is None
    assert plan_structure("IVF64,Flat", 3000, 32, flat) == "IVF64,Flat"
    assert plan_structure("IVF64,Flat", 9000, 32, VectorState("IVF64,Flat", 3000)) is None
    with pytest.raises(ConfigError, match="factory string"):
        ContextIndex.create(32, "NotAFactory")


PQ_SPEC = "auto:flat_max_tokens=300,pq_min_tokens=600,min_lists=8,nprobe=8,pq_bytes=4"


def _pq_recall(index_dir, pool):
    _, idx, _ = _state(index_dir)
    q = _queries()
    return _recall(idx.search(q, 10, pool=pool)[1], _exact(index_dir, q))


def test_pq_shortlist_is_rescored_exactly_through_nightly_changes(tmp_path, writer_args):
    """Coarse 4-byte PQ codes alone miss much of the exact top 10; re-scoring a 4x pool from the
    int8 codes in the FAISS file recovers it, and stays right as videos are added, re-indexed and
    removed on later nights."""
    ident, params = writer_args
    with IndexWriter.open(tmp_path, ident, params, PQ_SPEC) as w:
        for i in range(14):
            _video(w, i)
        w.commit("c1")
    s, idx, _ = _state(tmp_path)
    assert s.factory == "IVF16,PQ4" and idx.codes is not None and len(idx.codes) == idx.ntotal
    coarse, fine = _pq_recall(tmp_path, pool=1), _pq_recall(tmp_path, pool=4)
    assert coarse < 0.9 and fine >= 0.95, (coarse, fine)
    with IndexWriter.open(tmp_path, ident, params, PQ_SPEC) as w:  # next night: add, re-index, remove
        for i in (14, 15):
            _video(w, i)
        _video(w, 3, seed=103)  # v003 re-indexed with new content: same video_seq, new tokens
        w.remove("/a/v005.mp4")
        w.commit("c2")
    s, idx, _ = _state(tmp_path)
    assert s.factory == "IVF16,PQ4" and s.trained_on == 14 * 54  # added to, not retrained
    assert np.array_equal(idx.codes.ids(), np.sort(idx.ids()))
    assert _pq_recall(tmp_path, pool=4) >= 0.95
    assert verify_index(tmp_path, deep=True) == []


def test_pq_index_without_rescoring_codes_gains_them_at_the_next_run(tmp_path, writer_args, monkeypatch):
    ident, params = writer_args
    create = ContextIndex.create.__func__

    def without_codes(cls, dim, factory="Flat"):
        idx = create(cls, dim, factory)
        idx.codes = None  # as an older version wrote PQ indexes
        return idx

    monkeypatch.setattr(ContextIndex, "create", classmethod(without_codes))
    with IndexWriter.open(tmp_path, ident, params, PQ_SPEC) as w:
        for i in range(14):
            _video(w, i)
        w.commit("c1")
    monkeypatch.undo()
    _, idx, _ = _state(tmp_path)
    assert idx.is_pq and idx.codes is None
    assert [p.code for p in verify_index(tmp_path)] == ["no_rescore_codes"]
    with IndexWriter.open(tmp_path, ident, params, PQ_SPEC) as w:
        _video(w, 14)
        w.commit("c2")
    _, idx, _ = _state(tmp_path)
    assert idx.codes is not None and len(idx.codes) == idx.ntotal == 15 * 54
    assert _pq_recall(tmp_path, pool=4) >= 0.95
    assert verify_index(tmp_path, deep=True) == []


def test_damaged_rescoring_trailer_is_reported(tmp_path, writer_args):
    from groundzero.errors import IndexDamagedError
    from groundzero.store.rescore import MAGIC

    ident, params = writer_args
    with IndexWriter.open(tmp_path, ident, params, PQ_SPEC) as w:
        for i in range(14):
            _video(w, i)
        w.commit("c1")
    layout, m = require_manifest(tmp_path)
    path = layout.path(m.faiss_file)
    raw = bytearray(path.read_bytes())
    at = raw.rindex(MAGIC) + len(MAGIC)
    raw[at:at + 8] = (len(raw) + 4096).to_bytes(8, "little")  # the trailer's offset points past the end
    path.write_bytes(bytes(raw))
    with pytest.raises(IndexDamagedError, match="re-scoring codes"):
        ContextIndex.load(path)
    assert "faiss_unreadable" in [p.code for p in verify_index(tmp_path)]


def test_rescoring_codes_read_from_the_file_match_the_written_ones(tmp_path):
    """Rows read back in any order, scattered or in runs, near and far apart, repeated: exactly the codes."""
    from groundzero.store.rescore import RescoreCodes, quantize

    rng = np.random.default_rng(7)
    n, d = 500, 24
    ids = np.sort(rng.choice(10_000, n, replace=False)).astype(np.int64)
    vectors = rng.normal(size=(n, d)).astype(np.float32)
    codes = RescoreCodes(d)
    codes.add(ids, vectors)
    with open(tmp_path / "x.bin", "wb") as f:
        f.write(b"some index bytes")
        codes.write(f)
    back = RescoreCodes.open(tmp_path / "x.bin")
    scale, want = quantize(vectors)
    for rows in (np.arange(n), rng.choice(n, 60, replace=False), np.r_[3, 4, 5, 40, 41, 300, 301, 499],
                 np.r_[499, 0, 250, 250, 1], np.zeros(0, np.int64)):
        got = back.vectors(ids[rows])
        np.testing.assert_array_equal(got, want[rows].astype(np.float32) * scale[rows, None])
    q = unit(rng.normal(size=d)).astype(np.float32)
    np.testing.assert_allclose(back.scores(ids[::7], q), (want[::7].astype(np.float32) * scale[::7, None]) @ q,
                               rtol=1e-5, atol=1e-6)
    assert np.isnan(back.scores(np.array([10_001]), q)).all()


def test_a_rebuild_spills_its_rescoring_codes_to_disk(tmp_path, writer_args, monkeypatch):
    """Building the index afresh (here the first commit's Flat -> IVF-PQ) writes the int8 codes to an
    unnamed temporary file as each video's tokens come: in memory only their ids and scales, and
    nothing left behind in the index folder."""
    from groundzero.store.rescore import SpilledCodes, _FileRows

    made = []
    finish = SpilledCodes.finish

    def spy(self):
        codes = finish(self)
        made.append(codes)
        return codes

    monkeypatch.setattr(SpilledCodes, "finish", spy)
    ident, params = writer_args
    with IndexWriter.open(tmp_path, ident, params, PQ_SPEC) as w:
        for i in range(14):
            _video(w, i)
        w.commit("c1")
    assert len(made) == 1 and isinstance(made[0]._codes, _FileRows) and not made[0]._added
    assert len(made[0]) == 14 * 54
    _, idx, _ = _state(tmp_path)
    np.testing.assert_array_equal(idx.codes.vectors(idx.codes.ids()), made[0].vectors(made[0].ids()))
    assert not list(tmp_path.rglob(".rescore-*"))
    assert _pq_recall(tmp_path, pool=4) >= 0.95
    with pytest.raises(ValueError, match="ascending"):
        SpilledCodes(D, tmp_path).add(np.array([5, 3]), np.ones((2, D), np.float32))
