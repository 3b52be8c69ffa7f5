"""A full disk stops a run with one line and exit status 1, cleans up what the run wrote, records
it ``failed``, keeps the previous snapshot whole and searchable, and the next run succeeds once
there is space, with no hand cleaning.

The first tests inject ENOSPC where the store writes (decode + embed stubbed, runs anywhere); the
last one fills a real tmpfs with the real ``groundzero index`` (ffmpeg + Ray), as root.
"""

import errno
import json
import os
import shutil
import subprocess
import uuid

import pytest
from typer.testing import CliRunner

from groundzero.cli.main import app
from groundzero.errors import DiskFullError
from groundzero.indexer.config import IndexConfig
from groundzero.indexer.pipeline import run_index
from groundzero.store import tables
from groundzero.store import writer as writer_mod
from groundzero.store.check import verify_index
from groundzero.store.gc import referenced_files
from groundzero.store.layout import IndexLayout
from groundzero.store.manifest import read_manifest
from groundzero.store.vectors import ContextIndex
from tests.crash.fake_pipeline import make_archive, patch_embed, write_video_file

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _cfg(archive, index, model, **kw) -> IndexConfig:
    return IndexConfig(archive=str(archive), index_dir=str(index), model=str(model), device="cpu", **kw)


def _runs(index) -> list[dict]:
    """Run records in the order they were last written."""
    paths = sorted(IndexLayout(index).runs_dir.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    return [json.loads(p.read_text()) for p in paths]


def _store_files(index) -> set[str]:
    """Every file of the index except run records, the lock and the manifests."""
    root = IndexLayout(index).root
    skip = ("catalog/runs/", "manifests/", ".lock", "manifest.json", ".lease/")
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
            and not p.relative_to(root).as_posix().startswith(skip)}


def _assert_clean(index) -> None:
    """Only files a snapshot names are left: nothing staged, no .tmp; the snapshot verifies."""
    layout = IndexLayout(index)
    assert not [p for p in layout.root.rglob("*.tmp")]
    assert _store_files(index) <= referenced_files(layout, read_manifest(layout))
    assert [p for p in verify_index(index, deep=True) if p.severity == "error" or "orphan" in p.code
            or "tmp" in p.code] == []


@pytest.fixture
def archive(tmp_path):
    root = tmp_path / "archive"
    root.mkdir()
    make_archive(root, 2)
    return root


def _fail_nth_write(monkeypatch, n: int):
    """The n-th frames file written from now on fails half-way: ENOSPC, its .tmp left behind."""
    calls = {"n": 0}
    orig = tables.write_frames

    def write_frames(path, *a, **k):
        calls["n"] += 1
        if calls["n"] == n:
            path.with_name(f".{path.name}.tmp").write_bytes(b"PAR1 half")
            raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
        return orig(path, *a, **k)

    monkeypatch.setattr(tables, "write_frames", write_frames)


def test_enospc_writing_a_video_cleans_up_and_fails_the_run(tmp_path, archive, tiny_model_dir, monkeypatch):
    index = tmp_path / "index"
    patch_embed(monkeypatch.setattr, 32)
    run_index(_cfg(archive, index, tiny_model_dir))
    before = read_manifest(IndexLayout(index))
    for i in range(2, 6):
        write_video_file(archive / f"v{i:03d}.mp4", seed=i)

    _fail_nth_write(monkeypatch, 3)  # two more videos staged, the third fails
    with pytest.raises(DiskFullError) as e:
        run_index(_cfg(archive, index, tiny_model_dir))
    msg = str(e.value)
    assert msg.startswith(f"no space left on device while writing {index}/videos/") and ".frames.parquet (" in msg
    assert "the run had written " in msg and "it needs about " in msg and " more for 4 videos" in msg
    assert msg.endswith("free space on that disk or pass --index on a larger one, then run again: "
                        "videos committed so far are kept")
    assert e.value.written_bytes > 0 and e.value.needed_bytes > 0

    assert read_manifest(IndexLayout(index)) == before  # the previous snapshot, untouched
    _assert_clean(index)  # the two staged videos and the .tmp are gone
    failed = _runs(index)[-1]
    assert failed["status"] == "failed" and failed["message"] == msg and failed["finished_at"]
    assert failed["n_indexed"] == 0 and failed["n_commits"] == 0  # what it kept, not what it had staged

    monkeypatch.undo()
    patch_embed(monkeypatch.setattr, 32)
    rep = run_index(_cfg(archive, index, tiny_model_dir))
    assert rep.record.status == "completed" and rep.record.n_indexed == 4
    assert read_manifest(IndexLayout(index)).n_videos == 6
    assert verify_index(index, deep=True) == []


