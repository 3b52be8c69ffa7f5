"""An index on S3: publish (data, then a new manifest, then LATEST), pull, and failure cases."""

import json

import numpy as np
import pytest

from groundzero.data.proposals import ProposalConfig, make_windows, zero_shot_tokens
from groundzero.errors import ConfigError, IndexLockedError, IndexNotFoundError, RemoteStoreError
from groundzero.indexer.plan import new_run_id
from groundzero.model.identity import read_identity
from groundzero.store.catalog import connect, read_catalog
from groundzero.store.manifest import IndexParams, require_manifest
from groundzero.store.s3 import S3Config
from groundzero.store.s3_index import S3Index, resolve_index_dir
from groundzero.store.writer import IndexWriter, VideoEntry
from tests.planted import unit

pytestmark = pytest.mark.s3


@pytest.fixture(scope="module")
def ident(tiny_model_dir):
    return read_identity(str(tiny_model_dir))[1]


def _publish(remote: S3Index, ident, add: dict[str, int], remove=()):
    """One writer session: pull, stage, commit locally, push. Returns the published manifest."""
    layout = remote.pull("writer", repair=True)
    params = IndexParams(fps=1.0, frame_size=ident.image_size, proposals=ProposalConfig())
    run_id = new_run_id()
    with IndexWriter.open(layout.root, ident, params, "Flat") as w:
        for uri, T in add.items():
            emb = unit(np.random.default_rng(T).normal(size=(T, ident.embed_dim)))
            win = make_windows(T, 1.0, params.proposals)
            tok = zero_shot_tokens(emb, win, params.proposals.tokens_per_proposal)
            e = VideoEntry(uri=uri, rel_path=uri.rsplit("/", 1)[-1], size_bytes=T, mtime_ns=1, duration_sec=T)
            w.put_indexed(e, run_id, np.arange(T, dtype=np.float64), emb, win, tok)
        for uri in remove:
            w.remove(uri)
        return remote.push(w.commit(run_id))


def _latest(direct, bucket, prefix="index/"):
    return json.loads(direct.get_object(Bucket=bucket, Key=prefix + "LATEST")["Body"].read())["version"]


def _keys(direct, bucket, prefix="index/"):
    pages = direct.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"][len(prefix):] for p in pages for o in p.get("Contents", []))


def _read_all(root) -> tuple[int, list[str], int]:
    """(version, video names, frame rows) of the snapshot in ``root``, reading every file it names."""
    layout, m = require_manifest(root)
    n_frames = connect(layout, m).execute("SELECT count(*) FROM frames").fetchone()[0]
    return m.version, sorted(r["rel_path"] for r in read_catalog(layout, m)), n_frames


def test_publish_then_pull_elsewhere_downloads_only_what_is_new(faults, s3cfg, direct, bucket, ident, tmp_path):
    url = f"s3://{bucket}/index"
    writer = S3Index.open(url, s3cfg, tmp_path / "w")
    m1 = _publish(writer, ident, {"s3://arch/a.mp4": 60, "s3://arch/b.mp4": 30})
    assert _latest(direct, bucket) == 1 and m1.run_id in m1.catalog_file and m1.run_id in m1.faiss_file
    keys = _keys(direct, bucket)
    assert "manifests/000001.json" in keys and m1.catalog_file in keys and m1.faiss_file in keys
    assert sum(k.startswith("videos/") for k in keys) == 4
    assert _read_all(resolve_index_dir(url, s3cfg, tmp_path / "r")) == (1, ["a.mp4", "b.mp4"], 90)

    faults.clear()
    m2 = _publish(writer, ident, {"s3://arch/c.mp4": 20}, remove=["s3://arch/b.mp4"])
    puts = [p for _, p, _ in faults.requests("PUT", r"/index/videos/")]
    assert len(puts) == 2 and all("/videos/" in p and m2.run_id in p for p in puts)  # only c's two files
    faults.clear()
    assert _read_all(resolve_index_dir(url, s3cfg, tmp_path / "r")) == (2, ["a.mp4", "c.mp4"], 80)
    got = [p for _, p, _ in faults.requests("GET", r"/index/videos/")]
    assert len(got) == 2 and all(m2.run_id in p for p in got)  # a's files were already in the cache
    # a cache pulled for the catalog only holds no per-video files
    layout = S3Index.open(url, s3cfg, tmp_path / "c").pull("catalog")
    assert not list(layout.videos_dir.iterdir()) and len(read_catalog(*require_manifest(layout.root))) == 2


def test_failed_publish_leaves_the_previous_snapshot_whole(faults, s3cfg, direct, bucket, ident, tmp_path):
    url = f"s3://{bucket}/index"
    writer = S3Index.open(url, s3cfg, tmp_path / "w")
    _publish(writer, ident, {"s3://arch/a.mp4": 40})
    fault = faults.inject("PUT", r"/index/manifests/", status=503, code="SlowDown", times=-1)
    writer = S3Index.open(url, S3Config(**{**s3cfg.__dict__, "max_attempts": 2}), tmp_path / "w")
    with pytest.raises(RemoteStoreError, match="publishing .* kept answering SlowDown .* after 2 attempts"):
        _publish(writer, ident, {"s3://arch/b.mp4": 30})
    assert fault.served == 2 and _latest(direct, bucket) == 1 and "manifests/000002.json" not in _keys(direct, bucket)
    assert _read_all(resolve_index_dir(url, s3cfg, tmp_path / "r")) == (1, ["a.mp4"], 40)
    faults.clear()  # S3 is back: the next run starts from snapshot 1 again and publishes its own 2
    m = _publish(writer, ident, {"s3://arch/c.mp4": 10})
    assert m.version == 2 and _latest(direct, bucket) == 2
    assert _read_all(resolve_index_dir(url, s3cfg, tmp_path / "r")) == (2, ["a.mp4", "c.mp4"], 50)


