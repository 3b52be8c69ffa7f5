"""The clip check (search/verify.py): a backbone's clip term re-scores the head's candidate spans."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from core.errors import ConfigError, ModelNotFoundError
from core.model.backbone import CLIP_ADAPTER_FILE, Backbone
from search.verify import clip_match, span_frames, verified_scores
from tests.planted import plant_index

QUERY = "a red circle moving left"


def _with_adapter(src, dest, weight: np.ndarray):
    from safetensors.numpy import save_file

    shutil.copytree(src, dest)
    save_file({"weight": weight.astype(np.float32)}, str(dest / CLIP_ADAPTER_FILE))
    return dest


@pytest.fixture(scope="module")
def clip_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny SigLIP plus a clip term A = 2 I (32-d)."""
    return _with_adapter(tiny_model_dir, tmp_path_factory.mktemp("clip") / "model", 2 * np.eye(32))


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_embed_clips_by_hand(clip_model_dir, tiny_model_dir, tmp_path):
    b = Backbone(str(clip_model_dir), device="cpu")
    rng = np.random.default_rng(0)
    first, last = rng.normal(size=(3, 32)), rng.normal(size=(3, 32))
    xa, xb = _unit(first), _unit(last)
    want = _unit((xa + xb) / 2 + 2 * (xb - xa))  # A = 2 I
    np.testing.assert_allclose(b.embed_clips(first, last), want, atol=1e-6)
    # the adapter is part of the model's identity: another A is another model
    assert b.identity.fingerprint != Backbone(str(tiny_model_dir), device="cpu").identity.fingerprint
    with pytest.raises(ConfigError, match="not trained on two-frame clips"):
        Backbone(str(tiny_model_dir), device="cpu").embed_clips(first, last)
    bad = _with_adapter(tiny_model_dir, tmp_path / "bad", np.eye(4))
    with pytest.raises(ModelNotFoundError, match=r"\(32, 32\) 'weight'"):
        Backbone(str(bad), device="cpu")


def test_the_check_prefers_the_span_that_changes_the_way_the_query_says(clip_model_dir):
    """Two spans with the same frames in opposite orders: only the clip term tells them apart."""
    b = Backbone(str(clip_model_dir), device="cpu")
    rng = np.random.default_rng(1)
    u, v = _unit(rng.normal(size=32)), _unit(rng.normal(size=32))
    ramp = np.linspace(0, 1, 9)[:, None]
    forward = _unit(u * (1 - ramp) + v * ramp)  # (9, 32): frames 0..8 go from u to v
    frames = np.concatenate([forward, forward[::-1]])  # frames 9..17 go back from v to u
    query = b.embed_clips(forward[:3].mean(0, keepdims=True), forward[-3:].mean(0, keepdims=True))[0]
    ranges = span_frames(np.array([[0.0, 9.0], [9.0, 18.0]]), 1.0, len(frames))
    assert ranges.tolist() == [[0, 9], [9, 18]]
    match = clip_match(b, query, frames, ranges)
    assert match[0] > match[1] and np.all((0 < match) & (match < 1))
    np.testing.assert_allclose(match, b.match_probability(
        b.embed_clips(np.stack([forward[:3].mean(0), forward[::-1][:3].mean(0)]),
                      np.stack([forward[-3:].mean(0), forward[::-1][-3:].mean(0)])) @ query))
    head = np.array([0.4, 0.5])  # the head prefers the reversed span
    assert verified_scores(head, match, 0.0).tolist() == head.tolist()
    big = verified_scores(head, match, 20.0)
    np.testing.assert_allclose(big, head * match**20)
    assert big.argmax() == 0
    assert clip_match(b, query, frames, np.zeros((0, 2), np.int64)).shape == (0,)


