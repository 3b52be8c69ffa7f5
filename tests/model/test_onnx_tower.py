"""The int8 image tower (ONNX Runtime, dynamic quantisation): embeddings that agree with float32,
built once per checkpoint into the cache, and refused where it cannot run."""

from __future__ import annotations

import numpy as np
import pytest

from groundzero.errors import ConfigError
from groundzero.model.backbone import Backbone
from groundzero.model.onnx_tower import int8_path
from tests import media


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GROUNDZERO_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_int8_embeddings_agree_with_fp32_on_decoded_frames(tmp_path, cache):
    """The demo model on decoded video (ffmpeg's testsrc pattern and solid colours)."""
    from groundzero.indexer.decode import DecodeConfig, decode_frames
    from groundzero.model.identity import image_resample

    fp32 = Backbone("demo", device="cpu")
    int8 = Backbone("demo", device="cpu", int8_images=True, threads=2)
    assert int8._model is None  # the image tower is ONNX Runtime's: no torch model loaded for it
    cfg = DecodeConfig(fps=2, size=fp32.image_size, resample=image_resample(fp32.model_dir))
    frames = np.concatenate([
        decode_frames(media.make_testsrc(tmp_path / "testsrc.mp4", 6), cfg),
        decode_frames(media.make_color_segments(tmp_path / "colours.mp4", [("red", 2), ("blue", 2)]), cfg),
    ])
    a, b = fp32.embed_images(frames), int8.embed_images(frames)
    assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
    cos = (a * b).sum(1)
    assert cos.min() >= 0.999, cos
    assert not np.allclose(a, b, atol=1e-5)  # int8 really ran
    # batching does not change a frame's embedding
    np.testing.assert_allclose(int8.embed_images(frames[:3]), b[:3], atol=1e-5)


def test_the_tower_is_built_once_and_kept(tiny_model_dir, cache):
    b = Backbone(str(tiny_model_dir), device="cpu", int8_images=True)
    path = int8_path(b.identity.fingerprint, b.image_size)
    assert path.parent == cache / "onnx" and path.is_file()
    stamp = path.stat().st_mtime_ns
    again = Backbone(str(tiny_model_dir), device="cpu", int8_images=True)
    assert path.stat().st_mtime_ns == stamp and again._model is None
    frames = np.random.default_rng(0).integers(0, 256, (2, b.image_size, b.image_size, 3), dtype=np.uint8)
    np.testing.assert_array_equal(b.embed_images(frames), again.embed_images(frames))
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no build leftovers
    # a damaged cache file is named, with what to do
    path.write_bytes(b"not a model")
    from groundzero.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="delete it"):
        Backbone(str(tiny_model_dir), device="cpu", int8_images=True)


def test_int8_is_refused_for_naflex_and_gpus(tmp_path, tiny_model_dir, cache):
    from groundzero.model.tiny import TinySiglipConfig, build_tiny_siglip

    naflex = build_tiny_siglip(tmp_path / "naflex", TinySiglipConfig(naflex_patches=16))
    with pytest.raises(ConfigError, match="NaFlex"):
        Backbone(str(naflex), device="cpu", int8_images=True)
    with pytest.raises(ConfigError, match="int8 runs on CPUs"):
        Backbone(str(tiny_model_dir), device="cuda", int8_images=True)
