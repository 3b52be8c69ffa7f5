"""Clips (groundzero.search.clips, `groundzero clip`, `search --export`) on a generated video with a
keyframe every 2 s: a stream copy starts on the keyframe at or before the span, --exact within a frame
of it; nothing is overwritten, a bad span or an unknown id is one clear line, a failed cut leaves no file."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from groundzero.errors import ClipError, ConfigError, VideoNotFoundError
from groundzero.search.clips import ClipRequest, clip_name, cut_clip, export_hits, find_video
from groundzero.search.results import Hit
from tests import media

FPS = 10
FRAME = 1 / FPS
SECONDS = 20


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return media.make_keyframed(tmp_path_factory.mktemp("clip-src") / "talk one.mp4", SECONDS, keyframe_sec=2.0,
                                fps=FPS)


def probe(path) -> dict:
    r = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,duration:format=duration",
                        "-of", "json", str(path)], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def kinds(path) -> list[str]:
    return [s["codec_type"] for s in probe(path)["streams"]]


# -- the library -------------------------------------------------------------------------------

def test_stream_copy_starts_at_the_keyframe_at_or_before_start(video, tmp_path):
    c = cut_clip(str(video), 5.3, 9.0, tmp_path / "c.mp4", duration_sec=SECONDS)
    assert c.start_sec == pytest.approx(4.0)  # keyframes at 0, 2, 4, 6...: 4 s is the one at or before 5.3
    assert c.end_sec == pytest.approx(9.0, abs=FRAME + 1e-6)
    assert (c.requested_start_sec, c.requested_end_sec, c.exact) == (5.3, 9.0, False)
    assert c.bytes == Path(c.path).stat().st_size > 0
    assert sorted(kinds(c.path)) == ["audio", "video"]  # both streams kept
    v = next(s for s in probe(c.path)["streams"] if s["codec_type"] == "video")
    assert float(v["duration"]) == pytest.approx(5.0, abs=FRAME + 1e-6)

    on_key = cut_clip(str(video), 6.0, 8.0, tmp_path / "k.mkv", duration_sec=SECONDS)  # start on a keyframe
    assert on_key.start_sec == pytest.approx(6.0) and on_key.end_sec == pytest.approx(8.0, abs=FRAME + 1e-6)
    assert sorted(kinds(on_key.path)) == ["audio", "video"]


def test_exact_is_within_a_frame_of_the_span(video, tmp_path):
    c = cut_clip(str(video), 5.3, 9.0, tmp_path / "e.mov", exact=True, duration_sec=SECONDS)
    assert c.exact and c.start_sec == pytest.approx(5.3)
    assert abs((c.end_sec - c.start_sec) - 3.7) <= FRAME + 1e-6
    v = next(s for s in probe(c.path)["streams"] if s["codec_type"] == "video")
    assert abs(float(v["duration"]) - 3.7) <= FRAME + 1e-6
    assert sorted(kinds(c.path)) == ["audio", "video"]


def test_an_existing_file_is_kept_unless_force(video, tmp_path):
    out = tmp_path / "c.mp4"
    out.write_bytes(b"precious")
    with pytest.raises(ConfigError, match="already exists; pass force") as e:
        cut_clip(str(video), 1, 3, out, duration_sec=SECONDS)
    assert e.value.field == "force" and out.read_bytes() == b"precious"
    c = cut_clip(str(video), 1, 3, out, duration_sec=SECONDS, force=True)
    assert c.bytes > len(b"precious") and kinds(out)[0] == "video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4"]  # no temporary file left


@pytest.mark.parametrize("start, end, match", [
    (5, 5, "must be after"), (7, 3, "must be after"), (-1, 3, ">= 0"), (20, 25, "at or past the end"),
    (float("nan"), 3, "finite"), (3, 3.001, "shorter than"),
])
def test_bad_spans_are_refused(video, tmp_path, start, end, match):
    with pytest.raises(ConfigError, match=match):
        cut_clip(str(video), start, end, tmp_path / "c.mp4", duration_sec=SECONDS)
    assert not list(tmp_path.iterdir())


def test_an_end_past_the_video_is_cut_to_it_and_a_long_span_refused():
    assert ClipRequest(18, 99).validate(duration_sec=20) == ClipRequest(18, 20)
    with pytest.raises(ConfigError, match="longer than the 60 s") as e:
        ClipRequest(0, 61).validate(duration_sec=100, max_sec=60)
    assert e.value.field == "end_sec"


def test_a_bad_output_suffix_is_refused(video, tmp_path):
    with pytest.raises(ConfigError, match=r"must end in \.mp4") as e:
        cut_clip(str(video), 1, 3, tmp_path / "c.avi")
    assert e.value.field == "out_path"


def test_a_failed_cut_leaves_no_file_and_quotes_ffmpeg(video, tmp_path):
    fake = tmp_path / "bin" / "ffmpeg"  # writes half a file, complains, fails
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nfor a; do last="$a"; done\nprintf half > "$last"\n'
                    'echo "line one" >&2\necho "Conversion failed: disk on fire" >&2\nexit 1\n')
    fake.chmod(0o755)
    out_dir = tmp_path / "out"
    with pytest.raises(ClipError, match="disk on fire") as e:
        cut_clip(str(video), 1, 3, out_dir / "c.mp4", duration_sec=SECONDS, ffmpeg=str(fake))
    assert "disk on fire" in e.value.stderr_tail
    assert list(out_dir.iterdir()) == []

    text = media.make_text_file(tmp_path / "notes.mp4")
    with pytest.raises(ClipError, match="ffprobe cannot read"):
        cut_clip(str(text), 1, 3, out_dir / "c.mp4")
    assert list(out_dir.iterdir()) == []


def test_export_names_sort_by_rank_and_nothing_is_overwritten(video, tmp_path):
    hits = [Hit("v1", str(video), "talks/talk one.mp4", s, e, 1.0 - i / 10, 0.9)
            for i, (s, e) in enumerate([(12.0, 14.0), (2.5, 5.0), (7.0, 8.0)])]
    clips = export_hits(hits, tmp_path / "out", {"v1": SECONDS})
    names = [Path(c.path).name for c in clips]
    assert names == sorted(names) == ["01_talk_one_00h00m12.0s-00h00m14.0s.mp4",
                                      "02_talk_one_00h00m02.5s-00h00m05.0s.mp4",
                                      "03_talk_one_00h00m07.0s-00h00m08.0s.mp4"]
    assert clips[1].start_sec == pytest.approx(2.0)
    with pytest.raises(ConfigError, match="already exists"):
        export_hits(hits, tmp_path / "out", {"v1": SECONDS})
    assert clip_name("a/b.webm", 0, 1, ".mkv", rank=7, rank_digits=3) == "007_b_00h00m00.0s-00h00m01.0s.mkv"


# -- an index (hand-made: a committed catalog, no vectors) and the CLI ------------------------------

@pytest.fixture(scope="module")
def index(video, tmp_path_factory) -> Path:
    from groundzero.data.proposals import ProposalConfig
    from groundzero.model.identity import ModelIdentity
    from groundzero.store.catalog import write_catalog
    from groundzero.store.layout import IndexLayout
    from groundzero.store.manifest import IndexParams, Manifest, write_manifest

    layout = IndexLayout(tmp_path_factory.mktemp("clip-idx") / "index")
    layout.make_dirs()
    now = datetime.now(timezone.utc).isoformat()
    row = {"video_id": "vid123", "video_seq": 0, "uri": str(video), "rel_path": "talks/talk one.mp4",
           "size_bytes": 1, "mtime_ns": 0, "content_hash": "", "duration_sec": float(SECONDS), "width": 160,
           "height": 120, "n_frames": 20, "n_proposals": 1, "status": "indexed", "reason": "", "error": "",
           "frames_file": "", "proposals_file": "", "run_id": "r", "updated_at": now, "content_id": "",
           "note": None}
    failed = {**row, "video_id": "bad456", "video_seq": 1, "rel_path": "notes.txt", "status": "failed",
              "reason": "not_video", "error": "no video stream"}
    write_catalog(layout.path(layout.catalog_file(1)), [row, failed])
    write_manifest(layout, Manifest(
        version=1, created_at=now, run_id="r", model=ModelIdentity("tiny", "f" * 64, 32, 32, 16),
        params=IndexParams(1.0, 32, ProposalConfig()), catalog_file=layout.catalog_file(1), faiss_file=None,
        faiss_factory="Flat", n_videos=1, n_tokens=0))
    return layout.root


def run_cli(*args: str):
    from groundzero.cli.main import app

    return CliRunner().invoke(app, list(args))


def test_find_video_by_id_or_path(index):
    assert find_video(str(index), "vid123")["rel_path"] == "talks/talk one.mp4"
    assert find_video(str(index), "talks/talk one.mp4")["video_id"] == "vid123"
    with pytest.raises(VideoNotFoundError, match="could not be indexed"):
        find_video(str(index), "bad456")


def test_cli_clip_copy_and_exact(index, tmp_path):
    out = tmp_path / "clip.mp4"
    r = run_cli("clip", "vid123", "00:05.3", "9", "-o", str(out), "--index", str(index))
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and "00:00:04.0–00:00:09.0" in r.output and "keyframe" in r.output
    assert out.is_file()

    r = run_cli("clip", "vid123", "5.3", "0:00:09", "-o", str(tmp_path / "x.mkv"), "--index", str(index),
                "--exact", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["exact"] and d["video_id"] == "vid123" and d["path"] == str(tmp_path / "x.mkv")
    assert abs(d["end_sec"] - d["start_sec"] - 3.7) <= FRAME + 1e-6 and d["bytes"] > 0


@pytest.mark.parametrize("args, code, message", [
    (["nope", "1", "3"], 1, "error: no video 'nope' in the index"),
    (["bad456", "1", "3"], 1, "could not be indexed"),
    (["vid123", "7", "3"], 2, "error: END=3 must be after START=7"),
    (["vid123", "25", "30"], 2, "error: START=25 lies at or past the end"),
    (["vid123", "ten", "30"], 2, "error: START: 'ten' is not a time"),
])
def test_cli_errors_are_one_line(index, tmp_path, args, code, message):
    r = run_cli("clip", *args, "-o", str(tmp_path / "c.mp4"), "--index", str(index))
    assert r.exit_code == code, r.output
    assert message in r.output and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "c.mp4").exists()


def test_cli_refuses_to_overwrite_without_force(index, tmp_path):
    out = tmp_path / "c.mp4"
    out.write_bytes(b"keep me")
    r = run_cli("clip", "vid123", "1", "3", "-o", str(out), "--index", str(index))
    assert r.exit_code == 2 and "already exists; pass --force to overwrite it, or choose another -o" in r.output
    assert out.read_bytes() == b"keep me"
    r = run_cli("clip", "vid123", "1", "3", "-o", str(out), "--index", str(index), "--force", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["bytes"] == out.stat().st_size > 7


def test_cli_unknown_index_is_one_line(tmp_path):
    r = run_cli("clip", "vid123", "1", "3", "-o", str(tmp_path / "c.mp4"), "--index", str(tmp_path / "none"))
    assert r.exit_code == 1 and "does not exist" in r.output and "Traceback" not in r.output