@pytest.fixture(scope="module")
def clip_index_and_head(clip_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clip-head")
    q = Backbone(str(clip_model_dir), device="cpu").embed_texts([QUERY])[0]
    index = tmp / "index"
    plant_index(index, clip_model_dir, q, durations=[120, 200], target_video=1, target_start=60, target_end=75)
    ann = tmp / "train.jsonl"
    ann.write_text("\n".join(json.dumps(r) for r in [
        {"qid": 1, "query": QUERY, "vid": "video_01", "duration": 200, "relevant_windows": [[60, 75]]},
        {"qid": 2, "query": "a blue square", "vid": "video_00", "duration": 120, "relevant_windows": [[10, 20]]},
    ]))
    head = tmp / "head"
    runner = CliRunner()
    r = runner.invoke(app, ["train", "--index", str(index), "--annotations", str(ann), "--out", str(head),
                            "--epochs", "1", "--batch-size", "2", "--tiny", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert runner.invoke(app, ["reindex", "--index", str(index), "--head", str(head)]).exit_code == 0
    return index, head, ann


def test_search_and_eval_apply_the_check_with_the_heads_weight(clip_index_and_head):
    from core.model.annotations import read_annotations
    from core.model.checkpoint import update_config
    from search.config import SearchConfig
    from search.evaluate import calibrate_verify_weight, evaluate
    from search.searcher import Searcher

    index, head, ann = clip_index_and_head
    plain = Searcher(index, device="cpu")
    assert plain.verify_weight == 0.0  # a head without a calibrated weight: no check
    res0 = plain.search(QUERY, top_k=50)
    update_config(head, {"verify_weight": 1.5})
    checked = Searcher(index, device="cpu")
    assert checked.verify_weight == 1.5
    res = checked.search(QUERY, top_k=50)
    # each hit's score is the head's times p_clip^1.5 of its span; found_prob the head's times p_clip
    before = {(h.video_id, h.start_sec, h.end_sec): h for h in res0.hits}
    q = checked.backbone.embed_texts([QUERY])[0]
    for h in res.hits:
        h0 = before[(h.video_id, h.start_sec, h.end_sec)]
        seq = next(s for s, r in checked.videos.items() if r["video_id"] == h.video_id)
        _, emb, _ = checked.video_data(seq)
        p = clip_match(checked.backbone, q, emb, span_frames(np.array([[h.start_sec, h.end_sec]]), 1.0, len(emb)))
        assert h.score == pytest.approx(h0.score * p[0] ** 1.5, rel=1e-6)
        assert h.found_prob == pytest.approx(h0.found_prob * p[0], rel=1e-6)
    assert [h.score for h in res.hits] == sorted((h.score for h in res.hits), reverse=True)
    # eval grounds within each video with the same check; a weight given in the config wins
    queries = read_annotations(ann)
    ev = evaluate(checked, queries)
    assert 0.0 <= ev.metrics["within-R1@0.5"] <= 1.0
    assert Searcher(index, device="cpu", cfg=SearchConfig(verify_weight=0.0)).verify_weight == 0.0
    weight, stats = calibrate_verify_weight(Searcher(index, device="cpu", cfg=SearchConfig(verify_weight=0.0)),
                                            queries)
    assert weight in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0) and stats["n_queries"] == 2.0
    assert stats[f"R1@0.5 w={weight:g}"] == max(v for k, v in stats.items() if k.startswith("R1@0.5"))
    update_config(head, {"verify_weight": 0.0})


def test_a_check_without_a_clip_term_is_refused(tiny_model_dir, tmp_path):
    from search.config import SearchConfig
    from search.searcher import Searcher

    q = Backbone(str(tiny_model_dir), device="cpu").embed_texts([QUERY])[0]
    plant_index(tmp_path / "idx", tiny_model_dir, q, durations=[60], target_video=0, target_start=5, target_end=10)
    with pytest.raises(ConfigError, match="set it to 0"):
        Searcher(tmp_path / "idx", device="cpu", cfg=SearchConfig(verify_weight=1.0))
    with pytest.raises(ConfigError, match="verify_weight must be in"):
        SearchConfig(verify_weight=-1.0).validate()
