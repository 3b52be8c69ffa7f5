"""A run commits at least every ``commit_every`` videos or ``commit_every_sec`` seconds, whichever
comes first (decode + embed stubbed: :mod:`tests.crash.fake_pipeline`)."""

import time

import pytest

from groundzero.errors import ConfigError
from groundzero.indexer import pipeline
from groundzero.indexer.config import IndexConfig
from groundzero.indexer.pipeline import run_index
from groundzero.store.check import verify_index
from groundzero.store.layout import IndexLayout
from groundzero.store.manifest import read_manifest
from tests.crash.fake_pipeline import fake_embed_all, make_archive, patch_embed


def _cfg(tmp_path, model, **kw) -> IndexConfig:
    return IndexConfig(archive=str(tmp_path / "archive"), index_dir=str(tmp_path / "index"), model=str(model),
                       device="cpu", **kw)


@pytest.fixture
def archive(tmp_path):
    (tmp_path / "archive").mkdir()
    make_archive(tmp_path / "archive", 5)
    return tmp_path / "archive"


def test_defaults_are_50_videos_or_10_minutes():
    cfg = IndexConfig(archive="a", index_dir="i")
    assert (cfg.commit_every, cfg.commit_every_sec) == (50, 600.0)
    with pytest.raises(ConfigError, match="commit_every_sec must be > 0") as e:
        IndexConfig(archive="a", index_dir="i", commit_every_sec=0).validate()
    assert e.value.field == "commit_every_sec"


def test_time_bound_commits_before_the_count_bound(tmp_path, archive, tiny_model_dir, monkeypatch):
    """commit_every=50 alone would publish once, at the end; a tiny time bound publishes after
    every video, so a killed run would have kept each one."""
    patch_embed(monkeypatch.setattr, 32, delay_sec=0.02)
    seen = []
    cfg = _cfg(tmp_path, tiny_model_dir, commit_every=50, commit_every_sec=0.01)
    rep = run_index(cfg, lambda p: seen.append((p.indexed, p.commits)))
    assert rep.record.n_commits == 5
    assert [c for n, c in seen if n] == [1, 2, 3, 4, 5]  # each video published as soon as it finished
    layout = IndexLayout(tmp_path / "index")
    assert read_manifest(layout).version == 5 and read_manifest(layout).n_videos == 5
    assert sorted(p.name for p in layout.manifests_dir.glob("*.json"))[-3:] == ["000003.json", "000004.json",
                                                                               "000005.json"]
    assert verify_index(tmp_path / "index") == []


def test_count_bound_alone(tmp_path, archive, tiny_model_dir, monkeypatch):
    patch_embed(monkeypatch.setattr, 32)
    rep = run_index(_cfg(tmp_path, tiny_model_dir, commit_every=2, commit_every_sec=3600))
    assert rep.record.n_commits == 3  # after videos 2 and 4, then the last one at the end


def test_time_bound_is_checked_while_frames_arrive(tmp_path, archive, tiny_model_dir, monkeypatch):
    """A finished video does not wait for the next one to finish: the bound is checked as each
    batch of frames arrives (the progress callback ``_embed_all`` gets)."""
    at_tick = []

    def slow_second_video(cfg, todo, *args):
        progress, tick = args[-2], args[-1]
        videos = fake_embed_all(cfg, todo, dim=32)
        yield next(videos)
        time.sleep(1.3)  # the next video's frames keep arriving for a while
        tick(progress)
        at_tick.append(progress.commits)
        yield from videos

    monkeypatch.setattr(pipeline, "_embed_all", slow_second_video)
    rep = run_index(_cfg(tmp_path, tiny_model_dir, commit_every=50, commit_every_sec=1.0))
    assert at_tick == [1]  # video 1 published while video 2 was still decoding
    assert rep.record.n_commits == 2 and rep.record.n_indexed == 5
