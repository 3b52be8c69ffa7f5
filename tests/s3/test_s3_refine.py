"""Coarse to fine on an S3 video: the window is read through a presigned link, by a seek."""

from __future__ import annotations

import pytest

from groundzero.indexer.decode import DecodeConfig
from groundzero.model.backbone import Backbone
from tests import media
from tests.search.test_refine import _coarse_to_fine

pytestmark = pytest.mark.s3


def test_an_s3_video_is_refined_like_a_local_one(tmp_path, direct, bucket, moto_endpoint, tiny_model_dir,
                                                  monkeypatch):
    video = media.make_color_segments(tmp_path / "v.mp4", [("blue", 10.25), ("red", 10.5), ("blue", 9.25)], fps=20)
    direct.upload_file(str(video), bucket, "talks/v.mp4")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)  # where search finds the archive's S3
    backbone = Backbone(str(tiny_model_dir), device="cpu")
    one, four = DecodeConfig(fps=1.0, size=backbone.image_size), DecodeConfig(fps=4.0, size=backbone.image_size)
    _, local = _coarse_to_fine(backbone, one, four, video)
    coarse, remote = _coarse_to_fine(backbone, one, four, video, uri=f"s3://{bucket}/talks/v.mp4")
    assert (remote.start_sec, remote.end_sec) == (local.start_sec, local.end_sec) != (coarse.start_sec, coarse.end_sec)
    assert abs(remote.start_sec - 10.25) <= 0.25 and abs(remote.end_sec - 20.75) <= 0.25
    # an object that is not there keeps its coarse span
    _, gone = _coarse_to_fine(backbone, one, four, video, uri=f"s3://{bucket}/talks/missing.mp4")
    assert (gone.start_sec, gone.end_sec) == (coarse.start_sec, coarse.end_sec)
