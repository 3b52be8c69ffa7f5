"""End to end on generated video: ffmpeg -> Ray Data -> SigLIP -> Parquet/FAISS -> DuckDB -> search."""

import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from groundzero.cli.main import EXIT_SOME_FAILED, app
from groundzero.store.catalog import connect
from groundzero.store.manifest import require_manifest
from groundzero.store.tables import read_frames
from tests import media

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

GOOD = {
    "lectures/a.mp4": [("red", 20), ("blue", 25), ("green", 20)],  # 65 s
    "lectures/b.mp4": [("white", 40), ("black", 50), ("yellow", 30)],  # 120 s
    "c.mp4": [("orange", 30), ("purple", 30), ("red", 30), ("blue", 30), ("green", 30), ("white", 30)],  # 180 s
}
BAD = {"empty.mp4": "empty_file", "notes.txt": "not_video", "audio.m4a": "no_video_stream",
       "cut.mp4": "truncated", "gone.mp4": "unreadable"}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    for rel, segs in GOOD.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        media.make_color_segments(root / rel, segs)
    media.make_zero_byte(root / "empty.mp4")
    media.make_text_file(root / "notes.txt")
    media.make_audio_only(root / "audio.m4a", 5)
    media.make_truncated(root / "cut.mp4", faststart=False)
    os.symlink(root / "does-not-exist.mp4", root / "gone.mp4")
    (root / ".hidden.mp4").write_bytes(b"")  # hidden files are not candidates
    return root


@pytest.fixture(scope="module")
def indexed(archive, tmp_path_factory, tiny_model_dir, ray_session):
    index = tmp_path_factory.mktemp("idx") / "index"
    r = CliRunner().invoke(app, ["index", str(archive), "--index", str(index), "--model", str(tiny_model_dir),
                                 "--device", "cpu", "--json"])
    return index, r


def test_run_indexes_good_files_and_reports_bad_ones(indexed):
    index, r = indexed
    assert r.exit_code == EXIT_SOME_FAILED, r.output
    report = json.loads(r.stdout)
    assert report["run"]["n_indexed"] == 3 and report["run"]["n_failed"] == len(BAD)
    assert {f["rel_path"]: f["reason"] for f in report["failures"]} == BAD, report["failures"]
    assert report["run"]["failures_by_reason"] == {v: 1 for v in BAD.values()}


def test_catalog_has_each_video_once_with_frames_aligned(indexed):
    index, _ = indexed
    layout, m = require_manifest(index)
    con = connect(layout, m)
    rows = con.execute("SELECT rel_path, status, n_frames, duration_sec, frames_file, reason, error "
                       "FROM videos ORDER BY rel_path").fetchall()
    assert sorted(r[0] for r in rows) == sorted(list(GOOD) + list(BAD))
    for rel, status, n_frames, duration, frames_file, reason, error in rows:
        if rel in GOOD:
            seconds = sum(s for _, s in GOOD[rel])
            assert status == "indexed" and n_frames == seconds and abs(duration - seconds) < 0.5
            ts, emb = read_frames(layout.path(frames_file))
            np.testing.assert_allclose(ts, np.arange(seconds))  # 1 fps: frame k at k seconds
            assert ts.max() < duration
        else:
            assert status == "failed" and reason == BAD[rel] and rel.split("/")[-1] in error
    # the frames table counts exactly the good videos' seconds
    assert con.execute("SELECT count(*) FROM frames").fetchone()[0] == sum(sum(s for _, s in v) for v in GOOD.values())


def test_embeddings_follow_the_colour_segments(indexed):
    """Frames inside one solid-colour segment embed identically; a new colour embeds differently.
    This checks end to end that each embedding belongs to the timestamp it is stored with."""
    index, _ = indexed
    layout, m = require_manifest(index)
    con = connect(layout, m)
    f = con.execute("SELECT frames_file FROM videos WHERE rel_path='lectures/a.mp4'").fetchone()[0]
    ts, emb = read_frames(layout.path(f))
    sim = emb @ emb.T
    for a, b in ((1, 18), (22, 43), (46, 63)):  # same segment
        assert sim[a, b] > 0.999
    for a, b in ((18, 21), (43, 46)):  # across a colour change
        assert sim[a, b] < 0.99


