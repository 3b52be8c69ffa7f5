"""How the embed stage runs: actors x threads per machine, the actor's precision and threads, and the
precision an index records and holds later runs to (decode + embed stubbed: tests.crash.fake_pipeline)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from groundzero.cli.main import app
from groundzero.errors import ConfigError, IndexMismatchError
from groundzero.indexer import embed_plan
from groundzero.indexer.config import IndexConfig
from groundzero.indexer.embed_plan import EmbedSizing, plan_embed, with_precision
from groundzero.indexer.pipeline import run_index
from groundzero.store.layout import IndexLayout
from groundzero.store.manifest import read_manifest
from tests.crash.fake_pipeline import make_archive, patch_embed


@pytest.mark.parametrize("nodes, gpus, device, actors, threads, expected", [
    ([1], 0, "cpu", None, None, (1, 1, 0)),  # one core: the actor reserves none, so decoding can run
    ([2], 0, "cpu", None, 1, (1, 1, 1)),  # 1 thread: a second actor would leave no CPU for decoding
    ([2], 0, "cpu", 2, None, (2, 1, 0.5)),  # --workers 2 on 2 cores: half a CPU each
    ([2], 0, "cpu", None, None, (1, 2, 1)),  # 2 cores: both embed, decoding shares them (measured 1.2-1.5x 1 x 1)
    ([4], 0, "cpu", None, None, (1, 3, 3)),
    ([16], 0, "cpu", None, None, (1, 12, 12)),  # a quarter of the cores decode
    ([64], 0, "cpu", None, None, (3, 16, 16)),  # at most 16 threads an actor: 48 cores in 3 actors
    ([32, 32, 8], 0, "cpu", None, None, (9, 6, 6)),  # threads fit the smallest node: 4 + 4 + 1 actors
    ([16], 0, "cpu", 3, None, (3, 4, 4)),  # --workers: the embed cores shared among them
    ([16], 0, "cpu", None, 4, (3, 4, 4)),  # --threads: as many actors as fit
    ([4], 0, "cpu", None, 4, (1, 4, 3)),  # more threads than a node can reserve beside decoding: oversubscribed
    ([], 0, "cpu", None, None, (1, 1, 1)),  # an autoscaling cluster with no node yet
    ([16], 4, "cuda", None, None, (4, 1, 1)),  # one actor per GPU
    ([16], 4, "cuda", 2, None, (2, 1, 1)),
])
def test_plan_embed(nodes, gpus, device, actors, threads, expected):
    assert plan_embed(device, nodes, gpus, actors, threads) == EmbedSizing(*expected)


def test_plan_embed_refuses_zero():
    with pytest.raises(ConfigError, match="embed_threads must be >= 1, got 0") as e:
        plan_embed("cpu", [4], 0, threads=0)
    assert e.value.field == "embed_threads"


def test_embed_actor_sets_threads_and_precision(tiny_model_dir):
    import torch

    from groundzero.indexer.embed import EmbedFrames

    before = torch.get_num_threads()
    try:
        actor = EmbedFrames(str(tiny_model_dir), device="cpu", precision="bf16", threads=1)
        assert torch.get_num_threads() == 1 and actor.backbone.dtype == torch.bfloat16
        frames = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
        out = actor({"video_id": np.array(["v"] * 3), "frame": frames, "end_meta": np.array(["", "", ""])})
        ref = EmbedFrames(str(tiny_model_dir), device="cpu", precision="fp32").backbone.embed_images(frames)
        assert out["embedding"].dtype == np.float32
        assert ((out["embedding"] * ref).sum(1) > 0.99).all()
    finally:
        torch.set_num_threads(before)


def _cfg(tmp_path, model, **kw) -> IndexConfig:
    return IndexConfig(archive=str(tmp_path / "archive"), index_dir=str(tmp_path / "index"), model=str(model),
                       device="cpu", **kw)


@pytest.fixture
def archive(tmp_path):
    (tmp_path / "archive").mkdir()
    make_archive(tmp_path / "archive", 2)
    return tmp_path / "archive"


def _runtime(tmp_path) -> str:
    return read_manifest(IndexLayout(tmp_path / "index")).model.runtime


def test_auto_precision_follows_the_cpu_for_a_new_index(tmp_path, tiny_model_dir, monkeypatch):
    for fast, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(embed_plan, "cpu_has_fast_bf16", lambda fast=fast: fast)
        assert with_precision(_cfg(tmp_path, tiny_model_dir), tmp_path / "new").precision == expected


def test_the_index_records_its_precision_and_refuses_another(tmp_path, archive, tiny_model_dir, monkeypatch):
    patch_embed(monkeypatch.setattr, 32)
    run_index(_cfg(tmp_path, tiny_model_dir, precision="bf16"))
    assert _runtime(tmp_path) == "torch-bf16"
    make_archive(archive, 3)  # one more video for each later run to index
    with pytest.raises(IndexMismatchError, match=r"embedded with runtime 'torch-bf16', but this run would embed "
                                                 r"with 'torch-fp32'; leave --precision at auto"):
        run_index(_cfg(tmp_path, tiny_model_dir, precision="fp32"))
    # auto keeps the index's precision even where this CPU would pick another
    monkeypatch.setattr(embed_plan, "cpu_has_fast_bf16", lambda: False)
    rep = run_index(_cfg(tmp_path, tiny_model_dir))
    assert rep.record.n_indexed == 1 and _runtime(tmp_path) == "torch-bf16"


def test_an_old_index_is_fp32(tmp_path, archive, tiny_model_dir, monkeypatch):
    """A manifest written before runtimes were recorded reads as torch-fp32, which auto then keeps."""
    patch_embed(monkeypatch.setattr, 32)
    run_index(_cfg(tmp_path, tiny_model_dir, precision="fp32"))
    layout = IndexLayout(tmp_path / "index")
    d = json.loads(layout.manifest.read_text())
    del d["model"]["runtime"]
    layout.manifest.write_text(json.dumps(d))
    monkeypatch.setattr(embed_plan, "cpu_has_fast_bf16", lambda: True)
    assert with_precision(_cfg(tmp_path, tiny_model_dir), tmp_path / "index").precision == "fp32"


def test_cli_precision_flag(tmp_path, archive, tiny_model_dir, monkeypatch):
    patch_embed(monkeypatch.setattr, 32)
    args = ["index", str(archive), "--index", str(tmp_path / "index"), "--model", str(tiny_model_dir),
            "--device", "cpu", "--json"]
    r = CliRunner().invoke(app, [*args, "--precision", "fp16"])
    assert r.exit_code == 2 and "--precision" in r.output and "fp16" in r.output, r.output
    r = CliRunner().invoke(app, [*args, "--precision", "fp32"])
    assert r.exit_code == 0, r.output
    make_archive(archive, 3)
    r = CliRunner().invoke(app, [*args, "--precision", "bf16"])
    assert r.exit_code != 0 and "runtime 'torch-fp32'" in r.output, r.output
