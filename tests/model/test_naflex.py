"""SigLIP 2 NaFlex checkpoints: sizes, patch sequences and features as transformers' own
processor and model give them, on a tiny random Siglip2Model saved and loaded through the real path."""

from __future__ import annotations

import numpy as np
import pytest

from groundzero.data.proposals import ProposalConfig
from groundzero.errors import ConfigError
from groundzero.indexer.decode import DecodeConfig
from groundzero.model.backbone import Backbone
from groundzero.model.identity import default_max_patches, image_resample, read_identity
from groundzero.model.naflex import from_patches, naflex_size, to_patches
from groundzero.store.manifest import IndexParams

PATCHES = 24  #: the tiny checkpoint's max_num_patches


@pytest.fixture(scope="module")
def naflex_dir(tmp_path_factory):
    from groundzero.model.tiny import TinySiglipConfig, build_tiny_siglip

    return build_tiny_siglip(tmp_path_factory.mktemp("models") / "tiny-naflex", TinySiglipConfig(naflex_patches=PATCHES))


def test_sizes_are_the_processors():
    from transformers.models.siglip2.image_processing_pil_siglip2 import (
        get_image_size_for_max_num_patches,
    )

    rng = np.random.default_rng(0)
    for _ in range(400):
        h, w = (int(x) for x in rng.integers(1, 4000, 2))
        p, m = int(rng.choice([8, 14, 16])), int(rng.choice([16, 64, 256, 576, 1024]))
        assert naflex_size(h, w, p, m) == get_image_size_for_max_num_patches(h, w, p, m), (h, w, p, m)
    # the aspect ratio is kept as closely as whole patches allow
    assert naflex_size(720, 1280, 16, 256) == (192, 336) and naflex_size(480, 640, 16, 256) == (224, 288)
    with pytest.raises(ValueError):
        naflex_size(0, 640, 16, 256)


def test_patch_layout_is_the_processors():
    from transformers.models.siglip2.image_processing_pil_siglip2 import convert_image_to_patches

    frames = np.random.default_rng(1).integers(0, 256, (2, 24, 40, 3), dtype=np.uint8)
    patches, spatial = to_patches(frames, 8, length=20)
    assert patches.shape == (2, 20, 192) and spatial.tolist() == [[3, 5], [3, 5]]
    for i in range(2):
        np.testing.assert_array_equal(patches[i, :15], convert_image_to_patches(frames[i].transpose(2, 0, 1), 8))
    assert not patches[:, 15:].any()  # padding
    np.testing.assert_array_equal(from_patches(patches, (3, 5), 8), frames)
    with pytest.raises(ValueError, match="multiples"):
        to_patches(frames[:, :20], 8)


def test_identity_and_defaults(naflex_dir):
    _, ident = read_identity(str(naflex_dir))
    assert ident.naflex and ident.patch_size == 8 and ident.image_size == 0
    assert type(ident).from_dict(ident.to_dict()).patch_size == 8
    assert default_max_patches(naflex_dir) == PATCHES and image_resample(naflex_dir) == "bilinear"
    dcfg = DecodeConfig.for_model(naflex_dir, ident, fps=1.0, max_patches=PATCHES)
    assert dcfg.frame_hw(720, 1280) == naflex_size(720, 1280, 8, PATCHES) and dcfg.resample == "bilinear"
    params = IndexParams(fps=1.0, frame_size=0, proposals=ProposalConfig(), max_patches=PATCHES)
    assert IndexParams.from_dict(params.to_dict()) == params
    assert "max_patches" not in IndexParams(fps=1.0, frame_size=32, proposals=ProposalConfig()).to_dict()


def _hf_features(model_dir, images: list[np.ndarray]) -> np.ndarray:
    """transformers' own path: the checkpoint's processor (PIL) and Siglip2Model."""
    import torch
    from transformers import AutoModel
    from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil

    proc = Siglip2ImageProcessorPil.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        out = model.get_image_features(**proc(images, return_tensors="pt"))
    feats = out if isinstance(out, torch.Tensor) else out.pooler_output
    return torch.nn.functional.normalize(feats, dim=-1).numpy()


def test_features_equal_transformers_own(naflex_dir):
    """Frames of two aspect ratios, at their NaFlex sizes (the processor's resize is then the
    identity): our patches, mask and normalisation give transformers' features, whose processor
    pads every sequence to max_num_patches; sequences of both sizes batched together agree too."""
    b = Backbone(str(naflex_dir), device="cpu")
    rng = np.random.default_rng(2)
    wide = rng.integers(0, 256, (3, *naflex_size(720, 1280, 8, PATCHES), 3), dtype=np.uint8)
    tall = rng.integers(0, 256, (2, *naflex_size(640, 480, 8, PATCHES), 3), dtype=np.uint8)
    assert wide.shape[1] < wide.shape[2] and tall.shape[1] > tall.shape[2]
    ours = np.concatenate([b.embed_images(wide), b.embed_images(tall)])
    theirs = _hf_features(naflex_dir, list(wide) + list(tall))
    np.testing.assert_allclose(ours, theirs, atol=2e-5)
    pw, sw = to_patches(wide, 8, PATCHES)
    pt, st = to_patches(tall, 8, PATCHES)
    mixed = b.embed_patches(np.concatenate([pw, pt]), np.concatenate([sw, st]))  # the embed stage's rows
    np.testing.assert_allclose(mixed, theirs, atol=2e-5)
    with pytest.raises(ConfigError, match="multiples of 8"):
        b.embed_images(wide[:, :7])


def test_bf16_features_and_match_probability(naflex_dir):
    import torch

    fp32 = Backbone(str(naflex_dir), device="cpu")
    bf16 = Backbone(str(naflex_dir), device="cpu", dtype=torch.bfloat16)
    frames = np.random.default_rng(3).integers(0, 256, (4, 24, 40, 3), dtype=np.uint8)
    cos = (fp32.embed_images(frames) * bf16.embed_images(frames)).sum(-1)
    assert cos.min() >= 0.99, cos
    assert fp32.logit_scale_bias == bf16.logit_scale_bias


def test_text_tower_in_numpy_equals_torch(naflex_dir):
    torch_b = Backbone(str(naflex_dir), device="cpu")
    np_b = Backbone(str(naflex_dir), device="cpu", numpy_text=True)
    assert np_b._np_text is not None  # the NumPy tower ran, not a fallback
    texts = ["a red circle", "the witness is handed exhibit twelve"]
    np.testing.assert_allclose(np_b.embed_texts(texts), torch_b.embed_texts(texts), atol=1e-5)


def test_lora_refuses_naflex(naflex_dir, tmp_path):
    from groundzero.errors import UnsupportedModelError
    from groundzero.training.lora_data import lora_frames_loader

    b = Backbone(str(naflex_dir), device="cpu")
    with pytest.raises(UnsupportedModelError, match="NaFlex"):
        lora_frames_loader(str(tmp_path))(b, {"v"}, 1.0)
