"""The one-shot query path: SigLIP's text tower in NumPy (model.numpy_text) gives what the torch model
gives, tokenises as transformers does, reads config.json as transformers does, and imports neither
torch nor transformers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from groundzero.model.backbone import Backbone
from groundzero.model.identity import TEXT_CONFIG_DEFAULTS, read_identity, read_model_config
from groundzero.model.numpy_text import FastTokenizer, NumpyTextTower

TEXTS = ["the lecturer derives the chain rule", "A RED circle moving LEFT", "x", "",
         "witness exhibit " * 20, "zzz unknownword ✓ 東京 ... !?", "  the   witness\tis handed\nexhibit  "]


@pytest.fixture(scope="module")
def torch_backbone(tiny_model_dir):
    return Backbone(str(tiny_model_dir), device="cpu")


@pytest.mark.parametrize("model", ["tiny", "demo"])
def test_numpy_text_tower_is_the_torch_one(model, tiny_model_dir):
    name = str(tiny_model_dir) if model == "tiny" else "demo"
    fast, ref = Backbone(name, device="cpu", numpy_text=True), Backbone(name, device="cpu")
    assert fast._np_text is not None and fast._np_tokens is not None
    np.testing.assert_allclose(fast.embed_texts(TEXTS), ref.embed_texts(TEXTS), atol=2e-6)
    assert fast.embed_texts(TEXTS).dtype == np.float32
    assert fast.logit_scale_bias == pytest.approx(ref.logit_scale_bias, rel=1e-6)
    # one text at a time gives what a batch gives
    np.testing.assert_allclose(fast.embed_texts(TEXTS[:1])[0], fast.embed_texts(TEXTS)[0], atol=1e-6)


def test_the_tokenizer_is_transformers_own(tiny_model_dir, torch_backbone):
    tok = FastTokenizer.load(tiny_model_dir, torch_backbone.text_max_len)
    assert tok is not None
    want = torch_backbone.tokenize(TEXTS)["input_ids"].numpy()
    assert tok.ids([t.lower() for t in TEXTS]).tolist() == want.tolist()  # truncated and padded alike


def test_bf16_weights_are_read_as_torch_upcasts_them(tiny_model_dir, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    model_dir = tmp_path / "bf16"
    shutil.copytree(tiny_model_dir, model_dir)
    weights = load_file(str(model_dir / "model.safetensors"))
    save_file({k: v.to(torch.bfloat16) for k, v in weights.items()}, str(model_dir / "model.safetensors"),
              metadata={"format": "pt"})
    fast, ref = Backbone(str(model_dir), device="cpu", numpy_text=True), Backbone(str(model_dir), device="cpu")
    assert fast._np_text is not None
    np.testing.assert_allclose(fast.embed_texts(TEXTS), ref.embed_texts(TEXTS), atol=2e-6)


def test_what_numpy_cannot_run_exactly_is_left_to_torch(tiny_model_dir, tmp_path):
    exact_gelu = tmp_path / "gelu"
    shutil.copytree(tiny_model_dir, exact_gelu)
    cfg = json.loads((exact_gelu / "config.json").read_text())
    cfg["text_config"]["hidden_act"] = "gelu"  # erf GELU: not in NumPy
    (exact_gelu / "config.json").write_text(json.dumps(cfg))
    assert NumpyTextTower.load(exact_gelu) is None
    b = Backbone(str(exact_gelu), device="cpu", numpy_text=True)
    assert b._np_text is None and b._model is not None  # torch, loaded as always
    # a GPU or bf16 keeps torch too
    import torch

    assert Backbone(str(tiny_model_dir), device="cpu", dtype=torch.bfloat16, numpy_text=True)._np_text is None


def test_a_tokenizer_that_transformers_rebuilds_is_left_to_transformers(tiny_model_dir, tmp_path):
    """A Gemma-class tokenizer (SigLIP 2's): transformers rebuilds its post-processor from add_bos/eos, so
    the `tokenizers` shortcut is not taken; the NumPy tower still runs, on transformers' token ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, GemmaTokenizerFast

    dest = tmp_path / "gemma"
    shutil.copytree(tiny_model_dir, dest)
    for f in dest.glob("*token*"):
        f.unlink()
    words = ["a", "red", "circle", "moving", "left", "the", "witness", "is", "handed", "exhibit"]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([" ".join(words)], trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "</s>", "<bos>"]))
    GemmaTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="</s>", bos_token="<bos>",
                       padding_side="left", add_bos_token=True, add_eos_token=True).save_pretrained(dest)
    assert FastTokenizer.load(dest, 16) is None
    fast, ref = Backbone(str(dest), device="cpu", numpy_text=True), Backbone(str(dest), device="cpu")
    assert fast._np_text is not None and fast._np_tokens is None
    np.testing.assert_allclose(fast.embed_texts(TEXTS), ref.embed_texts(TEXTS), atol=2e-6)
    hf = AutoTokenizer.from_pretrained(dest)
    assert fast.tokenize(["a red"])["input_ids"][0, 0] == hf.bos_token_id  # transformers' ids, BOS and all


