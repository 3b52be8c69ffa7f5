"""Atomic commits: what an index run writes is invisible until it commits, and a reader that
opened a snapshot keeps seeing that snapshot, whole, while later runs commit and collect garbage."""

import numpy as np

from groundzero.data.proposals import ProposalConfig, make_windows, zero_shot_tokens
from groundzero.indexer.config import IndexConfig
from groundzero.indexer.pipeline import run_index
from groundzero.model.identity import read_identity
from groundzero.search.searcher import Searcher
from groundzero.store.catalog import connect, read_catalog
from groundzero.store.check import verify_index
from groundzero.store.gc import RetentionPolicy
from groundzero.store.layout import IndexLayout
from groundzero.store.manifest import IndexParams, read_manifest, require_manifest
from groundzero.store.writer import IndexWriter, VideoEntry
from tests.crash.fake_pipeline import make_archive, patch_embed, write_video_file
from tests.planted import unit


def test_reader_mid_run_sees_the_previous_snapshot_whole(tmp_path, tiny_model_dir, monkeypatch):
    archive, index = tmp_path / "archive", tmp_path / "index"
    archive.mkdir()
    make_archive(archive, 8)
    patch_embed(monkeypatch.setattr, 32)
    layout = IndexLayout(index)
    cfg = IndexConfig(archive=str(archive), index_dir=str(index), model=str(tiny_model_dir), device="cpu",
                      commit_every=3)
    seen, readers = [], {}

    def on_progress(p):
        done = p.indexed + p.failed
        if done == 0:
            return
        m = read_manifest(layout)
        on_disk = len(list(layout.videos_dir.glob("*.frames.parquet")))
        seen.append((done, p.commits, m.version if m else 0, m.n_videos if m else 0, on_disk))
        if done == 4 and "s1" not in readers:  # snapshot 1 published, video 4 staged but not
            readers["s1"] = Searcher(index, device="cpu")
            readers["con1"] = connect(*require_manifest(index))

    run_index(cfg, on_progress)
    for done, commits, version, n_videos, on_disk in seen:
        assert on_disk == done  # every finished video is on disk at once ...
        assert version == commits == done // 3 and n_videos == 3 * (done // 3)  # ... visible only once committed
    assert read_manifest(layout).n_videos == 8  # the last partial batch is committed at the end

    s1, con1 = readers["s1"], readers["con1"]
    snap1 = {r["rel_path"] for r in s1.videos.values()}
    assert s1.manifest.version == 1 and len(snap1) == 3

    # a second run changes and removes videos of snapshot 1, committing after every video
    rel = sorted(snap1)
    write_video_file(archive / rel[0], seed=1000)
    write_video_file(archive / rel[2], seed=1002)
    (archive / rel[1]).unlink()
    run_index(IndexConfig(**{**cfg.__dict__, "commit_every": 1}))
    assert read_manifest(layout).version == 5  # one commit per changed video, each followed by GC
    assert verify_index(index) == []

    # the reader opened at snapshot 1 still answers from snapshot 1, whole
    hits = s1.search("a red circle moves to the left", top_k=5).hits
    assert hits and {h.rel_path for h in hits} <= snap1
    for seq in s1.videos:
        ts, emb, ranges = s1.video_data(seq)  # the superseded per-video files are still there
        assert len(ts) == len(emb) and len(ranges)
    frames1 = sum(r["n_frames"] for r in s1.videos.values())
    assert con1.execute("SELECT count(*) FROM frames").fetchone()[0] == frames1
    # a new reader sees the new snapshot
    s2 = Searcher(index, device="cpu")
    assert {r["rel_path"] for r in s2.videos.values()} == {p.name for p in archive.iterdir()}


def _put(w, uri, seed):
    T = 60
    emb = unit(np.random.default_rng(seed).normal(size=(T, w.identity.embed_dim)))
    win = make_windows(T, 1.0, w.params.proposals)
    w.put_indexed(VideoEntry(uri, uri.rsplit("/", 1)[-1], seed, seed), f"r{seed}", np.arange(float(T)), emb, win,
                  zero_shot_tokens(emb, win, 6))


def test_gc_keeps_what_readers_may_use_and_deletes_the_rest(tmp_path, tiny_model_dir):
    _, ident = read_identity(str(tiny_model_dir))
    params = IndexParams(1.0, ident.image_size, ProposalConfig())
    layout = IndexLayout(tmp_path)
    with IndexWriter.open(tmp_path, ident, params, retention=RetentionPolicy(keep_snapshots=2)) as w:
        for i in range(4):  # four snapshots, each rewriting /v0 and adding a video
            _put(w, "/v0.mp4", 10 * i)
            _put(w, f"/v{i + 1}.mp4", 10 * i + 1)
            w.commit(f"r{i}")
        (layout.videos_dir / ".half-written.parquet.tmp").write_bytes(b"x")  # a killed write
        w.commit("r4")
    # recent snapshots (< 1 h old) keep manifest, catalog and per-video files; FAISS only the last 2
    assert sorted(p.name for p in layout.manifests_dir.glob("*.json")) == [f"{v:06d}.json" for v in range(1, 6)]
    assert sorted(p.name for p in layout.vectors_dir.glob("*.faiss")) == ["context-000004.faiss",
                                                                         "context-000005.faiss"]
    assert not list(layout.videos_dir.glob(".*.tmp"))
    n_files = len(list(layout.videos_dir.glob("*.parquet")))
    # with no time retention, only what the last 2 snapshots use is left
    with IndexWriter.open(tmp_path, ident, params, retention=RetentionPolicy(keep_snapshots=2, keep_sec=0)) as w:
        _put(w, "/v0.mp4", 99)
        m = w.commit("r5")
    assert sorted(p.name for p in layout.manifests_dir.glob("*.json")) == ["000005.json", "000006.json"]
    live = {r[c] for r in read_catalog(layout, m) for c in ("frames_file", "proposals_file")}
    prev = {r[c] for r in read_catalog(layout, read_manifest_v(layout, 5)) for c in ("frames_file", "proposals_file")}
    on_disk = {f"videos/{p.name}" for p in layout.videos_dir.glob("*.parquet")}
    assert on_disk == live | prev and len(on_disk) < n_files
    assert verify_index(tmp_path, deep=True) == []


def read_manifest_v(layout, v):
    import json

    from groundzero.store.manifest import Manifest

    return Manifest.from_dict(json.loads(layout.versioned_manifest(v).read_text()))
