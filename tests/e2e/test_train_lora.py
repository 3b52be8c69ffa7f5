"""LoRA mode end to end: index real (generated) videos, fine-tune the image tower with the head."""

import json

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from groundzero.cli.main import app
from groundzero.model.checkpoint import load_model
from groundzero.model.identity import read_identity
from tests import media

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_train_lora_saves_a_merged_backbone(tmp_path, tiny_model_dir, ray_session):
    archive = tmp_path / "archive"
    archive.mkdir()
    media.make_color_segments(archive / "vidA.mp4", [("red", 20), ("blue", 10), ("red", 20)])
    media.make_color_segments(archive / "vidB.mp4", [("green", 15), ("white", 10), ("green", 15)])
    index = tmp_path / "index"
    runner = CliRunner()
    r = runner.invoke(app, ["index", str(archive), "--index", str(index), "--model", str(tiny_model_dir),
                            "--window", "24", "--stride", "12", "--json"])
    assert r.exit_code == 0, r.output
    ann = tmp_path / "ann.jsonl"
    ann.write_text("\n".join(json.dumps(r) for r in [
        {"qid": 1, "query": "a blue screen", "vid": "vidA", "duration": 50, "relevant_windows": [[20, 30]]},
        {"qid": 2, "query": "a white screen", "vid": "vidB", "duration": 40, "relevant_windows": [[15, 25]]},
    ]))
    out = tmp_path / "head"
    r = runner.invoke(app, ["train", "--index", str(index), "--annotations", str(ann), "--out", str(out),
                            "--lora", "--archive", str(archive), "--epochs", "2", "--batch-size", "2",
                            "--size", "tiny", "--device", "cpu", "--lr", "1e-2", "--json"])
    assert r.exit_code == 0, r.output
    _, meta = load_model(out)
    _, merged = read_identity(str(out / "backbone"))
    _, original = read_identity(str(tiny_model_dir))
    assert meta["lora"] is True and meta["backbone"]["fingerprint"] == merged.fingerprint != original.fingerprint
    a = load_file(str(tiny_model_dir / "model.safetensors"))
    b = load_file(str(out / "backbone" / "model.safetensors"))
    last = "vision_model.encoder.layers.1.self_attn.q_proj.weight"
    assert not (a[last] == b[last]).all()  # the adapted block changed
    assert all((a[k] == b[k]).all() for k in a if k.startswith("text_model"))  # the text tower did not
    # the archive can be indexed again with the fine-tuned backbone
    r = runner.invoke(app, ["index", str(archive), "--index", str(tmp_path / "index2"),
                            "--model", str(out / "backbone"), "--json"])
    assert r.exit_code == 0, r.output


def test_lora_without_archive_is_one_line(tmp_path, tiny_model_dir):
    from groundzero.model.backbone import Backbone
    from tests.planted import plant_index

    q = Backbone(str(tiny_model_dir), device="cpu").embed_texts(["x"])[0]
    plant_index(tmp_path / "i", tiny_model_dir, q, durations=[60], target_video=0, target_start=1, target_end=5)
    ann = tmp_path / "a.jsonl"
    ann.write_text(json.dumps({"qid": 1, "query": "x", "vid": "video_00", "duration": 60,
                               "relevant_windows": [[1, 5]]}))
    r = CliRunner().invoke(app, ["train", "--index", str(tmp_path / "i"), "--annotations", str(ann),
                                 "--out", str(tmp_path / "o"), "--lora"])
    assert r.exit_code == 2 and "--archive" in r.stderr and r.stderr.count("\n") == 1
