"""What is said and what is shown, end to end: captions (sidecar and in the container), OCR of
slides, bad subtitle input, a video with no audio; searched per channel and fused, incrementally."""

import json
import subprocess

import pytest
from typer.testing import CliRunner

from groundzero.cli.main import app
from groundzero.store.catalog import connect
from groundzero.store.manifest import require_manifest
from tests import media

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SRT = """1
00:00:01,000 --> 00:00:03,500
Q: Please look at exhibit twelve.

2
00:00:05,000 --> 00:00:08,000
A: That is the contract I signed in Boston.
"""
MKV_SRT = """1
00:00:02,000 --> 00:00:04,000
PROFESSOR: Now we derive the chain rule.

2
00:00:06,000 --> 00:00:09,000
PROFESSOR: The eigenvalue of this matrix is three.
"""


def _with_audio(path, seconds: float) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10",
                    "-f", "lavfi", "-i", "sine=frequency=440", "-t", str(seconds), "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)], check=True)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("talks")
    _with_audio(root / "deposition.mp4", 10)
    (root / "deposition.srt").write_text(SRT)
    # captions inside the container: an mkv with an srt stream
    _with_audio(root / "plain.mp4", 10)
    (root / "lecture.srt.tmp").write_text(MKV_SRT)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(root / "plain.mp4"), "-i",
                    str(root / "lecture.srt.tmp"), "-map", "0", "-map", "1", "-c", "copy", "-c:s", "srt",
                    str(root / "lecture.mkv")], check=True)
    (root / "plain.mp4").unlink()
    (root / "lecture.srt.tmp").unlink()
    media.make_lecture(root / "slides.mp4", [(["Fourier series"], 4.0), (["Bayes theorem", "priors"], 4.0)],
                       size=(640, 360), inset=False)
    media.make_testsrc(root / "silent.mp4", 4)  # no audio, no captions
    _with_audio(root / "broken.mp4", 4)
    (root / "broken.srt").write_text("1\n00:00:01,000 --> garbage\nhello\n")
    return root


@pytest.fixture(scope="module")
def index(archive, tmp_path_factory):
    idx = tmp_path_factory.mktemp("idx") / "index"
    r = CliRunner().invoke(app, ["index", str(archive), "--index", str(idx), "--model", "demo", "--ocr", "--json"])
    assert r.exit_code == 0, r.output
    return idx


def _search(index, query, *extra) -> dict:
    r = CliRunner().invoke(app, ["search", query, "--index", str(index), "--json", *extra])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _rows(index) -> dict:
    layout, m = require_manifest(index)
    with connect(layout, m) as con:
        cols = ["rel_path", "status", "n_frames", "n_segments", "text_note"]
        return {r[0]: dict(zip(cols, r)) for r in con.execute(f"SELECT {', '.join(cols)} FROM videos").fetchall()}


def test_every_video_indexed_with_its_text_or_a_note(index):
    rows = _rows(index)
    assert set(rows) == {"deposition.mp4", "lecture.mkv", "slides.mp4", "silent.mp4", "broken.mp4"}  # no .srt rows
    assert all(r["status"] == "indexed" and r["n_frames"] > 0 for r in rows.values())
    assert rows["deposition.mp4"]["n_segments"] >= 2 and rows["lecture.mkv"]["n_segments"] >= 2
    assert rows["slides.mp4"]["n_segments"] >= 2  # one per slide (OCR)
    assert "no audio" in rows["silent.mp4"]["text_note"]
    assert "broken.srt" in rows["broken.mp4"]["text_note"]  # the malformed file is named; frames still indexed


def test_speech_hit_is_the_utterance_with_marked_words(index):
    out = _search(index, "the witness is handed exhibit twelve")
    top = out["hits"][0]
    assert (top["rel_path"], top["start_sec"], top["end_sec"]) == ("deposition.mp4", 1.0, 3.5)
    assert "speech" in top["channels"] and out["channels_found"]["speech"]
    ev = next(e for e in top["evidence"] if e["channel"] == "speech")
    assert ev["speaker"] == "Q" and ev["source"] == "caption"
    assert sorted(ev["snippet"][a:b].lower() for a, b in ev["marks"]) == ["exhibit", "twelve"]


def test_caption_stream_inside_the_container_and_stemming(index):
    top = _search(index, "deriving the chain rule", "--channels", "speech")["hits"][0]
    assert top["rel_path"] == "lecture.mkv"  # times on the file's clock: the mkv's streams start a few ms late
    assert top["start_sec"] == pytest.approx(2.0, abs=0.1) and top["end_sec"] == pytest.approx(4.0, abs=0.1)
    assert top["evidence"][0]["speaker"] == "PROFESSOR"


def test_slide_text_hit_spans_the_slide(index):
    out = _search(index, "Bayes theorem", "--channels", "text")
    top = out["hits"][0]
    assert top["rel_path"] == "slides.mp4" and top["channels"] == ["text"]
    assert abs(top["start_sec"] - 4.0) <= 1.0 and abs(top["end_sec"] - 8.0) <= 1.0
    assert top["evidence"][0]["source"] == "ocr"


def test_channels_restrict_and_not_found_stays_meaningful(index):
    frames_only = _search(index, "exhibit twelve", "--channels", "frames")
    assert all(h["channels"] == ["frames"] for h in frames_only["hits"])
    assert set(frames_only["channels_found"]) == {"frames"}
    nothing = _search(index, "glacier permit testimony", "--channels", "speech,text")
    assert nothing["hits"] == [] and nothing["found"] is False
    r = CliRunner().invoke(app, ["search", "x", "--index", str(index), "--channels", "smell"])
    assert r.exit_code != 0 and "channels" in r.output and "Traceback" not in r.output


def test_a_new_caption_file_reindexes_only_its_video(index, archive):
    (archive / "silent.srt").write_text("1\n00:00:00,500 --> 00:00:02,000\nThe hydrangea blooms.\n")
    try:
        r = CliRunner().invoke(app, ["index", str(archive), "--index", str(index), "--model", "demo", "--ocr",
                                     "--json"])
        assert r.exit_code == 0, r.output
        run = json.loads(r.stdout)["run"]
        assert (run["n_changed"], run["n_unchanged"]) == (1, 4), run
        top = _search(index, "hydrangea", "--channels", "speech")["hits"][0]
        assert top["rel_path"] == "silent.mp4"
    finally:
        (archive / "silent.srt").unlink()