def test_catalog_command_table_failed_json_and_sql(indexed):
    index, _ = indexed
    runner = CliRunner()
    r = runner.invoke(app, ["catalog", "list", "--index", str(index)])
    assert r.exit_code == 0 and "lectures/a.mp4" in r.stdout and "3 indexed" in r.stdout and "5 failed" in r.stdout
    r = runner.invoke(app, ["catalog", "list", "--index", str(index), "--json"])
    assert r.exit_code == 0 and len(json.loads(r.stdout)) == 8, r.output
    r = runner.invoke(app, ["catalog", "failed", "--index", str(index), "--json"])
    assert {d["rel_path"] for d in json.loads(r.stdout)} == set(BAD)
    r = runner.invoke(app, ["catalog", "sql", "SELECT n_indexed, n_failed, status FROM runs", "--index", str(index),
                            "--json"])
    assert json.loads(r.stdout) == [{"n_indexed": 3, "n_failed": 5, "status": "completed_with_failures"}]
    r = runner.invoke(app, ["catalog", "sql", "SELECT nope FROM videos", "--index", str(index)])
    assert r.exit_code == 2 and "SQL failed" in r.stderr and r.stderr.count("\n") == 1
    r = runner.invoke(app, ["catalog", "summary", "--index", str(index), "--json"])
    s = json.loads(r.stdout)
    assert s["videos_indexed"] == 3 and s["videos_failed"] == 5 and s["last_run"]["n_failed"] == 5
    assert {f["rel_path"] for f in s["last_run_failures"]} == set(BAD)
    r = runner.invoke(app, ["catalog", "list", "--index", str(index.parent / "none")])
    assert r.exit_code == 1 and "does not exist" in r.stderr and r.stderr.count("\n") == 1


def test_search_returns_in_range_spans(indexed):
    index, _ = indexed
    r = CliRunner().invoke(app, ["search", "a red circle", "--index", str(index), "--top", "5", "--json"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)["hits"]
    assert 1 <= len(hits) <= 5
    durations = {rel: sum(s for _, s in segs) for rel, segs in GOOD.items()}
    for h in hits:
        assert 0 <= h["start_sec"] < h["end_sec"] <= durations[h["rel_path"]]
        assert h["start_sec"] == int(h["start_sec"])  # spans start on a sampled frame


def test_second_run_is_incremental(indexed, archive, tiny_model_dir):
    index, _ = indexed
    runner = CliRunner()
    r = runner.invoke(app, ["index", str(archive), "--index", str(index), "--model", str(tiny_model_dir),
                            "--dry-run", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["new"] == []
    r = runner.invoke(app, ["index", str(archive), "--index", str(index), "--model", str(tiny_model_dir), "--json"])
    run = json.loads(r.stdout)["run"]
    assert r.exit_code == 0 and run["n_unchanged"] == 8 and run["n_indexed"] == 0 and run["n_failed"] == 0


def test_a_run_commits_every_commit_every_sec(archive, tmp_path, tiny_model_dir, ray_session):
    """With a tiny time bound the real pipeline publishes a snapshot as videos finish (and as
    frames arrive), not only at the end: a run killed after hours keeps what it finished."""
    index = tmp_path / "index"
    r = CliRunner().invoke(app, ["index", str(archive), "--index", str(index), "--model", str(tiny_model_dir),
                                 "--device", "cpu", "--commit-every-sec", "0.001", "--json"])
    assert r.exit_code == EXIT_SOME_FAILED, r.output
    run = json.loads(r.stdout)["run"]
    assert run["n_commits"] > 1 and run["n_indexed"] == 3
    _, m = require_manifest(index)
    assert m.version == run["n_commits"] and m.n_videos == 3


def test_index_errors_are_one_line(tmp_path, tiny_model_dir, archive):
    runner = CliRunner()
    r = runner.invoke(app, ["index", str(tmp_path / "nope"), "--index", str(tmp_path / "i")])
    assert r.exit_code == 2 and "does not exist" in r.stderr and r.stderr.count("\n") == 1
    r = runner.invoke(app, ["index", str(archive), "--index", str(tmp_path / "i"), "--model", str(tmp_path / "m")])
    assert r.exit_code == 1 and "does not exist" in r.stderr and r.stderr.count("\n") == 1
    r = runner.invoke(app, ["index", str(archive), "--index", str(tmp_path / "i"), "--fps", "0"])
    assert r.exit_code == 2 and "error: --fps must be in (0, 30], got 0.0" in r.stderr
    # a library error names config fields (stride_sec, window_sec); the command shows its flags
    r = runner.invoke(app, ["index", str(archive), "--index", str(tmp_path / "i"), "--window", "10", "--stride", "20"])
    assert r.exit_code == 2 and "--stride must be in (0, --window=10.0] seconds" in r.stderr, r.output
    r = runner.invoke(app, ["index", str(archive), "--index", str(tmp_path / "i"), "--workers", "0"])
    assert r.exit_code == 2 and "--workers must be >= 1" in r.stderr, r.output
    r = runner.invoke(app, ["index", str(archive), "--index", str(tmp_path / "i"), "--commit-every-sec", "0"])
    assert r.exit_code == 2 and "error: --commit-every-sec must be > 0 seconds, got 0.0" in r.stderr, r.output
