"""`groundzero train` end to end: index embeddings + annotation file -> safetensors checkpoint."""

import json

from typer.testing import CliRunner

from groundzero.cli.main import app
from groundzero.model.backbone import Backbone
from groundzero.model.checkpoint import load_model
from tests.planted import plant_index


def test_train_cli_writes_a_loadable_checkpoint(tmp_path, tiny_model_dir):
    q = Backbone(str(tiny_model_dir), device="cpu").embed_texts(["a red circle moving left"])[0]
    index = tmp_path / "index"
    plant_index(index, tiny_model_dir, q, durations=[120, 200, 90], target_video=1, target_start=60, target_end=75)
    ann = tmp_path / "train.jsonl"
    rows = [
        {"qid": 1, "query": "a red circle moving left", "vid": "video_01", "duration": 200,
         "relevant_windows": [[60, 75]]},
        {"qid": 2, "query": "a blue square", "vid": "video_00", "duration": 120, "relevant_windows": [[10, 20]]},
        {"qid": 3, "query": "a ball", "vid": "not_indexed", "duration": 100, "relevant_windows": [[1, 2]]},
    ]
    ann.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "head"
    r = CliRunner().invoke(app, ["train", "--index", str(index), "--annotations", str(ann), "--out", str(out),
                                 "--epochs", "2", "--batch-size", "2", "--size", "tiny", "--device", "cpu",
                                 "--json"])
    assert r.exit_code == 0, r.output
    history = json.loads(r.stdout)
    assert len(history) == 2 and all(h["loss_total"] > 0 for h in history)
    _, meta = load_model(out)
    assert meta["n_queries"] == 2 and meta["backbone"]["embed_dim"] == 32
    assert meta["train"]["epochs"] == 2 and meta["train"]["batch_size"] == 2  # recorded with the run
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.pt"))


def test_train_cli_with_no_matching_videos_is_one_line(tmp_path, tiny_model_dir):
    q = Backbone(str(tiny_model_dir), device="cpu").embed_texts(["x"])[0]
    index = tmp_path / "index"
    plant_index(index, tiny_model_dir, q, durations=[60], target_video=0, target_start=1, target_end=5)
    ann = tmp_path / "a.jsonl"
    ann.write_text(json.dumps({"qid": 1, "query": "x", "vid": "zzz", "duration": 10, "relevant_windows": [[1, 2]]}))
    r = CliRunner().invoke(app, ["train", "--index", str(index), "--annotations", str(ann), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "none of the 1 videos" in r.stderr and r.stderr.count("\n") == 1


def _one_query(tmp_path, model_dir, query: str, start: float, end: float):
    """A planted one-video index (60 s, the moment at [start, end]) and its one-query annotations."""
    q = Backbone(str(model_dir), device="cpu").embed_texts([query])[0]
    index = tmp_path / "index"
    plant_index(index, model_dir, q, durations=[60], target_video=0, target_start=start, target_end=end)
    ann = tmp_path / "a.jsonl"
    ann.write_text(json.dumps({"qid": 1, "query": query, "vid": "video_00", "duration": 60,
                               "relevant_windows": [[start, end]]}))
    return index, ann


def test_train_cli_names_the_flag_of_a_bad_setting(tmp_path, tiny_model_dir):
    """TrainConfig names its fields (``epochs``); the command shows them as its flags."""
    index, ann = _one_query(tmp_path, tiny_model_dir, "x", 1, 5)
    base = ["train", "--index", str(index), "--annotations", str(ann), "--out", str(tmp_path / "o"),
            "--size", "tiny", "--device", "cpu"]
    for extra, flag in ((["--epochs", "0"], "--epochs"), (["--lr", "0"], "--lr")):
        r = CliRunner().invoke(app, base + extra)
        assert r.exit_code == 2 and flag in r.stderr and r.stderr.count("\n") == 1, (extra, r.output)
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_removed_research_flags_are_refused(tmp_path):
    for flag in ("--tiny", "--hard-negatives", "--text-layers", "--retrieval-group", "--lookalike-groups",
                 "--motion-offsets", "--context-motion-offsets", "--sentence-negatives"):
        r = CliRunner().invoke(app, ["train", "--index", str(tmp_path), "--annotations", str(tmp_path / "a"),
                                     "--out", str(tmp_path / "o"), flag, "1"])
        assert r.exit_code == 2 and "No such option" in r.output, (flag, r.output)
