"""The real model is the default: SigLIP 2 So400m on a GPU, base-224 on a CPU; offline and not cached, a
clear error saying so and how to pass a local directory."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from groundzero.cli.main import app
from groundzero.errors import ModelNotFoundError
from groundzero.indexer.config import IndexConfig
from groundzero.model.backbone import default_model
from groundzero.model.identity import CPU_MODEL_ID, SO400M_ID, read_identity


def test_the_default_follows_the_device(monkeypatch):
    import torch

    assert IndexConfig(archive="a", index_dir="i").model == "auto"
    assert default_model("cuda") == SO400M_ID and default_model("cuda:1") == SO400M_ID
    assert default_model("cpu") == CPU_MODEL_ID
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_model("auto") == CPU_MODEL_ID
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_model("auto") == SO400M_ID


@pytest.fixture
def offline_empty_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))


def test_offline_and_not_cached_says_so(offline_empty_cache):
    with pytest.raises(ModelNotFoundError) as e:
        read_identity(CPU_MODEL_ID)
    msg = str(e.value)
    assert "not in the Hugging Face cache" in msg and "HF_HUB_OFFLINE" in msg
    assert "--model DIR" in msg and "--model demo" in msg


def test_index_without_a_model_on_a_cpu_offline_is_one_line(offline_empty_cache, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (tmp_path / "archive").mkdir()
    r = CliRunner().invoke(app, ["index", str(tmp_path / "archive"), "--index", str(tmp_path / "idx")])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert CPU_MODEL_ID in r.output and "not in the Hugging Face cache" in r.output
