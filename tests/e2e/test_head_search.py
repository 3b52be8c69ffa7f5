"""The trained path: train a head, reindex its context tokens, search with --head."""

import json

import pytest
from typer.testing import CliRunner

from groundzero.cli.main import app
from groundzero.model.backbone import Backbone
from tests.planted import plant_index

QUERY = "a red circle moving left"


@pytest.fixture(scope="module")
def index_and_head(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("head")
    q = Backbone(str(tiny_model_dir), device="cpu").embed_texts([QUERY])[0]
    index = tmp / "index"
    plant_index(index, tiny_model_dir, q, durations=[120, 200, 90], target_video=1, target_start=60, target_end=75)
    ann = tmp / "train.jsonl"
    ann.write_text("\n".join(json.dumps(r) for r in [
        {"qid": 1, "query": QUERY, "vid": "video_01", "duration": 200, "relevant_windows": [[60, 75]]},
        {"qid": 2, "query": "a blue square", "vid": "video_00", "duration": 120, "relevant_windows": [[10, 20]]},
        {"qid": 3, "query": "a red circle moving right", "vid": "video_01", "duration": 200, "relevant_windows": []},
    ]))
    head = tmp / "head"
    r = CliRunner().invoke(app, ["train", "--index", str(index), "--annotations", str(ann), "--out", str(head),
                                 "--epochs", "2", "--batch-size", "2", "--size", "tiny", "--device", "cpu",
                                 "--json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)) == 2, r.stdout
    return index, head


def _val_annotations(tmp_path, absent_query: str):
    """val.jsonl: QUERY with its planted moment in video_01, and ``absent_query`` with none (video_02)."""
    ann = tmp_path / "val.jsonl"
    ann.write_text("\n".join(json.dumps(r) for r in [
        {"qid": 1, "query": QUERY, "vid": "video_01", "duration": 200, "relevant_windows": [[60, 75]]},
        {"qid": 9, "query": absent_query, "vid": "video_02", "duration": 90, "relevant_windows": []},
    ]))
    return ann


def test_search_with_head_needs_reindex_then_works(index_and_head):
    index, head = index_and_head
    runner = CliRunner()
    r = runner.invoke(app, ["search", QUERY, "--index", str(index), "--head", str(head)])
    assert r.exit_code == 1 and "groundzero reindex" in r.stderr and r.stderr.count("\n") == 1
    r = runner.invoke(app, ["reindex", "--index", str(index), "--head", str(head), "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["params"]["token_kind"].startswith("head:") and m["n_tokens"] > 0
    r = runner.invoke(app, ["search", QUERY, "--index", str(index), "--head", str(head), "--json", "--top", "3"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    durations = {"video_00.mp4": 120, "video_01.mp4": 200, "video_02.mp4": 90}
    assert 1 <= len(res["hits"]) <= 3
    for h in res["hits"]:
        assert 0 <= h["start_sec"] < h["end_sec"] <= durations[h["rel_path"]]
        assert 0.0 <= h["found_prob"] <= 1.0
    # without --head, search uses the head the index was tokenised with
    r = runner.invoke(app, ["search", QUERY, "--index", str(index), "--json", "--top", "3"])
    assert r.exit_code == 0 and json.loads(r.stdout)["hits"] == res["hits"]
    # and back to zero-shot tokens
    r = runner.invoke(app, ["reindex", "--index", str(index), "--zero-shot", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["params"]["token_kind"] == "zero-shot-mean"


def test_head_of_another_backbone_is_refused(index_and_head, tmp_path):
    from groundzero.model.tiny import TinySiglipConfig, build_tiny_siglip

    index, head = index_and_head
    other = build_tiny_siglip(tmp_path / "other", TinySiglipConfig(seed=5))
    q = Backbone(str(other), device="cpu").embed_texts([QUERY])[0]
    plant_index(tmp_path / "idx2", other, q, durations=[60], target_video=0, target_start=5, target_end=10)
    r = CliRunner().invoke(app, ["reindex", "--index", str(tmp_path / "idx2"), "--head", str(head)])
    assert r.exit_code == 1 and "trained on embeddings of model" in r.stderr


def test_eval_on_index_zero_shot_and_with_head(index_and_head, tmp_path):
    index, head = index_and_head
    ann = _val_annotations(tmp_path, "nothing like this")
    runner = CliRunner()
    # zero-shot on the planted index: the planted moment is found exactly
    r = runner.invoke(app, ["eval", "--index", str(index), "--gt", str(ann), "--json", "--device", "cpu",
                            "--out", str(tmp_path / "preds.jsonl")])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["within-R1@0.7"] == 1.0 and m["corpus-R1@0.7"] == 1.0 and m["MR-full-R1@0.7"] == 100.0
    assert "not_found-precision" in m
    rows = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert {r["qid"] for r in rows} == {"1", "9"} and all(len(w) == 3 for w in rows[0]["pred_relevant_windows"])
    # with a (barely trained) head: runs end to end and reports proposal recall
    runner.invoke(app, ["reindex", "--index", str(index), "--head", str(head)])
    r = runner.invoke(app, ["eval", "--index", str(index), "--gt", str(ann), "--head", str(head), "--json",
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert 0.0 <= m["proposal-R@1"] <= 1.0 and "within-R1@0.5" in m
    runner.invoke(app, ["reindex", "--index", str(index), "--zero-shot"])


def test_found_threshold_comes_from_the_head_and_a_missing_head_is_reported(index_and_head, tmp_path):
    import shutil

    from groundzero.model.checkpoint import update_config
    from groundzero.search.searcher import Searcher

    index, head = index_and_head
    mine = tmp_path / "head"
    shutil.copytree(head, mine)
    runner = CliRunner()
    assert runner.invoke(app, ["reindex", "--index", str(index), "--head", str(mine)]).exit_code == 0
    try:
        assert Searcher(index, device="cpu").found_threshold == 0.5
        update_config(mine, {"found_threshold": 0.97})
        res = Searcher(index, device="cpu").search(QUERY)
        assert res.found_threshold == 0.97 and res.found == (res.found_prob >= 0.97)
        shutil.rmtree(mine)
        r = runner.invoke(app, ["search", QUERY, "--index", str(index)])
        assert r.exit_code == 1 and "which is gone" in r.stderr and "groundzero reindex" in r.stderr
    finally:
        runner.invoke(app, ["reindex", "--index", str(index), "--zero-shot"])


def test_calibrated_threshold_separates_found_from_not_found(index_and_head):
    from groundzero.data.annotations import MomentQuery
    from groundzero.search.searcher import Searcher
    from groundzero.synthetic.calibrate import calibrate_found_threshold

    index, _ = index_and_head
    searcher = Searcher(index, device="cpu")
    assert searcher.head is None
    queries = [MomentQuery("1", QUERY, "video_01", 200.0, ((60.0, 75.0),)),
               MomentQuery("2", "zzz unrelated words", "video_02", 90.0, ())]
    t, stats = calibrate_found_threshold(searcher, queries)
    probs = [searcher.search(q.query).found_prob for q in queries]
    assert stats["balanced_accuracy"] == 1.0 and probs[1] < t <= probs[0]
    with pytest.raises(ValueError, match="with and without"):
        calibrate_found_threshold(searcher, queries[:1])


def test_eval_per_query_puts_the_top_hit_beside_the_truth(index_and_head, tmp_path):
    index, _ = index_and_head
    ann = _val_annotations(tmp_path, "zzz unrelated words")
    runner = CliRunner()
    r = runner.invoke(app, ["eval", "--index", str(index), "--gt", str(ann), "--per-query", "--json"])
    assert r.exit_code == 0, r.output
    rows = {row["qid"]: row for row in json.loads(r.stdout)["per_query"]}
    hit = rows["1"]["hit"]
    assert hit["vid"] == "video_01" and rows["1"]["iou"] >= 0.5 and rows["1"]["correct"] == rows["1"]["found"]
    assert rows["9"]["truth"] == [] and rows["9"]["correct"] == (not rows["9"]["found"])
    r = runner.invoke(app, ["eval", "--index", str(index), "--gt", str(ann), "--per-query"])
    assert r.exit_code == 0 and "top result vs truth" in r.stdout and "video_01" in r.stdout


def test_found_threshold_bounds_the_real_answers_it_flags():
    import numpy as np

    from groundzero.synthetic.calibrate import found_threshold_from

    pos = np.linspace(0.50, 0.95, 10)  # queries with a moment
    neg = np.array([0.40, 0.52, 0.90])  # without
    probs, has = np.concatenate([pos, neg]), np.array([True] * 10 + [False] * 3)
    t, st = found_threshold_from(probs, has, max_missed=0.1)  # at most 1 of 10 answers flagged
    assert pos[0] < t < pos[1] and st["answers_flagged"] == 0.1
    assert st["not_found_recall"] == pytest.approx(2 / 3) and st["not_found_precision"] == pytest.approx(2 / 3)
    t0, st0 = found_threshold_from(probs, has, max_missed=0.0)  # never hide an answer
    assert t0 < pos[0] and st0["answers_flagged"] == 0.0 and st0["not_found_recall"] == pytest.approx(1 / 3)
    tied = np.array([0.6, 0.7, 0.7, 0.8, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.3])
    t2, st2 = found_threshold_from(tied, np.array([True] * 10 + [False]), max_missed=0.2)  # tie at the budget
    assert t2 < 0.7 and st2["answers_flagged"] == 0.1
    with pytest.raises(ValueError, match="max_missed"):
        found_threshold_from(probs, has, max_missed=1.0)
