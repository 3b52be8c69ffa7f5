"""groundzero.indexer.decode on real ffmpeg: chunked streaming, timestamp alignment, VFR,
rotation, classification of bad files, and cleanup of the ffmpeg process."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess

import numpy as np
import pytest

from groundzero.errors import ConfigError, DecodeError, FFmpegNotFoundError
from groundzero.indexer.decode import DecodeConfig, decoded_duration_ok, iter_frames
from groundzero.indexer.probe import probe
from tests import media

PALETTE = {"red": (255, 0, 0), "blue": (0, 0, 255), "lime": (0, 255, 0), "white": (255, 255, 255)}
SMALL = 32  # frame side used by most tests: colour checks need no more


def decode_all(path, **cfg) -> tuple[np.ndarray, np.ndarray, list]:
    """(timestamps, frames, chunks) of a whole video."""
    chunks = list(iter_frames(str(path), DecodeConfig(**{"size": SMALL, **cfg})))
    ts = np.concatenate([c.timestamps_sec for c in chunks])
    frames = np.concatenate([c.frames for c in chunks])
    return ts, frames, chunks


def colour_of(pixels: np.ndarray) -> str:
    """The palette colour nearest to the mean of ``pixels`` (..., 3); fails when none is close."""
    mean = pixels.reshape(-1, 3).mean(0)
    dist, name = min((float(np.linalg.norm(mean - rgb)), n) for n, rgb in PALETTE.items())
    assert dist < 40, f"mean colour {mean.round()} is none of the palette"
    return name


def colour_at(segments: list[tuple[str, float]], t: float) -> str:
    """The colour on screen at time ``t`` in a make_color_segments video."""
    end = 0.0
    for name, seconds in segments:
        end += seconds
        if t < end:
            return name
    raise ValueError(f"{t} is past the end ({end})")


# ---------------------------------------------------------------- probe


def test_probe_reports_duration_size_codec_and_rate(tmp_path):
    info = probe(str(media.make_color_segments(tmp_path / "v.mp4", [("red", 5), ("blue", 3)])))
    assert info.duration_sec == pytest.approx(8.0, abs=0.05)
    assert (info.width, info.height, info.rotation_deg) == (160, 120, 0)
    assert info.codec == "h264" and info.avg_fps == pytest.approx(10.0)


# ---------------------------------------------------------------- streaming and timestamps


def test_chunks_are_bounded_contiguous_and_timestamped(tmp_path):
    path = media.make_testsrc(tmp_path / "t.mp4", seconds=10)
    _, frames, chunks = decode_all(path, fps=1.0, chunk_frames=3)
    assert [len(c.timestamps_sec) for c in chunks] == [3, 3, 3, 1]
    assert [c.first_frame_idx for c in chunks] == [0, 3, 6, 9]
    for c in chunks:
        assert c.timestamps_sec.dtype == np.float64
        assert c.frames.dtype == np.uint8 and c.frames.shape == (len(c.timestamps_sec), SMALL, SMALL, 3)
        np.testing.assert_array_equal(c.timestamps_sec, c.first_frame_idx + np.arange(len(c.timestamps_sec)))
    # each chunk owns its memory (consumers may keep chunks while the next is decoded)
    assert not np.shares_memory(chunks[0].frames, chunks[1].frames)
    # testsrc2 moves: consecutive samples differ, so these are really different frames
    assert all(np.abs(frames[i].astype(int) - frames[i + 1]).mean() > 1 for i in range(len(frames) - 1))


def test_default_size_frames(tmp_path):
    path = media.make_color_segments(tmp_path / "v.mp4", [("red", 2)])
    (chunk,) = list(iter_frames(str(path), DecodeConfig()))
    assert chunk.frames.shape == (2, 384, 384, 3)


SEGMENTS = [("red", 3), ("blue", 2), ("lime", 3)]  # changes at 3 s and 5 s; 8 s long


@pytest.mark.parametrize("fps", [1.0, 2.0, 0.5])
def test_frame_at_timestamp_t_shows_second_t(tmp_path, fps):
    path = media.make_color_segments(tmp_path / "v.mp4", SEGMENTS)
    ts, frames, _ = decode_all(path, fps=fps, chunk_frames=4)
    assert len(ts) == math.ceil(8 * fps)
    np.testing.assert_allclose(ts, np.arange(len(ts)) / fps)
    assert [colour_of(f) for f in frames] == [colour_at(SEGMENTS, t) for t in ts]


def test_frame_k_shows_the_picture_at_the_middle_of_its_interval(tmp_path):
    """The fps filter (round=near) picks the last source frame before (k + 0.5) / fps.

    Changes at 2.4 s and 4.6 s: at 1 fps frame 2 ([2, 3) s) is already blue, and
    frame 4 ([4, 5) s) still blue (the picture at 4.5 s).
    """
    segs = [("red", 2.4), ("blue", 2.2), ("lime", 3.4)]
    path = media.make_color_segments(tmp_path / "v.mp4", segs)  # 10 fps source
    _, frames, _ = decode_all(path, fps=1.0)
    assert [colour_of(f) for f in frames] == ["red", "red", "blue", "blue", "blue", "lime", "lime", "lime"]
    ts, frames, _ = decode_all(path, fps=2.0)
    half_source_frame = 0.05
    assert [colour_of(f) for f in frames] == [colour_at(segs, t + 0.5 / 2 - half_source_frame) for t in ts]


def test_clip_shorter_than_one_interval_yields_one_frame(tmp_path):
    path = media.make_color_segments(tmp_path / "short.mp4", [("red", 0.3)])
    ts, frames, _ = decode_all(path, fps=1.0)
    assert ts.tolist() == [0.0] and colour_of(frames[0]) == "red"


def _packet_intervals(path) -> set[float]:
    cmd = ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time",
           "-of", "json", str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    pts = sorted(float(p["pts_time"]) for p in json.loads(out)["packets"])
    return {round(b - a, 3) for a, b in itertools.pairwise(pts)}


@pytest.mark.parametrize("fps", [1.0, 2.0])
def test_variable_frame_rate(tmp_path, fps):
    vfr = [("red", 3, 5), ("blue", 3, 25), ("lime", 3, 2)]  # (colour, seconds, source fps)
    path = media.make_vfr_video(tmp_path / "vfr.mp4", vfr)
    assert {0.2, 0.04, 0.5} <= _packet_intervals(path)  # really variable
    info = probe(str(path))
    ts, frames, _ = decode_all(path, fps=fps)
    assert len(ts) == math.ceil(info.duration_sec * fps) and abs(len(ts) - 9 * fps) <= 1
    np.testing.assert_allclose(ts, np.arange(len(ts)) / fps)
    segs = [(c, s) for c, s, _ in vfr]
    assert [colour_of(f) for f in frames] == [colour_at(segs, t) for t in ts]


# ---------------------------------------------------------------- rotation


@pytest.mark.parametrize("rotate, red_side", [(0, "left"), (90, "top"), (180, "right"), (270, "bottom")])
def test_rotated_video_comes_out_upright(tmp_path, rotate, red_side):
    """Left half red, right half blue, rotated clockwise by display metadata only."""
    path = media.make_half_split(tmp_path / "r.mp4", "red", "blue", rotate=rotate)
    info = probe(str(path))
    assert info.rotation_deg == rotate
    assert (info.width, info.height) == ((120, 160) if rotate in (90, 270) else (160, 120))
    _, frames, _ = decode_all(path, fps=1.0, size=64)
    f = frames[0]
    q = 16  # compare outer quarters, away from the blurred boundary
    sides = {"left": f[:, :q], "right": f[:, -q:], "top": f[:q], "bottom": f[-q:]}
    opposite = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}[red_side]
    assert colour_of(sides[red_side]) == "red" and colour_of(sides[opposite]) == "blue"


# ---------------------------------------------------------------- bad files


def _dangling(p):
    os.symlink(p.parent / "missing.mp4", p)
    return p


def _directory(p):
    p.mkdir()
    return p


BAD = [
    ("empty_file", lambda p: media.make_zero_byte(p / "empty.mp4")),
    ("unreadable", lambda p: _dangling(p / "gone.mp4")),
    ("unreadable", lambda p: _directory(p / "folder.mp4")),
    ("not_video", lambda p: media.make_text_file(p / "notes.txt")),
    ("not_video", lambda p: media.make_random_bytes(p / "noise.bin")),
    ("not_video", lambda p: media.make_random_bytes(p / "noise.mp4")),  # not "truncated": no mp4 header
    ("no_video_stream", lambda p: media.make_audio_only(p / "audio.m4a", 2)),
    ("truncated", lambda p: media.make_truncated(p / "cut.mp4", faststart=False)),
]


@pytest.mark.parametrize("reason, make", BAD, ids=[f"{r}-{i}" for i, (r, _) in enumerate(BAD)])
def test_bad_files_are_classified(tmp_path, reason, make):
    path = make(tmp_path)
    with pytest.raises(DecodeError) as e:
        probe(str(path))
    assert e.value.reason == reason and path.name in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DecodeError) as e:  # iter_frames probes itself when not given info
        next(iter_frames(str(path), DecodeConfig(size=SMALL)))
    assert e.value.reason == reason


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_permission_denied_is_unreadable(tmp_path):
    path = media.make_color_segments(tmp_path / "locked.mp4", [("red", 1)])
    path.chmod(0)
    with pytest.raises(DecodeError) as e:
        probe(str(path))
    assert e.value.reason == "unreadable" and "permission" in str(e.value)


def test_truncated_with_faststart_raises_after_the_frames_it_could_decode(tmp_path):
    path = media.make_truncated(tmp_path / "cut.mp4", faststart=True, seconds=10)
    info = probe(str(path))  # the index is intact: the full duration is announced
    assert info.duration_sec == pytest.approx(10, abs=0.1)
    got = []
    with pytest.raises(DecodeError) as e:
        for chunk in iter_frames(str(path), DecodeConfig(size=SMALL, chunk_frames=2), info):
            got.append(chunk)
    assert e.value.reason == "truncated" and "cut.mp4" in str(e.value)
    assert 0 < sum(len(c.timestamps_sec) for c in got) < 9


def _fake_ffmpeg(tmp_path, script: str) -> str:
    """A PATH on which ``ffmpeg`` is a shell ``script`` (and everything else is as before)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ffmpeg").write_text("#!/bin/sh\n" + script)
    (bin_dir / "ffmpeg").chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


