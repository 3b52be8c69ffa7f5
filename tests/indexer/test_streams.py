"""Files with several video streams: the largest picture is indexed, and the catalog notes the others."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from groundzero.indexer.decode import DecodeConfig, decode_frames
from groundzero.indexer.probe import choose_stream, probe
from groundzero.indexer.rows import decode_rows
from tests import media


def two_streams(path: Path, first: str = "testsrc2=size=320x240:rate=5",
                second: str = "testsrc2=size=160x120:rate=5", seconds: float = 3) -> Path:
    """An mkv with two video streams (lavfi sources ``first`` and ``second``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    media._ffmpeg("-f", "lavfi", "-i", first, "-f", "lavfi", "-i", second, "-map", "0", "-map", "1",
                  "-t", seconds, *media.X264, path)
    return path


def with_cover_art(path: Path, tmp: Path) -> Path:
    """A 160x120 mp4 with a larger (640x480) cover picture attached."""
    cover = tmp / "cover.png"
    media._ffmpeg("-f", "lavfi", "-i", "color=red:size=640x480", "-frames:v", "1", cover)
    media._ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=5", "-i", cover, "-map", "0", "-map", "1",
                  "-t", 3, "-c:v:0", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                  "-c:v:1", "png", "-disposition:v:1", "attached_pic", path)
    return path


def test_second_video_stream_is_noted(tmp_path):
    info = probe(str(two_streams(tmp_path / "two.mkv")))
    assert (info.width, info.height, info.stream_index) == (320, 240, 0)
    assert info.note == "2 video streams; indexed stream 0 (320x240 h264), ignored stream 1 (160x120 h264)"


def test_the_largest_stream_is_indexed_even_when_it_is_not_the_first(tmp_path):
    path = two_streams(tmp_path / "two.mkv", first="color=red:size=160x120:rate=5",
                       second="color=blue:size=320x240:rate=5")
    info = probe(str(path))
    assert (info.width, info.height, info.stream_index) == (320, 240, 1)
    assert info.note == "2 video streams; indexed stream 1 (320x240 h264), ignored stream 0 (160x120 h264)"
    frames = decode_frames(path, DecodeConfig(fps=1, size=16)).astype(int)
    assert len(frames) == 3
    r, g, b = frames.reshape(-1, 3).mean(axis=0)
    assert b > 200 and r < 50, (r, g, b)  # the blue stream was decoded, not the red one


def test_equal_streams_keep_the_first():
    a = {"index": 0, "codec_name": "h264", "width": 640, "height": 360}
    b = {"index": 1, "codec_name": "hevc", "width": 360, "height": 640}
    chosen, note = choose_stream([a, b])
    assert chosen is a and note.startswith("2 video streams; indexed stream 0 (640x360 h264)")
    sizeless = {"index": 0, "codec_name": "h264"}
    assert choose_stream([sizeless, b])[0] is b  # a stream without a picture size is never preferred
    rotated = {**a, "index": 2, "width": 300, "height": 200, "tags": {"rotate": "90"}}
    assert choose_stream([rotated])[1] == ""
    assert "ignored stream 2 (200x300 h264)" in choose_stream([a, rotated])[1]  # sizes as displayed


def test_single_stream_and_cover_art_have_no_note(tmp_path):
    info = probe(str(media.make_testsrc(tmp_path / "one.mp4", 2)))
    assert info.note == "" and info.stream_index == 0
    info = probe(str(with_cover_art(tmp_path / "cover.mp4", tmp_path)))
    assert info.note == "" and (info.width, info.height, info.stream_index) == (160, 120, 0)


def _end_meta(path: Path) -> dict:
    rows = list(decode_rows({"video_id": np.array(["v"], dtype=object), "path": np.array([str(path)], dtype=object)},
                            DecodeConfig(fps=1, size=8)))
    return json.loads(rows[-1]["end_meta"][0])


def test_decode_rows_carry_the_note(tmp_path):
    meta = _end_meta(two_streams(tmp_path / "two.mkv"))
    assert meta["ok"] and meta["n_frames"] == 3 and "ignored stream 1 (160x120 h264)" in meta["note"]
    meta = _end_meta(media.make_testsrc(tmp_path / "one.mp4", 2))
    assert meta["ok"] and "note" not in meta


@pytest.mark.slow
@pytest.mark.e2e
def test_index_run_records_the_note_in_the_catalog(tmp_path, tiny_model_dir, ray_session):
    from groundzero.cli.main import app
    from groundzero.store.queries import open_catalog, run_sql

    archive = tmp_path / "archive"
    two_streams(archive / "two.mkv")
    media.make_testsrc(archive / "one.mp4", 3)
    index = tmp_path / "index"
    r = CliRunner().invoke(app, ["index", str(archive), "--index", str(index), "--model", str(tiny_model_dir),
                                 "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    con = open_catalog(index).con
    rows = dict(run_sql(con, "SELECT rel_path, note FROM videos WHERE status = 'indexed'").rows)
    assert rows == {"two.mkv": "2 video streams; indexed stream 0 (320x240 h264), ignored stream 1 (160x120 h264)",
                    "one.mp4": None}
    sql = "SELECT rel_path, width, height, n_frames FROM videos WHERE note LIKE '%ignored stream 1%'"
    r = CliRunner().invoke(app, ["catalog", "sql", sql, "--index", str(index), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout) == [
        {"rel_path": "two.mkv", "width": 320, "height": 240, "n_frames": 3}], r.output


def test_each_stage_reports_how_busy_it_was(tmp_path, tiny_model_dir):
    """Decode tasks report their wall and CPU seconds (ffmpeg's included) on the end row; embed calls
    share theirs out over their rows; the assembler sums both per video."""
    from groundzero.indexer.embed import EmbedFrames
    from groundzero.indexer.rows import VideoAssembler

    video = media.make_testsrc(tmp_path / "v.mp4", 6, size=(640, 360))
    rows = list(decode_rows({"video_id": np.array(["v"], dtype=object), "path": np.array([str(video)], dtype=object)},
                            DecodeConfig(fps=1.0, size=32)))
    end = json.loads(rows[-1]["end_meta"][0])
    assert end["ok"] and end["decode_s"] > 0 and end["decode_cpu_s"] > 0.01  # ffmpeg decoded 6 s of 640x360
    batch = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    out = EmbedFrames(str(tiny_model_dir), device="cpu")(batch)
    assert out["embed_s"].shape == (len(out["video_id"]),) and out["embed_s"].min() > 0
    (v,) = VideoAssembler().add(out)
    assert v.meta["decode_cpu_s"] == end["decode_cpu_s"]
    assert abs(v.meta["embed_s"] - out["embed_s"].sum()) < 1e-9 and v.meta["embed_cpu_s"] >= 0
