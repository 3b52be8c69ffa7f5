"""SIGTERM stops a run the way Ctrl-C does, but never in the middle of a commit
(decode + embed stubbed: :mod:`tests.crash.fake_pipeline`)."""

import json
import os
import signal

import pytest

from groundzero.indexer.config import IndexConfig
from groundzero.indexer.pipeline import run_index
from groundzero.indexer.stops import RunStopped, stop_on_signals
from groundzero.store import writer as writer_mod
from groundzero.store.check import verify_index
from groundzero.store.layout import IndexLayout
from groundzero.store.manifest import read_manifest
from tests.crash.fake_pipeline import make_archive, patch_embed


def _run(tmp_path, model, **kw):
    (tmp_path / "archive").mkdir(exist_ok=True)
    make_archive(tmp_path / "archive", 5)
    cfg = IndexConfig(archive=str(tmp_path / "archive"), index_dir=str(tmp_path / "index"), model=str(model),
                      device="cpu", commit_every=2, **kw)
    with stop_on_signals():
        return run_index(cfg)


def _record(tmp_path) -> dict:
    (path,) = IndexLayout(tmp_path / "index").runs_dir.glob("*.json")
    return json.loads(path.read_text())


def test_sigterm_inside_a_commit_takes_effect_after_it(tmp_path, tiny_model_dir, monkeypatch):
    patch_embed(monkeypatch.setattr, 32)
    orig = writer_mod.write_catalog

    def write_catalog(*a, **k):  # half-way through the first commit
        orig(*a, **k)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(writer_mod, "write_catalog", write_catalog)
    before = signal.getsignal(signal.SIGTERM)
    commits = []
    orig_commit = writer_mod.IndexWriter.commit
    monkeypatch.setattr(writer_mod.IndexWriter, "commit", lambda self, run_id: commits.append(1) or orig_commit(
        self, run_id))
    with pytest.raises(RunStopped, match="stopped by SIGTERM") as e:
        _run(tmp_path, tiny_model_dir)
    assert e.value.signum == signal.SIGTERM
    assert len(commits) == 1  # not cut short (and then made again on the way out)
    m = read_manifest(IndexLayout(tmp_path / "index"))
    assert m.version == 1 and m.n_videos == 2  # the commit it arrived in finished, nothing after it ran
    assert _record(tmp_path)["status"] == "aborted" and _record(tmp_path)["message"] == "RunStopped: stopped by SIGTERM"
    assert [p for p in verify_index(tmp_path / "index", deep=True) if p.severity == "error"] == []
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is gone afterwards


def test_sigterm_between_videos_keeps_what_finished(tmp_path, tiny_model_dir, monkeypatch):
    """Stopped after video 3 (snapshot 1 holds videos 1-2): video 3 is published on the way out."""
    patch_embed(monkeypatch.setattr, 32)
    orig = writer_mod.IndexWriter.put_indexed
    calls = {"n": 0}

    def put_indexed(self, *a, **k):
        row = orig(self, *a, **k)
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return row

    monkeypatch.setattr(writer_mod.IndexWriter, "put_indexed", put_indexed)
    with pytest.raises(RunStopped):
        _run(tmp_path, tiny_model_dir)
    assert read_manifest(IndexLayout(tmp_path / "index")).n_videos == 3
    assert _record(tmp_path)["status"] == "aborted"
