import json

import numpy as np
import pytest

from groundzero.errors import ConfigError, ModelNotFoundError, UnsupportedModelError
from groundzero.model.backbone import Backbone
from groundzero.model.identity import fingerprint_weights, read_identity


@pytest.fixture(scope="module")
def backbone(tiny_model_dir):
    return Backbone(str(tiny_model_dir), device="cpu")


def test_loads_through_from_pretrained_and_reports_identity(backbone, tiny_model_dir):
    ident = backbone.identity
    assert ident.embed_dim == 32 and ident.image_size == 32 and ident.text_max_len == 16
    assert ident.name == str(tiny_model_dir.resolve())
    assert ident.fingerprint == fingerprint_weights(tiny_model_dir)


def test_image_features_are_normalised_and_batch_invariant(backbone):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    batched = backbone.embed_images(frames)
    assert batched.shape == (5, 32) and batched.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    one_by_one = np.concatenate([backbone.embed_images(frames[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert not np.allclose(batched[0], batched[1])


def test_text_features_and_tokens(backbone):
    t = backbone.embed_texts(["A red circle moving left", "the witness"])
    assert t.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    # lower-casing happens in the adapter: case does not change the embedding
    np.testing.assert_allclose(backbone.embed_texts(["a RED circle moving LEFT"])[0], t[0], atol=1e-6)
    states, mask = backbone.encode_text_tokens(["a red circle", "witness"])
    assert states.shape == (2, 16, 32) and mask.shape == (2, 16)
    assert mask.sum(1).tolist() == [3, 1]


def test_text_tokens_are_the_text_towers_last_hidden_state(backbone):
    import torch

    states, mask = backbone.encode_text_tokens(["a red circle moving left"])
    tok = backbone.tokenize(["a red circle moving left"])
    with torch.no_grad():
        out = backbone.model.text_model(input_ids=tok["input_ids"]).last_hidden_state  # (1, L, 32)
    assert states.dtype == np.float32 and mask.dtype == bool
    np.testing.assert_allclose(states, out.float().numpy(), atol=1e-6)
    assert mask.sum() == 5


def test_wrong_frame_shape_is_a_clear_error(backbone):
    with pytest.raises(ConfigError, match=r"\(N, 32, 32, 3\)"):
        backbone.embed_images(np.zeros((1, 64, 64, 3), np.uint8))


def test_missing_model_directory(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        read_identity(str(tmp_path / "no-such-model"))
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        read_identity(str(tmp_path))


def test_hub_id_without_network_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="copy the checkpoint directory"):
        read_identity("google/siglip2-so400m-patch14-384-not-cached")


def test_other_architectures_are_refused(tmp_path, tiny_model_dir):
    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    cfg["model_type"] = "siglip2"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedModelError, match="NaFlex"):
        read_identity(str(tmp_path))


def test_fingerprint_changes_with_the_weights(tmp_path, tiny_model_dir):
    from groundzero.model.tiny import TinySiglipConfig, build_tiny_siglip

    other = build_tiny_siglip(tmp_path / "other", TinySiglipConfig(seed=1))
    assert fingerprint_weights(other) != fingerprint_weights(tiny_model_dir)


def test_bundled_model_loads():
    b = Backbone("demo", device="cpu")  # a registered model name (groundzero.plugins)
    assert b.embed_images(np.zeros((2, b.image_size, b.image_size, 3), np.uint8)).shape == (2, b.embed_dim)