def test_a_run_keeps_what_it_committed_before_the_disk_filled(tmp_path, archive, tiny_model_dir, monkeypatch):
    index = tmp_path / "index"
    for i in range(2, 6):
        write_video_file(archive / f"v{i:03d}.mp4", seed=i)
    patch_embed(monkeypatch.setattr, 32)
    _fail_nth_write(monkeypatch, 4)  # commits after videos 1-2, stages 3, fails on 4
    with pytest.raises(DiskFullError, match=r"more for 4 videos"):
        run_index(_cfg(archive, index, tiny_model_dir, commit_every=2))
    m = read_manifest(IndexLayout(index))
    assert m.version == 1 and m.n_videos == 2
    _assert_clean(index)
    failed = _runs(index)[-1]
    assert failed["status"] == "failed" and failed["n_indexed"] == 2 and failed["n_commits"] == 1


def test_enospc_writing_faiss_at_commit(tmp_path, archive, tiny_model_dir, monkeypatch):
    """FAISS reports a full disk as a RuntimeError; the catalog of the unfinished commit goes too."""
    index = tmp_path / "index"
    patch_embed(monkeypatch.setattr, 32)
    run_index(_cfg(archive, index, tiny_model_dir))
    write_video_file(archive / "v002.mp4", seed=2)

    def save(self, path):
        path.with_name(f".{path.name}.tmp").write_bytes(b"IxMp")
        raise RuntimeError("Error in void faiss::write_index(const Index*, IOWriter*, int) at index_write.cpp:499: "
                           f"Error: 'ret == (size * 4)' failed: write error in {path}: 10 != 512 "
                           "(No space left on device)")

    monkeypatch.setattr(ContextIndex, "save", save)
    with pytest.raises(DiskFullError, match=r"^no space left on device while writing .*/vectors/context-000002\.faiss"):
        run_index(_cfg(archive, index, tiny_model_dir))
    assert read_manifest(IndexLayout(index)).version == 1
    assert not IndexLayout(index).path("catalog/videos-000002.parquet").exists()
    _assert_clean(index)
    assert _runs(index)[-1]["status"] == "failed"


def test_disk_full_before_the_writer_writes(tmp_path, archive, tiny_model_dir, monkeypatch):
    patch_embed(monkeypatch.setattr, 32)

    def mark_dead_runs(*a, **k):
        raise ENOSPC

    monkeypatch.setattr(writer_mod, "mark_dead_runs", mark_dead_runs)
    with pytest.raises(DiskFullError, match=rf"^no space left on device while writing {tmp_path / 'index'} "):
        run_index(_cfg(archive, tmp_path / "index", tiny_model_dir))