@pytest.mark.parametrize("script, in_message", [
    # ffmpeg dies mid-stream with an error
    (f"head -c {2 * SMALL * SMALL * 3} /dev/zero\necho 'boom: simulated failure' >&2\nexit 1\n", "boom"),
    # ffmpeg stops in the middle of a frame
    (f"head -c {SMALL * SMALL * 3 + 5} /dev/zero\nexit 0\n", "no error message"),
])
def test_ffmpeg_failing_mid_stream_is_decode_failed(tmp_path, monkeypatch, script, in_message):
    path = media.make_color_segments(tmp_path / "v.mp4", [("red", 2)])
    monkeypatch.setenv("PATH", _fake_ffmpeg(tmp_path, script))
    got = []
    with pytest.raises(DecodeError) as e:
        for chunk in iter_frames(str(path), DecodeConfig(size=SMALL, chunk_frames=1)):
            got.append(chunk)
    assert e.value.reason == "decode_failed" and "v.mp4" in str(e.value) and in_message in str(e.value)
    assert len(got) in (1, 2)


def test_missing_ffmpeg(tmp_path, monkeypatch):
    path = media.make_color_segments(tmp_path / "v.mp4", [("red", 1)])
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(FFmpegNotFoundError, match="apt-get install ffmpeg"):
        probe(str(path))
    with pytest.raises(FFmpegNotFoundError):
        next(iter_frames(str(path), DecodeConfig()))