def test_a_lagging_latest_is_found_by_listing_and_moved_by_the_next_writer(faults, s3cfg, direct, bucket, ident,
                                                                            tmp_path):
    url = f"s3://{bucket}/index"
    writer = S3Index.open(url, s3cfg, tmp_path / "w")
    _publish(writer, ident, {"s3://arch/a.mp4": 40})
    faults.inject("PUT", r"/index/LATEST", status=500, code="InternalError", times=-1)
    assert _publish(writer, ident, {"s3://arch/b.mp4": 30}).version == 2  # published; LATEST not moved
    faults.clear()
    assert _latest(direct, bucket) == 1 and writer.head() == (2, 1)
    assert _read_all(resolve_index_dir(url, s3cfg, tmp_path / "r"))[0] == 2  # readers see snapshot 2
    S3Index.open(url, s3cfg, tmp_path / "w2").pull("writer", repair=True)
    assert _latest(direct, bucket) == 2


def test_only_one_of_two_writers_publishes(faults, s3cfg, direct, bucket, ident, tmp_path):
    url = f"s3://{bucket}/index"
    _publish(S3Index.open(url, s3cfg, tmp_path / "w0"), ident, {"s3://arch/a.mp4": 40})
    a, b, c = (S3Index.open(url, s3cfg, tmp_path / n) for n in "abc")
    b.pull("writer")
    c.pull("writer")
    _publish(a, ident, {"s3://arch/b.mp4": 30})  # a publishes snapshot 2 while b and c work on 1
    with pytest.raises(IndexLockedError, match="moved from snapshot 1 to 2"):
        _publish_without_pull(b, ident)
    # c checked the head just before a published (simulated): it still cannot overwrite a's snapshot
    c.head = lambda: (1, 1)
    with pytest.raises(IndexLockedError, match="another writer published manifests/000002.json first"):
        _publish_without_pull(c, ident)
    assert _latest(direct, bucket) == 2
    assert _read_all(resolve_index_dir(url, s3cfg, tmp_path / "r"))[1] == ["a.mp4", "b.mp4"]


def _publish_without_pull(remote: S3Index, ident):
    params = IndexParams(fps=1.0, frame_size=ident.image_size, proposals=ProposalConfig())
    with IndexWriter.open(remote.layout.root, ident, params, "Flat") as w:
        w.remove("s3://arch/a.mp4")
        return remote.push(w.commit(new_run_id()))


def test_caches_and_empty_indexes_are_refused_clearly(s3cfg, bucket, tmp_path):
    S3Index.open(f"s3://{bucket}/one", s3cfg, tmp_path / "cache")
    with pytest.raises(ConfigError, match="mirrors s3://.*/one/, not s3://.*/two/"):
        S3Index.open(f"s3://{bucket}/two", s3cfg, tmp_path / "cache")
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "manifest.json").write_text("{}")
    with pytest.raises(ConfigError, match="holds a local index"):
        S3Index.open(f"s3://{bucket}/one", s3cfg, tmp_path / "local")
    with pytest.raises(IndexNotFoundError, match="holds no published index"):
        resolve_index_dir(f"s3://{bucket}/one", s3cfg, tmp_path / "cache")


def test_gc_on_s3_keeps_retained_snapshots_whole_and_deletes_the_rest(s3cfg, direct, bucket, ident, tmp_path):
    from groundzero.store.gc import RetentionPolicy

    url = f"s3://{bucket}/index"
    writer = S3Index.open(url, s3cfg, tmp_path / "w")
    _publish(writer, ident, {"s3://arch/a.mp4": 60, "s3://arch/b.mp4": 30})
    _publish(writer, ident, {"s3://arch/b.mp4": 31})  # b changed: its v1 files are dead once v1 goes
    m3 = _publish(writer, ident, {"s3://arch/c.mp4": 20}, remove=["s3://arch/a.mp4"])
    # an orphan of a failed publish: unnamed, and new
    direct.put_object(Bucket=bucket, Key="index/videos/zz-orphan.frames.parquet", Body=b"x")
    direct.put_object(Bucket=bucket, Key="index/catalog/runs/r-old.json", Body=b"{}")
    before = set(_keys(direct, bucket))
    # everything is recent: nothing may go
    assert writer.collect_garbage(RetentionPolicy(keep_snapshots=1, keep_sec=3600)).deleted == []
    assert set(_keys(direct, bucket)) == before
    # an hour later, keeping only the newest snapshot
    import time

    report = writer.collect_garbage(RetentionPolicy(keep_snapshots=1, keep_sec=3600), now=time.time() + 7200)
    after = set(_keys(direct, bucket))
    assert report.kept_snapshots == [3] and after == before - set(report.deleted)
    assert "manifests/000001.json" not in after and "manifests/000002.json" not in after
    assert "videos/zz-orphan.frames.parquet" not in after
    assert {k for k in after if k.startswith("videos/")} == {
        f for f in before if f.startswith("videos/") and (f"-{m3.run_id}." in f or _named_by(writer, m3, f))}
    assert "catalog/runs/r-old.json" in after  # run records stay
    # the remaining snapshot is whole: a fresh reader pulls every file it names
    assert _read_all(resolve_index_dir(url, s3cfg, tmp_path / "r")) == (3, ["b.mp4", "c.mp4"], 51)


def _named_by(remote: S3Index, m, rel: str) -> bool:
    from groundzero.store.s3_snapshot import catalog_files

    return rel in catalog_files(remote.layout.path(m.catalog_file), "all")