def test_config_json_is_read_as_transformers_reads_it(tiny_model_dir, tmp_path):
    from transformers import AutoConfig, SiglipTextConfig

    ours, theirs = read_model_config(tiny_model_dir), AutoConfig.from_pretrained(tiny_model_dir)
    for k in TEXT_CONFIG_DEFAULTS:
        assert ours["text_config"][k] == getattr(theirs.text_config, k), k
    assert ours["vision_config"]["image_size"] == theirs.vision_config.image_size
    defaults = SiglipTextConfig()
    assert {k: getattr(defaults, k) for k in TEXT_CONFIG_DEFAULTS if k != "projection_size"} == \
        {k: v for k, v in TEXT_CONFIG_DEFAULTS.items() if k != "projection_size"}
    # fields left out take transformers' defaults (projection: the text width)
    sparse = tmp_path / "sparse"
    shutil.copytree(tiny_model_dir, sparse)
    cfg = json.loads((sparse / "config.json").read_text())
    del cfg["text_config"]["projection_size"], cfg["text_config"]["max_position_embeddings"]
    (sparse / "config.json").write_text(json.dumps(cfg))
    ident = read_identity(str(sparse))[1]
    theirs = AutoConfig.from_pretrained(sparse)
    assert (ident.embed_dim, ident.text_max_len) == (theirs.text_config.projection_size,
                                                     theirs.text_config.max_position_embeddings)


def test_fingerprints_are_remembered_per_file_version(tiny_model_dir, tmp_path, monkeypatch):
    import os

    from groundzero.model import identity

    monkeypatch.setenv("GROUNDZERO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(identity, "FINGERPRINT_CACHE_MIN_BYTES", 0)
    monkeypatch.setattr(identity, "_RECENT_NS", 0)
    model_dir = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model_dir)
    first = identity.fingerprint_weights(model_dir)
    assert (tmp_path / "cache" / "fingerprints.json").is_file()
    identity._fp_memo.clear()
    calls, sha256 = [], identity.hashlib.sha256
    monkeypatch.setattr(identity.hashlib, "sha256", lambda *a: calls.append(1) or sha256(*a))
    assert identity.fingerprint_weights(model_dir) == first and not calls  # from the disk cache
    # one byte changed in place, size and mtime put back as they were: the ctime moved, so it is hashed again
    weights = model_dir / "model.safetensors"
    data, before = weights.read_bytes(), weights.stat()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert identity.fingerprint_weights(model_dir) != first and calls


def run_without_heavy_imports(code: str) -> str:
    """Run ``code`` in a fresh interpreter, assert it imported neither torch, transformers nor duckdb;
    its stdout."""
    code += ("import sys\n"
             "bad = [m for m in ('torch', 'transformers', 'duckdb') if m in sys.modules]\n"
             "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_one_shot_text_embedding_imports_neither_torch_nor_transformers(tiny_model_dir):
    run_without_heavy_imports("from groundzero.model.backbone import Backbone\n"
                              f"b = Backbone({str(tiny_model_dir)!r}, device='cpu', numpy_text=True)\n"
                              "assert b.embed_texts(['a red circle']).shape == (1, 32)\n")


def test_a_one_shot_cli_search_loads_no_torch_and_finds_what_torch_finds(tiny_model_dir, tmp_path):
    from groundzero.search.searcher import Searcher
    from tests.planted import plant_index

    query = "a red circle moving left"
    q = Backbone(str(tiny_model_dir), device="cpu").embed_texts([query])[0]
    index = tmp_path / "index"
    plant_index(index, tiny_model_dir, q, durations=[120, 300, 90], target_video=1, target_start=130,
                target_end=145, decoys=[(2, 10, 20, 0.5)])
    out = run_without_heavy_imports(
        "from typer.main import get_command\n"
        "from groundzero.cli.main import app\n"
        f"get_command(app).main(['search', {query!r}, '--index', {str(index)!r}, '--json', '--top', '3'],\n"
        "                      standalone_mode=False)\n")
    cli = json.loads(out)["hits"]
    ref = [h.to_dict() for h in Searcher(index, device="cpu").search(query, top_k=3).hits]
    assert [(h["video_id"], h["start_sec"], h["end_sec"]) for h in cli] == \
        [(h["video_id"], h["start_sec"], h["end_sec"]) for h in ref]
    np.testing.assert_allclose([h["score"] for h in cli], [h["score"] for h in ref], atol=1e-6)
