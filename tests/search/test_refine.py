"""Coarse to fine (search/refine.py): a hit's edges re-grounded from the video at 4 fps."""

from __future__ import annotations

import numpy as np
import pytest

from groundzero.data.spans import temporal_iou
from groundzero.indexer.decode import DecodeConfig, decode_frames
from groundzero.model.backbone import Backbone
from groundzero.search.refine import Refiner, refine_edges
from groundzero.search.results import Hit
from tests.media import make_color_segments


def test_edges_move_to_the_half_way_crossing():
    ts = np.arange(0, 20, 0.25)
    sim = np.where((ts >= 6.5) & (ts < 12.75), 0.3, 0.05) + np.random.default_rng(0).normal(0, 0.005, len(ts))
    assert refine_edges(ts, sim, 6.0, 13.0, 4.0, smooth_frames=1) == (6.5, 12.75)
    # nothing stands out inside the coarse span: the span stays as it was
    assert refine_edges(ts, np.full(len(ts), 0.2), 6.0, 13.0, 4.0) == (6.0, 13.0)
    # no padding frames to compare with: unchanged
    inside = (ts >= 6) & (ts < 13)
    assert refine_edges(ts[inside], sim[inside], 6.0, 13.0, 4.0) == (6.0, 13.0)


def test_a_coarse_one_fps_span_gets_sub_second_edges(tiny_model_dir, tmp_path):
    """Red on [10.25, 20.75) s between blue: at 1 fps the span is known to a second, at 4 fps to 0.25 s."""
    video = make_color_segments(tmp_path / "v.mp4", [("blue", 10.25), ("red", 10.5), ("blue", 9.25)], fps=20)
    backbone = Backbone(str(tiny_model_dir), device="cpu")
    coarse, fine = _coarse_to_fine(backbone, DecodeConfig(fps=1, size=backbone.image_size),
                                   DecodeConfig(fps=4.0, size=backbone.image_size), video)
    truth = np.array([[10.25, 20.75]])
    assert abs(fine.start_sec - 10.25) <= 0.25 and abs(fine.end_sec - 20.75) <= 0.25, fine
    iou = lambda h: float(temporal_iou(np.array([[h.start_sec, h.end_sec]]), truth)[0, 0])
    assert iou(fine) > iou(coarse)
    assert fine.score == coarse.score and fine.found_prob == coarse.found_prob


def _coarse_to_fine(backbone, decode_1fps, decode_4fps, video, uri=None, picture=None):
    """Red on [10.25, 20.75) s: the coarse 1 fps span [10, 21) re-grounded at 4 fps."""
    red = decode_frames(video, decode_1fps)[15:16]
    q = backbone.embed_images(red)[0]  # a query that matches the red frames
    coarse = Hit(video_id="v", uri=uri or str(video), rel_path="v.mp4", start_sec=10.0, end_sec=21.0, score=1.0,
                 found_prob=0.9)
    fine = Refiner(backbone, decode_4fps, pad_sec=2.0, smooth_frames=1).refine(coarse, q, 30.0, picture)
    return coarse, fine


def test_naflex_frames_refine_too(tmp_path):
    """A NaFlex model's fine frames keep the video's aspect ratio, sized from the catalog's picture."""
    from groundzero.model.tiny import TinySiglipConfig, build_tiny_siglip

    model_dir = build_tiny_siglip(tmp_path / "naflex", TinySiglipConfig(naflex_patches=24))
    video = make_color_segments(tmp_path / "v.mp4", [("blue", 10.25), ("red", 10.5), ("blue", 9.25)], fps=20,
                                size=(320, 180))
    backbone = Backbone(str(model_dir), device="cpu")
    at = lambda fps: DecodeConfig.for_model(model_dir, backbone.identity, fps, max_patches=24)
    for picture in [(180, 320), None]:  # None: probed
        _, fine = _coarse_to_fine(backbone, at(1.0), at(4.0), video, picture=picture)
        assert abs(fine.start_sec - 10.25) <= 0.25 and abs(fine.end_sec - 20.75) <= 0.25, fine


def test_an_unreadable_video_keeps_its_coarse_span(tiny_model_dir, tmp_path):
    backbone = Backbone(str(tiny_model_dir), device="cpu")
    hit = Hit(video_id="v", uri=str(tmp_path / "gone.mp4"), rel_path="gone.mp4", start_sec=3.0, end_sec=8.0,
              score=1.0, found_prob=0.5)
    refiner = Refiner(backbone, DecodeConfig(fps=4.0, size=backbone.image_size))
    assert refiner.refine(hit, np.zeros(backbone.embed_dim, np.float32), 20.0) == hit


@pytest.mark.parametrize("bad", [{"refine_fps": 0}, {"refine_hits": -1}, {"refine_pad_sec": -1.0}])
def test_refine_settings_are_validated(bad):
    from groundzero.errors import ConfigError
    from groundzero.search.config import SearchConfig

    with pytest.raises(ConfigError, match="refine"):
        SearchConfig(**bad).validate()