# ---------------------------------------------------------------- process cleanup


def test_closing_the_generator_early_ends_ffmpeg(tmp_path, monkeypatch):
    started: list[subprocess.Popen] = []

    class Recording(subprocess.Popen):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            started.append(self)

    path = media.make_testsrc(tmp_path / "long.mp4", seconds=60)
    monkeypatch.setattr(subprocess, "Popen", Recording)  # ffmpeg-python calls subprocess.Popen
    gen = iter_frames(str(path), DecodeConfig(fps=10, size=64, chunk_frames=1))
    first = next(gen)
    assert first.first_frame_idx == 0
    (proc,) = [p for p in started if os.path.basename(p.args[0]) == "ffmpeg"]
    assert proc.poll() is None  # ~7 MB of frames left: ffmpeg is blocked on the full pipe
    gen.close()
    assert proc.returncode is not None  # killed and reaped
    assert not os.path.exists(f"/proc/{proc.pid}")  # no zombie left behind


# ---------------------------------------------------------------- config and helpers


@pytest.mark.parametrize("kw", [{"fps": 0}, {"fps": -1}, {"fps": 31}, {"size": 0}, {"chunk_frames": 0},
                                {"threads": -1}, {"min_coverage": 0}, {"min_coverage": 1.5}])
def test_config_is_validated(kw):
    with pytest.raises(ConfigError):
        DecodeConfig(**kw)


def test_decoded_duration_ok():
    assert decoded_duration_ok(9, 1.0, 8.3, 0.9)  # ceil(8.3) frames: complete
    assert decoded_duration_ok(17, 2.0, 8.5, 0.9)
    assert not decoded_duration_ok(5, 1.0, 10.0, 0.9)
    assert decoded_duration_ok(0, 1.0, math.nan, 0.9)  # unknown duration: nothing to compare
