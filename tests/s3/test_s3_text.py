"""Text segments of an index on S3: segments files and the text index are published, pulled
(also by a pull that skips frames) and collected with their snapshot."""

import time

import numpy as np
import pytest

from groundzero.data.proposals import ProposalConfig, make_windows, zero_shot_tokens
from groundzero.data.segments import TextSegment
from groundzero.indexer.plan import new_run_id
from groundzero.model.identity import ModelIdentity
from groundzero.store.check import verify_index
from groundzero.store.gc import RetentionPolicy
from groundzero.store.manifest import IndexParams, require_manifest
from groundzero.store.s3_index import S3Index
from groundzero.store.text import search_text
from groundzero.store.writer import IndexWriter, VideoEntry
from tests.planted import unit

pytestmark = pytest.mark.s3

IDENT = ModelIdentity(name="fake", fingerprint="f" * 64, embed_dim=8, image_size=32, text_max_len=16)
PARAMS = IndexParams(fps=1.0, frame_size=32, proposals=ProposalConfig())


def _publish(remote: S3Index, add: dict[str, str], remove=()):
    layout = remote.pull("writer", repair=True)
    run_id = new_run_id()
    with IndexWriter.open(layout.root, IDENT, PARAMS, "Flat") as w:
        for uri, said in add.items():
            emb = unit(np.random.default_rng(len(uri)).normal(size=(30, 8)))
            win = make_windows(30, 1.0, PARAMS.proposals)
            e = VideoEntry(uri=uri, rel_path=uri.rsplit("/", 1)[-1], size_bytes=30, mtime_ns=1, duration_sec=30)
            w.put_indexed(e, run_id, np.arange(30, dtype=np.float64), emb, win, zero_shot_tokens(emb, win, 6),
                          segments=[TextSegment(1.0, 4.0, said, "caption")])
        for uri in remove:
            w.remove(uri)
        return remote.push(w.commit(run_id))


def _keys(direct, bucket, prefix="index/"):
    pages = direct.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"][len(prefix):] for p in pages for o in p.get("Contents", []))


def test_text_is_published_pulled_and_collected_with_its_snapshot(s3cfg, direct, bucket, tmp_path):
    url = f"s3://{bucket}/index"
    writer = S3Index.open(url, s3cfg, tmp_path / "w")
    m1 = _publish(writer, {"s3://arch/a.mp4": "the exhibit is a contract", "s3://arch/b.mp4": "an invoice"})
    keys = _keys(direct, bucket)
    assert m1.text_file.startswith("vectors/text-000001-") and m1.run_id in m1.text_file
    assert m1.text_file in keys and m1.text_file in m1.checksums
    assert sum(k.endswith(".segments.parquet") for k in keys) == 2

    # a reader's pull that skips frames still gets the text index and the segments files
    layout = S3Index.open(url, s3cfg, tmp_path / "r").pull("writer")
    _, m = require_manifest(layout.root)
    assert m.text_file == m1.text_file and len(list(layout.videos_dir.glob("*.segments.parquet"))) == 2
    assert not list(layout.videos_dir.glob("*.frames.parquet"))
    assert [h.text for h in search_text(layout.path(m.text_file), "exhibits")] == ["the exhibit is a contract"]

    m2 = _publish(writer, {"s3://arch/c.mp4": "a second exhibit"}, remove=["s3://arch/b.mp4"])
    assert m2.text_file != m1.text_file and m2.text_file in _keys(direct, bucket)
    layout = S3Index.open(url, s3cfg, tmp_path / "r2").pull("all")
    assert verify_index(layout.root, deep=True) == []
    hits = search_text(layout.path(require_manifest(layout.root)[1].text_file), "exhibit")
    assert sorted(h.text for h in hits) == ["a second exhibit", "the exhibit is a contract"]

    # gc: snapshot 1's text index and b's files go once nothing kept names them
    report = writer.collect_garbage(RetentionPolicy(keep_snapshots=1, keep_sec=0), now=time.time() + 10)
    keys = _keys(direct, bucket)
    assert m1.text_file in report.deleted and m1.text_file not in keys and m2.text_file in keys
    assert sum(k.endswith(".segments.parquet") for k in keys) == 2
