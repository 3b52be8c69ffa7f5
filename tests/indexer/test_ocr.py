"""groundzero.indexer.ocr: on-screen text of a generated lecture (real ffmpeg, real RapidOCR
models shipped in its wheel, offline), reading order, merging, and failures."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from groundzero.data.segments import TextSegment
from groundzero.errors import ConfigError, DecodeError
from groundzero.indexer.changes import ChangeDetector
from groundzero.indexer.decode import DecodeConfig, iter_frames
from groundzero.indexer.ocr import (
    OcrConfig,
    merge_segments,
    reading_order,
    reading_size,
    screen_text,
)
from tests import media

pytest.importorskip("rapidocr")
needs_font = pytest.mark.skipif(media.font_file() is None, reason="no TrueType font for drawtext")

#: three slides, the second twice with only its background colour changed (the detector sees a
#: change, OCR the same text): changes at 0, 7, 13, 20 s, slides at 0, 7, 20 s (26 s)
SLIDES = [(["Photosynthesis basics", "Chlorophyll absorbs light"], 7),
          (["Mitochondria", "Cellular respiration"], 6),
          (["Mitochondria", "Cellular respiration"], 7),
          (["Enzyme kinetics", "Michaelis Menten model"], 6)]


@pytest.fixture(scope="module")
def lecture(tmp_path_factory):
    """The lecture (960x540, moving inset); slide 3 repeats slide 2 on a light-grey page."""
    d = tmp_path_factory.mktemp("ocr")
    parts = [media.make_lecture(d / f"part{i}.mp4", [s], size=(960, 540),
                                background="0xd8d8d8" if i == 2 else "white")
             for i, s in enumerate(SLIDES)]
    out = d / "lecture.mp4"
    listing = d / "parts.txt"
    listing.write_text("".join(f"file '{p}'\n" for p in parts))
    media._ffmpeg("-f", "concat", "-safe", "0", "-i", listing, "-c", "copy", out)
    return out


def change_times(path) -> list[float]:
    det = ChangeDetector()
    times = []
    for c in iter_frames(str(path), DecodeConfig(fps=1.0, size=224)):
        times += c.timestamps_sec[det.feed(c.frames, c.timestamps_sec)].tolist()
    return times


@needs_font
def test_lecture_slides_become_merged_segments_at_the_slide_boundaries(lecture):
    times = change_times(lecture)
    assert times == [0, 7, 13, 20]  # the background change is a change of the picture
    segs = screen_text(str(lecture), times, 26.0, OcrConfig())
    assert [s.source for s in segs] == ["ocr"] * 3
    starts, ends = [0, 7, 20], [7, 20, 26]  # slides 2 and 3 read the same: one segment
    for s, a, b, (lines, _) in zip(segs, starts, ends, [SLIDES[0], SLIDES[1], SLIDES[3]]):
        assert abs(s.start_sec - a) <= 1 and abs(s.end_sec - b) <= 1, s
        for line in lines:
            assert line.lower() in s.text.lower(), (line, s.text)
        assert s.text.lower().index(lines[0].lower()) < s.text.lower().index(lines[1].lower())
        assert 0.5 <= s.confidence <= 1


@needs_font
def test_a_time_without_a_frame_gives_no_segment_and_the_rest_still_reads(lecture, caplog):
    with caplog.at_level(logging.WARNING, logger="groundzero.indexer.ocr"):
        segs = screen_text(str(lecture), [0.0, 500.0], 600.0, OcrConfig())
    assert len(segs) == 1 and segs[0].end_sec == 500.0
    assert "photosynthesis" in segs[0].text.lower()
    assert "500.00" in caplog.text


def test_missing_video_raises_decode_error(tmp_path):
    with pytest.raises(DecodeError, match="does not exist"):
        screen_text(str(tmp_path / "nope.mp4"), [0.0], 10.0, OcrConfig())


def test_no_change_times_no_segments(tmp_path):
    video = media.make_color_segments(tmp_path / "v.mp4", [("white", 2)])
    assert screen_text(str(video), [], 2.0, OcrConfig()) == []


# ---------------------------------------------------------------- pure helpers


def box(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def test_reading_order_rows_top_to_bottom_then_left_to_right_and_low_scores_dropped():
    boxes = np.array([box(300, 12, 400, 42), box(10, 100, 200, 130), box(10, 10, 250, 40),
                      box(10, 200, 90, 230)], float)
    text, conf = reading_order(boxes, ["right", "second", "left", "noise"], [0.9, 0.8, 1.0, 0.2], 0.5)
    assert text == "left right\nsecond"
    assert conf == pytest.approx(0.9)
    assert reading_order(boxes[:1], ["x"], [0.1], 0.5) == ("", 0.0)


def seg(a, b, text, conf=1.0):
    return TextSegment(a, b, text, "ocr", confidence=conf)


def test_merge_joins_consecutive_same_text_and_drops_empty():
    out = merge_segments([seg(0, 4, "Title  one", 1.0), seg(4, 8, "title one", 0.5), seg(8, 9, " "),
                          seg(9, 12, "Title one"), seg(12, 14, "Other")])
    assert [(s.start_sec, s.end_sec, s.text) for s in out] == [(0, 8, "Title  one"), (9, 12, "Title one"),
                                                               (12, 14, "Other")]
    assert out[0].confidence == pytest.approx(0.75)


def test_reading_size_keeps_aspect_and_never_upscales():
    assert reading_size(1920, 1080, 1280) == (1280, 720)
    assert reading_size(1080, 1920, 1280) == (720, 1280)
    assert reading_size(640, 360, 1280) == (640, 360)


@pytest.mark.parametrize("field,value", [("max_side", 8), ("min_confidence", 1.5), ("offset_sec", -1),
                                         ("threads", -2)])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        OcrConfig(**{field: value})
