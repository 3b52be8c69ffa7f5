"""A newer snapshot committed while the service runs is picked up without a restart, requests
going on meanwhile all succeed, and a snapshot that cannot be opened is never served."""

from __future__ import annotations

import json
import os
import threading
import time

import httpx
import pytest

from groundzero.data.proposals import make_windows, zero_shot_tokens
from groundzero.search.service.app import create_app
from groundzero.search.service.server import BackgroundServer
from groundzero.search.service.state import IndexState
from groundzero.store import tables
from groundzero.store.manifest import require_manifest
from groundzero.store.writer import IndexWriter, VideoEntry, video_id_for
from tests.serve.conftest import copy_index, make_cfg

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

S3_URI = "s3://archive-bucket/court/d.mp4"


@pytest.fixture
def live(index_dir, state, tmp_path, monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "example-secret",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)  # presigning is local: fake credentials are enough
    idx = copy_index(index_dir, tmp_path / "index")
    cfg = make_cfg(idx, reload_every_sec=0.05)
    st = IndexState(cfg, backbone=state.backbone)
    with BackgroundServer(create_app(cfg, state=st)) as url:
        yield url.rstrip("/"), idx, st


def commit_next(idx) -> None:
    """What a nightly `groundzero index` run does: stage changes, then swap the manifest."""
    layout, m = require_manifest(idx)
    with IndexWriter.open(idx, m.model, m.params) as w:
        rows = {r["rel_path"]: r for r in w.rows.values()}
        src = rows["lectures/a.mp4"]
        ts, emb = tables.read_frames(layout.path(src["frames_file"]))
        windows = make_windows(len(ts), m.params.fps, m.params.proposals)
        entry = VideoEntry(uri=S3_URI, rel_path="court/d.mp4", size_bytes=1, mtime_ns=time.time_ns(),
                           content_hash="d", duration_sec=float(src["duration_sec"]), width=160, height=120)
        w.put_indexed(entry, "nightly", ts, emb, windows, zero_shot_tokens(emb, windows, m.params.proposals.tokens_per_proposal))
        w.remove(rows["lectures/b.mp4"]["uri"])
        time.sleep(0.3)  # requests keep flowing while the run writes
        w.commit("nightly")


def wait_for(pred, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_new_snapshot_is_served_without_restart(live):
    url, idx, _ = live
    c = httpx.Client(base_url=url, timeout=60)
    v0 = c.get("/api/health").json()["index_version"]
    seen: list[tuple[int, int, set[str]]] = []
    stop = threading.Event()

    def hammer():
        with httpx.Client(base_url=url, timeout=60) as h:
            while not stop.is_set():
                r = h.get("/api/search", params={"q": "a red circle", "k": 50, "limit": 100})
                body = r.json() if r.status_code == 200 else {}
                seen.append((r.status_code, body.get("index_version", -1),
                             {x["rel_path"] for x in body.get("hits", [])}))

    t = threading.Thread(target=hammer)
    t.start()
    try:
        time.sleep(0.3)
        commit_next(idx)
        wait_for(lambda: c.get("/api/health").json()["index_version"] == v0 + 1)
        time.sleep(0.3)
    finally:
        stop.set()
        t.join(60)
    assert seen and all(s == 200 for s, _, _ in seen), {s for s, _, _ in seen}
    versions = [v for _, v, _ in seen]
    assert versions == sorted(versions) and versions[0] == v0 and versions[-1] == v0 + 1
    for _, v, paths in seen:  # each answer comes whole from one snapshot
        assert ("lectures/b.mp4" in paths) == (v == v0) or not paths
        assert "court/d.mp4" not in paths or v == v0 + 1

    assert {f["folder"]: f["videos"] for f in c.get("/api/folders").json()} == {"lectures": 1, "court": 2}
    s3_id = video_id_for(S3_URI)
    r = c.get(f"/api/videos/{s3_id}/stream", follow_redirects=False)
    assert r.status_code == 307
    loc = r.headers["location"]
    assert "archive-bucket" in loc and "court/d.mp4" in loc and "Signature" in loc
    gone = json.loads(c.get("/api/health").text)
    assert gone["videos"] == 3 and gone["reload_error"] == ""


def test_broken_snapshot_keeps_the_old_one(live):
    url, idx, _ = live
    c = httpx.Client(base_url=url, timeout=60)
    v0 = c.get("/api/health").json()["index_version"]
    layout, _ = require_manifest(idx)
    bad = {**json.loads(layout.manifest.read_text()), "version": v0 + 1, "faiss_file": "vectors/missing.faiss"}
    tmp = layout.root / ".manifest.json.tmp"
    tmp.write_text(json.dumps(bad))
    os.replace(tmp, layout.manifest)
    wait_for(lambda: c.get("/api/health").json()["reload_error"] != "")
    h = c.get("/api/health").json()
    assert h["index_version"] == v0 and f"still serving version {v0}" in h["reload_error"]
    assert c.get("/api/search", params={"q": "a red circle"}).status_code == 200
