"""groundzero.indexer.changes: which frames differ from the last kept one, on real ffmpeg video
(slides with a moving inset, pans, grain) and on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from groundzero.errors import ConfigError
from groundzero.indexer.changes import ChangeConfig, ChangeDetector, block_means
from groundzero.indexer.decode import DecodeConfig, iter_frames
from tests import media

pytestmark = pytest.mark.skipif(media.font_file() is None, reason="no TrueType font for drawtext")

#: (lines, seconds): four slides, changes at 0, 8, 15, 24 s (30 s)
SLIDES = [(["Photosynthesis basics", "Chlorophyll absorbs light"], 8),
          (["Mitochondria", "Cellular respiration", "ATP production"], 7),
          (["Enzyme kinetics", "Michaelis Menten model"], 9),
          (["Summary", "Questions welcome"], 6)]
STARTS = [0, 8, 15, 24]


def detect(path, chunk_frames: int = 7, cfg: ChangeConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps, flags) of a video decoded at 1 fps, 224 x 224, fed in chunks."""
    det = ChangeDetector(cfg)
    ts, flags = [], []
    for c in iter_frames(str(path), DecodeConfig(fps=1.0, size=224, chunk_frames=chunk_frames)):
        ts.append(c.timestamps_sec)
        flags.append(det.feed(c.frames, c.timestamps_sec))
    return np.concatenate(ts), np.concatenate(flags)


@pytest.fixture(scope="module")
def lecture(tmp_path_factory):
    return media.make_lecture(tmp_path_factory.mktemp("lec") / "lecture.mp4", SLIDES, size=(640, 360))


def test_slide_changes_are_flagged_and_the_moving_inset_is_not(lecture):
    ts, flags = detect(lecture)
    assert len(ts) == 30
    assert ts[flags].tolist() == STARTS


@pytest.mark.parametrize("chunk_frames", [1, 4, 64])
def test_chunking_does_not_change_the_answer(lecture, chunk_frames):
    assert detect(lecture, chunk_frames)[1].tolist() == detect(lecture, 7)[1].tolist()


def test_inset_alone_over_one_slide_is_one_change(tmp_path):
    video = media.make_lecture(tmp_path / "one.mp4", [(["One slide only", "and a speaker"], 30)], size=(640, 360))
    assert detect(video)[1].nonzero()[0].tolist() == [0]


def test_grain_on_a_still_picture_is_no_change(tmp_path):
    video = media.make_pan(tmp_path / "grain.mp4", 20, 0, noise=30)
    assert detect(video)[1].nonzero()[0].tolist() == [0]


def test_slow_pan_counts_eventually_because_frames_are_compared_with_the_last_kept_one(tmp_path):
    # 1 px/s on 640: a third of a pixel per second at 224, each step below the threshold
    video = media.make_pan(tmp_path / "pan.mp4", 30, 1)
    ts, flags = detect(video)
    assert 3 <= flags.sum() < len(ts) // 2, ts[flags]


def test_a_moving_picture_is_flagged_every_frame_once_its_motion_is_known(tmp_path):
    # testsrc2 moves everywhere but its colour bars; at the second frame, with no history, only
    # a cut (over 30 % of the blocks changed) would count
    video = media.make_testsrc(tmp_path / "motion.mp4", 10, size=(320, 240))
    assert detect(video)[1][2:].all()


# ---------------------------------------------------------------- arrays


def test_first_frame_is_a_change_and_identical_frames_are_not():
    frames = np.full((5, 32, 32, 3), 100, np.uint8)
    det = ChangeDetector(ChangeConfig(downsample=8))
    assert det.feed(frames[:2], np.array([0.0, 1.0])).tolist() == [True, False]
    assert det.feed(frames[2:], np.array([2.0, 3.0, 4.0])).tolist() == [False] * 3


def test_a_new_picture_after_the_second_frame_is_a_change_and_stays_kept():
    frames = np.zeros((6, 32, 32, 3), np.uint8)
    frames[3:, :16] = 255  # the top half turns white at frame 3 and stays
    flags = ChangeDetector(ChangeConfig(downsample=8)).feed(frames, np.arange(6.0))
    assert flags.tolist() == [True, False, False, True, False, False]


def test_timestamps_must_continue():
    det = ChangeDetector()
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    det.feed(frames, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="increase"):
        det.feed(frames, np.array([1.0, 2.0]))


def test_block_means_are_grey_levels_of_blocks():
    frames = np.zeros((1, 4, 6, 3), np.uint8)
    frames[0, :2, :3] = 255  # the top-left block of a 2 x 2 grid is white
    out = block_means(frames, 2)
    assert out.shape == (1, 2, 2)
    np.testing.assert_allclose(out[0], [[255, 0], [0, 0]], atol=0.01)


@pytest.mark.parametrize("field,value", [("threshold", 0), ("downsample", 0), ("min_fraction", 1.5),
                                         ("motion_fraction", -0.1), ("max_moving_fraction", 1.0),
                                         ("motion_memory_sec", -1)])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field) as e:
        ChangeConfig(**{field: value})
    assert e.value.field == field
