"""Crash safety: SIGKILL an index run at every step of the commit protocol; the next run
finishes the work, and the index equals the one an uninterrupted run builds.

The runs are real processes (``python -m tests.crash.fake_pipeline``: the production
``run_index`` with decode + embed stubbed, see that module) killed with SIGKILL at
deterministic pause points. One chain of runs on one index directory covers each point
(a new process per point) while the archive changes underneath (a changed file, a
removed one, a new one), and the FAISS index grows Flat -> IVF during the chain.
"""

import json
import subprocess
import sys

import pytest

from groundzero.indexer.config import IndexConfig
from groundzero.store.check import errors, verify_index
from groundzero.store.layout import IndexLayout
from groundzero.store.manifest import read_manifest
from tests.crash import helpers
from tests.crash.fake_pipeline import make_archive, patch_embed, write_video_file

pytestmark = pytest.mark.slow


def _version(index):
    m = read_manifest(IndexLayout(index))
    return 0 if m is None else m.version


def _assert_whole(index):
    """Whatever was killed, what a reader sees is one consistent snapshot."""
    problems = errors(verify_index(index, deep=True))
    assert not problems, "\n".join(map(str, problems))


def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path, tiny_model_dir, monkeypatch):
    archive, index = tmp_path / "archive", tmp_path / "index"
    archive.mkdir()
    make_archive(archive, 16, bad=(5,))
    layout = IndexLayout(index)
    kill = lambda point, n=1: helpers.run_and_kill_at(archive, index, tiny_model_dir, point, n, tmp_path)

    # 1. before the first commit: video 2's frames are on disk, nothing is published
    kill("video", 2)
    assert read_manifest(layout) is None and list(layout.videos_dir.glob("*.frames.parquet"))

    # 2. between commits: snapshot 1 (2 videos) published, two more staged
    kill("before-commit", 2)
    assert _version(index) == 1 and read_manifest(layout).n_videos == 2
    _assert_whole(index)

    # the archive changes: one file rewritten (other frames), one removed, one added
    write_video_file(archive / "v000.mp4", seed=100)
    (archive / "v001.mp4").unlink()
    write_video_file(archive / "v016.mp4", seed=16)

    # 3-5. inside a commit: catalog written / FAISS written / versioned manifest written
    kill("after-catalog")
    assert _version(index) == 1 and layout.path(layout.catalog_file(2)).is_file()
    _assert_whole(index)
    kill("after-faiss")
    assert _version(index) == 1 and layout.path(layout.faiss_file(2)).is_file()
    _assert_whole(index)
    kill("after-versioned")
    assert _version(index) == 1 and layout.versioned_manifest(2).is_file()  # written, never published
    _assert_whole(index)

    # 6. just after the swap (published), before garbage collection
    kill("after-swap")
    assert _version(index) == 2
    _assert_whole(index)
    orphans = [p for p in verify_index(index) if p.code == "orphan_file"]
    assert orphans, "killed runs left files behind: the next commit must collect them"

    # 7. in the middle of garbage collection
    kill("mid-gc")
    assert _version(index) == 3
    _assert_whole(index)

    # 8. a run that is left alone finishes everything
    run = helpers.run_to_end(archive, index, tiny_model_dir)
    assert run["status"] == "completed" and run["n_failed"] == 0  # v005 failed in an earlier run: unchanged
    assert verify_index(index, deep=True) == []  # no errors, and no orphans left

    # every killed run is recorded as aborted; only the last one completed
    runs = [json.loads(p.read_text()) for p in layout.runs_dir.glob("*.json")]
    assert sorted(r["status"] for r in runs) == ["aborted"] * 7 + ["completed"]

    # the same archive indexed in one uninterrupted run gives the same snapshot
    ref = tmp_path / "ref"
    patch_embed(monkeypatch.setattr, 32)
    from groundzero.indexer.pipeline import run_index

    run_index(IndexConfig(archive=str(archive), index_dir=str(ref), model=str(tiny_model_dir), device="cpu",
                          commit_every=2, faiss_factory=helpers.GROWTH))
    facts, vectors = helpers.snapshot_content(index)
    ref_facts, ref_vectors = helpers.snapshot_content(ref)
    assert facts == ref_facts  # no video missing, none duplicated, the changed one re-indexed
    assert sorted(u.rsplit("/", 1)[-1] for u in facts) == [f"v{i:03d}.mp4" for i in range(17) if i != 1]
    assert facts[str((archive / "v005.mp4").resolve())][:2] == ("failed", "not_video")
    assert helpers.same_vectors(vectors, ref_vectors)
    m = read_manifest(layout)
    assert m.extra["vectors"]["factory"].startswith("IVF")  # it grew during the chain


@pytest.mark.e2e
def test_real_cli_killed_mid_run_then_rerun(tmp_path, tiny_model_dir):
    """The real ``groundzero index`` (ffmpeg + Ray), SIGKILLed as soon as its first video is on
    disk. The three videos may leave Ray together, so the kill can land before the run's one
    commit (the usual case) or after it; either way a reader sees one whole snapshot or none,
    and the next run indexes exactly what is missing."""
    from tests import media

    archive, index = tmp_path / "archive", tmp_path / "index"
    for i, colour in enumerate(("red", "green", "blue")):
        media.make_color_segments(archive / f"c{i}.mp4", [(colour, 6), ("white", 6 * (i + 1))])
    cmd = [sys.executable, "-m", "groundzero.cli.main", "index", str(archive), "--index", str(index),
           "--model", str(tiny_model_dir), "--device", "cpu", "--json"]
    proc = subprocess.Popen(cmd, cwd=helpers.REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    videos = index / "videos"
    helpers.wait_until(lambda: videos.is_dir() and any(videos.glob("*.frames.parquet")), proc,
                       "a stored video", timeout=240)
    helpers.kill(proc)
    m = read_manifest(IndexLayout(index))
    committed = 0 if m is None else m.n_videos
    if m is not None:
        _assert_whole(index)
    r = subprocess.run(cmd, cwd=helpers.REPO, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["run"]["n_indexed"] == 3 - committed
    assert verify_index(index, deep=True) == []
    assert read_manifest(IndexLayout(index)).n_videos == 3