def test_enospc_during_reindex_leaves_the_index_as_it_was(tmp_path, archive, tiny_model_dir, monkeypatch):
    from groundzero.indexer.reindex import reindex

    index = tmp_path / "index"
    patch_embed(monkeypatch.setattr, 32)
    run_index(_cfg(archive, index, tiny_model_dir))
    before = read_manifest(IndexLayout(index))
    calls = {"n": 0}
    orig = tables.write_proposals

    def write_proposals(path, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ENOSPC
        return orig(path, *a, **k)

    monkeypatch.setattr(tables, "write_proposals", write_proposals)
    with pytest.raises(DiskFullError, match=r"^no space left on device while writing .*\.proposals\.parquet \(.*\); "
                                            r"free space on that disk, then run reindex again: the index is unchanged$"):
        reindex(index, None)
    assert read_manifest(IndexLayout(index)) == before
    _assert_clean(index)


def test_cli_says_it_in_one_line(tmp_path, archive, tiny_model_dir, monkeypatch):
    patch_embed(monkeypatch.setattr, 32)
    _fail_nth_write(monkeypatch, 1)
    r = CliRunner().invoke(app, ["index", str(archive), "--index", str(tmp_path / "index"), "--model",
                                 str(tiny_model_dir), "--json"])
    assert r.exit_code == 1, r.output
    assert r.stderr.startswith("error: no space left on device while writing ") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.output and r.stdout == ""


def test_leftovers_of_a_killed_run_do_not_block_the_next(tmp_path, archive, tiny_model_dir, monkeypatch):
    """A stale ``running`` record is marked aborted and ``.tmp`` files are deleted when the next
    writer opens (under the lock), before it writes anything."""
    index = tmp_path / "index"
    patch_embed(monkeypatch.setattr, 32)
    run_index(_cfg(archive, index, tiny_model_dir))
    layout = IndexLayout(index)
    stale = [layout.videos_dir / ".abc-x.frames.parquet.tmp", layout.vectors_dir / ".context-000002.faiss.tmp",
             layout.root / ".manifest.json.0a1b2c.tmp", layout.runs_dir / ".dead.json.0a1b2c.tmp"]
    for p in stale:
        p.write_bytes(b"x" * 1000)
    (layout.runs_dir / "dead.json").write_text(json.dumps({"run_id": "dead", "status": "running",
                                                           "started_at": "2020-01-01T00:00:00+00:00"}))
    write_video_file(archive / "v002.mp4", seed=2)
    rep = run_index(_cfg(archive, index, tiny_model_dir))
    assert rep.record.status == "completed"
    assert not any(p.exists() for p in stale)
    assert json.loads((layout.runs_dir / "dead.json").read_text())["status"] == "aborted"


# -- a real full disk ------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs at tmp_path/disk (root only), unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the test fills a small disk)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", f"gz-test-{uuid.uuid4().hex[:8]}", str(disk)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip() or r.returncode}")
    yield disk
    if subprocess.run(["umount", str(disk)], capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, check=False)  # busy: detach it


@pytest.mark.slow
@pytest.mark.e2e
def test_a_real_disk_fills_up_then_frees(tmp_path, small_disk, tiny_model_dir, ray_session, caplog):
    from groundzero.search.searcher import Searcher
    from tests import media

    archive, index = tmp_path / "archive", small_disk / "index"
    for i in range(2):
        media.make_testsrc(archive / f"a{i}.mp4", 60, size=(64, 48), fps=2)
    cmd = ["index", str(archive), "--index", str(index), "--model", str(tiny_model_dir), "--device", "cpu", "--json"]
    r = CliRunner().invoke(app, cmd)
    assert r.exit_code == 0, r.output
    layout = IndexLayout(index)
    snapshot = read_manifest(layout)
    used = shutil.disk_usage(small_disk).used

    # fill the disk to leave about 120 kB, then add videos needing more than that
    free = shutil.disk_usage(small_disk).free
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (free - 120_000))
    for i in range(4):
        media.make_testsrc(archive / f"b{i}.mp4", 900, size=(64, 48), fps=1)
    caplog.clear()
    r = CliRunner().invoke(app, cmd)
    assert r.exit_code == 1, r.output
    assert r.stderr.startswith("error: no space left on device while writing ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.output and not [x for x in caplog.records if x.exc_info]
    assert f"{index}/" in r.stderr and "free space on that disk or pass --index on a larger one" in r.stderr

    failed = _runs(index)[-1]
    assert failed["status"] == "failed" and failed["message"].startswith("no space left on device while writing")
    assert read_manifest(layout) == snapshot
    _assert_clean(index)
    assert shutil.disk_usage(small_disk).used <= used + filler.stat().st_size + 64_000  # what it wrote is gone
    s = Searcher(index, device="cpu")
    assert s.manifest.version == snapshot.version and s.search("a test pattern", top_k=3).hits
    del s

    filler.unlink()  # space again: the next run needs no hand cleaning
    r = CliRunner().invoke(app, cmd)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["run"]["n_indexed"] == 4
    assert read_manifest(layout).n_videos == 6
    assert verify_index(index, deep=True) == []
