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


def test_one_pass_gives_the_sentence_and_its_words(backbone, tiny_model_dir):
    """encode_query: embed_texts's features and encode_text_tokens's states from one text-tower pass,
    the same numbers; a NumPy-text backbone gives its own sentence features and torch's words."""
    texts = ["a red circle moving left", "the witness"]
    q, states, mask = backbone.encode_query(texts)
    np.testing.assert_allclose(q, backbone.embed_texts(texts), atol=1e-6)
    want_states, want_mask = backbone.encode_text_tokens(texts)
    np.testing.assert_allclose(states, want_states, atol=1e-6)
    np.testing.assert_array_equal(mask, want_mask)
    np_text = Backbone(str(tiny_model_dir), device="cpu", numpy_text=True)
    q2, states2, _ = np_text.encode_query(texts)
    np.testing.assert_allclose(q2, q, atol=1e-5)
    np.testing.assert_allclose(states2, states, atol=1e-6)


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
    with pytest.raises(ModelNotFoundError, match="not in the Hugging Face cache.*--model DIR"):
        read_identity("google/siglip2-so400m-patch14-384-not-cached")


def test_other_architectures_are_refused(tmp_path, tiny_model_dir):
    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    cfg["model_type"] = "clip"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedModelError, match="'clip' checkpoint.*SigLIP"):
        read_identity(str(tmp_path))


def test_fingerprint_changes_with_the_weights(tmp_path, tiny_model_dir):
    from groundzero.model.tiny import TinySiglipConfig, build_tiny_siglip

    other = build_tiny_siglip(tmp_path / "other", TinySiglipConfig(seed=1))
    assert fingerprint_weights(other) != fingerprint_weights(tiny_model_dir)


def test_bundled_model_loads():
    b = Backbone("demo", device="cpu")  # a registered model name (groundzero.plugins)
    assert b.embed_images(np.zeros((2, b.image_size, b.image_size, 3), np.uint8)).shape == (2, b.embed_dim)


def _gemma_tokenized_copy(tiny_model_dir, dest):
    """The tiny model with a Gemma-class tokenizer that pads on the left and does not lowercase."""
    import shutil

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GemmaTokenizerFast

    shutil.copytree(tiny_model_dir, dest)
    for f in dest.glob("*token*"):
        f.unlink()
    words = ["a", "red", "circle", "moving", "left", "the", "witness", "is", "handed", "exhibit"]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # case-sensitive: no Lowercase normalizer
    tok.train_from_iterator([" ".join(words), " ".join(w.upper() for w in words)],
                            trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "</s>", "<bos>"]))
    gemma = GemmaTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="</s>",
                               bos_token="<bos>", padding_side="left", add_bos_token=False, add_eos_token=False)
    gemma.save_pretrained(dest)
    assert GemmaTokenizerFast.from_pretrained(dest).padding_side == "left"
    return dest


def test_text_is_what_the_processor_gives_right_padded_and_lowercased(tiny_model_dir, tmp_path):
    """The checkpoint's own tokenizer called the documented way: lowercased, padding="max_length",
    max_length = the text tower's length, right-padded even when the tokenizer config says left."""
    from transformers import AutoTokenizer

    model_dir = _gemma_tokenized_copy(tiny_model_dir, tmp_path / "gemma")
    b = Backbone(str(model_dir), device="cpu")
    texts = ["A RED circle moving LEFT", "the witness"]
    ids = b.tokenize(texts)["input_ids"].numpy()
    ref = AutoTokenizer.from_pretrained(model_dir)
    ref.padding_side = "right"
    want = ref([t.lower() for t in texts], padding="max_length", max_length=16, truncation=True)["input_ids"]
    assert ids.tolist() == want
    assert ids.shape == (2, b.text_max_len) and (ids[:, 0] != ref.pad_token_id).all()  # real tokens first
    assert ids[1, -1] == ref.pad_token_id
    # the tokenizer itself is case-sensitive; the adapter lower-cases, as the processor is called for SigLIP 2
    assert ref(["A RED"])["input_ids"] != ref(["a red"])["input_ids"]
    assert b.tokenize(["A RED"])["input_ids"].tolist() == b.tokenize(["a red"])["input_ids"].tolist()


def test_match_probability_does_not_depend_on_the_towers_dtype(tiny_model_dir, tmp_path):
    """logit_scale / logit_bias are read in float32, so "not found" is the same in bf16 and fp32."""
    import math
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    model_dir = tmp_path / "so400m-like"
    shutil.copytree(tiny_model_dir, model_dir)
    weights = load_file(str(model_dir / "model.safetensors"))
    weights["logit_scale"] = torch.tensor([math.log(109.95)])  # So400m's learned values
    weights["logit_bias"] = torch.tensor([-16.5])
    save_file(weights, str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    fp32 = Backbone(str(model_dir), device="cpu")
    bf16 = Backbone(str(model_dir), device="cpu", dtype=torch.bfloat16)
    assert next(bf16.model.vision_model.parameters()).dtype == torch.bfloat16
    cos = np.linspace(-0.2, 0.4, 61)
    np.testing.assert_allclose(bf16.match_probability(cos), fp32.match_probability(cos), atol=1e-3)
    # what a bf16 logit_scale would have given: off by more than the tolerance near the threshold
    scale_bf16 = float(torch.tensor(math.log(109.95)).to(torch.bfloat16).float().exp())
    naive = 1 / (1 + np.exp(-(scale_bf16 * cos - 16.5)))
    assert np.abs(naive - fp32.match_probability(cos)).max() > 1e-3
