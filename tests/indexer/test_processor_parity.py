"""The frames the indexer feeds the tower are what the checkpoint's own image processor gives.

For each decoded RGB frame (ffmpeg, full resolution), the reference is transformers'
``SiglipImageProcessor`` (resize only) with the checkpoint's interpolation: bilinear for the
fixed-resolution SigLIP 2 checkpoints, bicubic for SigLIP 1. Frames: ffmpeg's ``testsrc2`` and
``smptebars`` and a photo-like image (colour noise with a natural image's 1/f spectrum), at 16:9
and 4:3.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from groundzero.indexer.decode import DecodeConfig, iter_frames
from groundzero.model.identity import image_resample
from tests import media

SIZE = 384


def _clip(tmp_path, source, width, height):
    path = tmp_path / f"{source}.mp4"
    if source == "photo":
        return media.make_photo_like(path, width, height)
    return media.make_lavfi_still(path, source, width, height)


@pytest.mark.parametrize("pil_code, scaler", [(2, "bilinear"), (3, "bicubic")])
@pytest.mark.parametrize("width, height", [(1280, 720), (640, 480)])
@pytest.mark.parametrize("source", ["testsrc2", "smptebars", "photo"])
def test_frames_match_the_image_processor(tmp_path, source, width, height, pil_code, scaler):
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    path = _clip(tmp_path, source, width, height)
    proc = SiglipImageProcessorPil(do_resize=True, size={"height": SIZE, "width": SIZE}, resample=pil_code,
                                   do_rescale=False, do_normalize=False)
    want = np.asarray(proc(media.first_frame_rgb(path, width, height), return_tensors="np")["pixel_values"][0])
    want = want.transpose(1, 2, 0).astype(np.float64)  # (S, S, 3), levels of 255
    (chunk,) = list(iter_frames(str(path), DecodeConfig(fps=1, size=SIZE, resample=scaler)))
    got = chunk.frames[0].astype(np.float64)
    diff = np.abs(got - want)
    assert diff.mean() <= 0.5 and np.percentile(diff, 99) <= 4, (diff.mean(), np.percentile(diff, 99))


@pytest.mark.parametrize("config, scaler", [({"resample": 2}, "bilinear"), ({"resample": 3}, "bicubic"),
                                            ({}, "bicubic"), (None, "bicubic")])
def test_the_interpolation_is_read_from_the_checkpoint(tmp_path, config, scaler):
    if config is not None:
        (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    assert image_resample(tmp_path) == scaler


@pytest.mark.parametrize("width, height", [(1280, 720), (640, 480)])
@pytest.mark.parametrize("source", ["testsrc2", "smptebars", "photo"])
def test_naflex_frames_match_the_image_processor(tmp_path, source, width, height):
    """NaFlex (SigLIP 2 ``*-naflex``, 16 px patches, 256 a frame): the frame keeps its aspect ratio;
    the reference is ``Siglip2ImageProcessorPil``'s patch sequence, laid back out as a picture."""
    from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil

    from groundzero.model.naflex import from_patches

    path = _clip(tmp_path, source, width, height)
    proc = Siglip2ImageProcessorPil(patch_size=16, max_num_patches=256, resample=2, do_rescale=False,
                                    do_normalize=False)
    out = proc(media.first_frame_rgb(path, width, height), return_tensors="np")
    gh, gw = (int(x) for x in out["spatial_shapes"][0])
    want = from_patches(np.asarray(out["pixel_values"])[:1], (gh, gw), 16)[0].astype(np.float64)
    (chunk,) = list(iter_frames(str(path), DecodeConfig(fps=1, resample="bilinear", max_patches=256, patch_size=16)))
    got = chunk.frames[0].astype(np.float64)
    assert got.shape == want.shape == (gh * 16, gw * 16, 3)
    assert abs(gw / gh - width / height) < 0.05 * width / height  # the aspect ratio, to whole patches
    diff = np.abs(got - want)
    assert diff.mean() <= 0.5 and np.percentile(diff, 99) <= 4, (diff.mean(), np.percentile(diff, 99))
