"""Clips shorter than one sampling interval, and 1 fps videos, indexed by the real CLI and served:
every hit lies inside its video, and a thumbnail at any t in [0, duration] is a picture."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from tests import media
from tests.serve.conftest import make_cfg

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

CLIPS = {  # rel_path -> (seconds, frames per second of the file)
    "short.mp4": (0.4, 10),  # one frame at the index's 1 fps: shorter than its interval
    "tiny.mp4": (0.4, 1),  # one frame in the file, too
    "onefps.mp4": (8, 1),  # the last frame stands for [7, 8) s
    "minute.mp4": (61, 1),
}
QUERIES = ["a red circle", "the lecturer writes on the board", "anything", "zz"]


@pytest.fixture(scope="module")
def short_index(tmp_path_factory, tiny_model_dir, ray_session):
    from groundzero.cli.main import app

    root = tmp_path_factory.mktemp("short-archive")
    for rel, (seconds, fps) in CLIPS.items():
        media.make_testsrc(root / rel, seconds, fps=fps)
    index = tmp_path_factory.mktemp("short-idx") / "index"
    r = CliRunner().invoke(app, ["index", str(root), "--index", str(index), "--model", str(tiny_model_dir),
                                 "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    return index


@pytest.fixture(scope="module")
def clip_rows(short_index):
    """rel_path -> catalog row."""
    from groundzero.store.catalog import read_catalog
    from groundzero.store.manifest import require_manifest

    layout, m = require_manifest(short_index)
    return {r["rel_path"]: r for r in read_catalog(layout, m)}


@pytest.fixture(scope="module")
def short_url(short_index):
    from groundzero.search.service.app import create_app
    from groundzero.search.service.server import BackgroundServer

    with BackgroundServer(create_app(make_cfg(short_index))) as url:
        yield url.rstrip("/")


def test_hits_lie_inside_their_videos(short_index):
    from groundzero.search.config import SearchConfig
    from groundzero.search.searcher import Searcher

    s = Searcher(short_index, device="cpu", cfg=SearchConfig(top_k=50))
    durations = {r["rel_path"]: float(r["duration_sec"]) for r in s.videos.values()}
    assert set(durations) == set(CLIPS) and durations["short.mp4"] == pytest.approx(0.4, abs=0.05)
    seen = set()
    for q in QUERIES:
        for h in s.search(q).hits:
            assert 0 <= h.start_sec < h.end_sec <= durations[h.rel_path], h
            seen.add(h.rel_path)
    assert {"short.mp4", "tiny.mp4"} <= seen


def test_every_hit_has_a_thumbnail(short_url):
    with httpx.Client(base_url=short_url, timeout=60) as c:
        for q in QUERIES[:2]:
            body = c.get("/api/search", params={"q": q, "k": 50, "limit": 100}).json()
            assert body["hits"]
            for h in body["hits"]:
                assert h["end_sec"] <= body["videos"][h["video_id"]]["duration_sec"]
                for t in (h["start_sec"], h["end_sec"]):
                    r = c.get(f"/api/videos/{h['video_id']}/thumbnail", params={"t": t, "w": 64})
                    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8", (h, t, r.text[:200])


@pytest.mark.parametrize("rel", list(CLIPS))
def test_a_thumbnail_at_any_t_inside_the_video(short_url, clip_rows, rel):
    vid, d = clip_rows[rel]["video_id"], float(clip_rows[rel]["duration_sec"])
    ts = sorted({*np.linspace(0, d, 6).round(3).tolist(), max(0.0, d - 0.5), max(0.0, d - 0.05), d})
    with httpx.Client(base_url=short_url, timeout=60) as c:
        for t in ts:
            r = c.get(f"/api/videos/{vid}/thumbnail", params={"t": t, "w": 64})
            assert r.status_code == 200 and r.content[:2] == b"\xff\xd8", (rel, t, r.text[:200])
        assert c.get(f"/api/videos/{vid}/thumbnail", params={"t": d + 0.2}).status_code == 422
