"""Every hit's span lies inside its video: ``0 <= start < end <= duration`` (when the duration is
known), on both grounding paths, for clips shorter than one sampling interval too.

(Generated clips, indexed and served, are in ``tests/serve/test_short_clips.py``.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from groundzero.model.backbone import Backbone
from groundzero.model.inference import Grounding
from groundzero.search import rerank
from groundzero.search.results import clamp_span
from groundzero.search.searcher import Searcher
from tests.planted import plant_index

QUERY = "a red circle moving left"


@pytest.mark.parametrize("span, duration, step, want", [
    ((0.764, 0.86), 0.4, 1.0, (0.0, 0.4)),  # the bug report: a head's span past a 0.4 s clip
    ((0.0, 1.0), 0.4, 1.0, (0.0, 0.4)),  # a 0.4 s clip's one frame stands for [0, 1) s
    ((7199.0, 7200.0), 7199.5, 1.0, (7199.0, 7199.5)),
    ((7200.0, 7201.0), 7199.5, 1.0, (7198.5, 7199.5)),  # wholly past the end: the last second
    ((3.0, 3.0), 10.0, 1.0, (3.0, 4.0)),  # empty: one interval long
    ((-2.0, 1.0), 10.0, 1.0, (0.0, 1.0)),
    ((2.0, 5.0), 10.0, 1.0, (2.0, 5.0)),  # inside: untouched
    ((0.764, 0.86), 0.0, 1.0, (0.764, 0.86)),  # unknown duration: as given
    ((5.0, 9.0), math.nan, 1.0, (5.0, 9.0)), ((5.0, 9.0), None, 1.0, (5.0, 9.0)),
])
def test_clamp_span(span, duration, step, want):
    assert clamp_span(*span, duration, step) == pytest.approx(want)


finite = st.floats(-1e4, 1e5, allow_nan=False)


@settings(max_examples=1000, deadline=None, database=None, derandomize=True)
@given(finite, finite, st.floats(1e-3, 1e5), st.sampled_from([1.0, 0.5, 2.0, 1 / 30]))
def test_clamped_spans_are_inside_and_not_empty(start, end, duration, step):
    s, e = clamp_span(start, end, duration, step)
    assert 0.0 <= s < e <= duration
    if 0 <= start < end <= duration:
        assert (s, e) == (start, end)


def test_head_spans_past_the_end_are_moved_inside(monkeypatch):
    """The head path (``search.rerank``): whatever spans the head predicts, the hits are inside."""
    spans = np.array([[0.764, 0.86], [0.1, 0.3], [0.2, 5.0], [-1.0, 0.2]])

    def fake_ground_many(model, videos, *args, **kwargs):
        return [Grounding(spans, np.linspace(1, 0, len(spans)), np.zeros(1, np.int64), np.ones(1), 0.9)
                for _ in videos]

    monkeypatch.setattr(rerank, "ground_many", fake_ground_many)
    row = {"video_id": "v", "uri": "/v.mp4", "rel_path": "v.mp4", "duration_sec": 0.4}
    emb, windows = np.zeros((1, 4), np.float32), np.array([[0, 1]])
    (hits, _), = rerank.rerank_and_ground(None, np.zeros((2, 4)), np.ones(2, bool), 1.0, [(row, emb, windows)],
                                          top_windows=5, nms_iou=0.5)
    got = np.array([(h.start_sec, h.end_sec) for h in hits])
    np.testing.assert_allclose(got, [(0.0, 0.4), (0.1, 0.3), (0.2, 0.4), (0.0, 0.2)])
    unknown = {**row, "duration_sec": 0.0}  # unknown duration: the spans as the head gave them
    (hits, _), = rerank.rerank_and_ground(None, np.zeros((2, 4)), np.ones(2, bool), 1.0, [(unknown, emb, windows)],
                                          top_windows=5, nms_iou=0.5)
    np.testing.assert_allclose([(h.start_sec, h.end_sec) for h in hits], spans)


@pytest.fixture(scope="module")
def planted(tmp_path_factory, tiny_model_dir):
    q = Backbone(str(tiny_model_dir), device="cpu").embed_texts([QUERY])[0]
    index_dir = tmp_path_factory.mktemp("spans") / "index"
    plant_index(index_dir, tiny_model_dir, q, durations=[3, 60, 1], target_video=1, target_start=55, target_end=60)
    return index_dir


@pytest.mark.parametrize("durations", [
    {"video_00.mp4": 0.4, "video_02.mp4": 0.4},  # shorter than the frames the rows hold: every span is cut
    {"video_01.mp4": 59.5},  # the target runs to the last frame, whose interval ends past the duration
    {"video_00.mp4": 0.0},  # unknown
])
def test_zero_shot_hits_lie_inside_their_videos(planted, durations):
    s = Searcher(planted, device="cpu")
    for row in s.videos.values():  # the catalog row's duration is what bounds a hit
        row["duration_sec"] = durations.get(row["rel_path"], row["duration_sec"])
    for query in (QUERY, "anything else at all", "a blue square"):
        hits = s.search(query, top_k=20).hits
        assert hits
        for h in hits:
            d = durations.get(h.rel_path, {"video_00.mp4": 3, "video_01.mp4": 60, "video_02.mp4": 1}[h.rel_path])
            if d > 0:
                assert 0 <= h.start_sec < h.end_sec <= d, (h, d)
            else:
                assert h.start_sec < h.end_sec
    top = s.search(QUERY).hits[0]
    assert top.rel_path == "video_01.mp4" and top.end_sec == durations.get("video_01.mp4", 60)
