"""The clip check (groundzero.synthetic.clip_check): the demo's re-scorer plugin re-scores the head's spans."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from groundzero.cli.main import app
from groundzero.errors import ConfigError, ModelNotFoundError
from groundzero.model.backbone import Backbone
from groundzero.synthetic.clip_check import (
    CLIP_ADAPTER_FILE,
    ClipCheck,
    checked_scores,
    clip_match,
    embed_clips,
    load_clip_adapter,
    span_frames,
)
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
    adapter = load_clip_adapter(b.model_dir, b.embed_dim)
    rng = np.random.default_rng(0)
    first, last = rng.normal(size=(3, 32)), rng.normal(size=(3, 32))
    xa, xb = _unit(first), _unit(last)
    want = _unit((xa + xb) / 2 + 2 * (xb - xa))  # A = 2 I
    np.testing.assert_allclose(embed_clips(adapter, first, last), want, atol=1e-6)
    # the adapter is part of the model's identity: another A is another model
    plain = Backbone(str(tiny_model_dir), device="cpu")
    assert b.identity.fingerprint != plain.identity.fingerprint
    assert load_clip_adapter(plain.model_dir, plain.embed_dim) is None
    with pytest.raises(ConfigError, match="not trained on clips"):
        ClipCheck(plain, {"weight": 1.0})
    with pytest.raises(ConfigError, match="weight must be in"):
        ClipCheck(b, {"weight": -1.0})
    bad = _with_adapter(tiny_model_dir, tmp_path / "bad", np.eye(4))
    with pytest.raises(ModelNotFoundError, match=r"\(32, 32\) 'weight'"):
        load_clip_adapter(bad, 32)


def test_the_check_prefers_the_span_that_changes_the_way_the_query_says(clip_model_dir):
    """Two spans with the same frames in opposite orders: only the clip term tells them apart."""
    b = Backbone(str(clip_model_dir), device="cpu")
    adapter = load_clip_adapter(b.model_dir, b.embed_dim)
    rng = np.random.default_rng(1)
    u, v = _unit(rng.normal(size=32)), _unit(rng.normal(size=32))
    ramp = np.linspace(0, 1, 9)[:, None]
    forward = _unit(u * (1 - ramp) + v * ramp)  # (9, 32): frames 0..8 go from u to v
    frames = np.concatenate([forward, forward[::-1]])  # frames 9..17 go back from v to u
    query = embed_clips(adapter, forward[:3].mean(0, keepdims=True), forward[-3:].mean(0, keepdims=True))[0]
    ranges = span_frames(np.array([[0.0, 9.0], [9.0, 18.0]]), 1.0, len(frames))
    assert ranges.tolist() == [[0, 9], [9, 18]]
    match = clip_match(b, adapter, query, frames, ranges)
    assert match[0] > match[1] and np.all((0 < match) & (match < 1))
    np.testing.assert_allclose(match, b.match_probability(
        embed_clips(adapter, np.stack([forward[:3].mean(0), forward[::-1][:3].mean(0)]),
                    np.stack([forward[-3:].mean(0), forward[::-1][-3:].mean(0)])) @ query))
    head = np.array([0.4, 0.5])  # the head prefers the reversed span
    assert checked_scores(head, match, 0.0).tolist() == head.tolist()
    big = checked_scores(head, match, 20.0)
    np.testing.assert_allclose(big, head * match**20)
    assert big.argmax() == 0
    assert clip_match(b, adapter, query, frames, np.zeros((0, 2), np.int64)).shape == (0,)
    # the plugin: rescore returns (score · p^w, p)
    new, p = ClipCheck(b, {"weight": 20.0}).rescore(query, frames, np.array([[0.0, 9.0], [9.0, 18.0]]), head, 1.0)
    np.testing.assert_allclose(new, big)
    np.testing.assert_allclose(p, match)


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
                            "--epochs", "1", "--batch-size", "2", "--size", "tiny", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert runner.invoke(app, ["reindex", "--index", str(index), "--head", str(head)]).exit_code == 0
    return index, head, ann


def test_search_and_eval_apply_the_rescorer_the_head_declares(clip_index_and_head):
    from groundzero.data.annotations import read_annotations
    from groundzero.model.checkpoint import update_config
    from groundzero.search.evaluate import evaluate
    from groundzero.search.searcher import Searcher
    from groundzero.synthetic.calibrate import calibrate_clip_weight

    index, head, ann = clip_index_and_head
    plain = Searcher(index, device="cpu")
    assert plain.rescorer is None  # a head that declares no re-scorer: none
    res0 = plain.search(QUERY, top_k=50)
    queries = read_annotations(ann)
    weight, stats = calibrate_clip_weight(plain, queries)
    assert weight in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0) and stats["n_queries"] == 2.0
    assert stats[f"R1@0.5 w={weight:g}"] == max(v for k, v in stats.items() if k.startswith("R1@0.5"))
    update_config(head, {"rescorer": {"name": "clip-check", "weight": 1.5}})
    checked = Searcher(index, device="cpu")
    assert isinstance(checked.rescorer, ClipCheck) and checked.rescorer.weight == 1.5
    with pytest.raises(ConfigError, match="no re-scorer yet"):
        calibrate_clip_weight(checked, queries)
    res = checked.search(QUERY, top_k=50)
    # each hit's score is the head's times p_clip^1.5 of its span; found_prob the head's times p_clip
    before = {(h.video_id, h.start_sec, h.end_sec): h for h in res0.hits}
    q = checked.backbone.embed_texts([QUERY])[0]
    adapter = checked.rescorer.adapter
    for h in res.hits:
        h0 = before[(h.video_id, h.start_sec, h.end_sec)]
        seq = next(s for s, r in checked.videos.items() if r["video_id"] == h.video_id)
        _, emb, _ = checked.video_data(seq)
        p = clip_match(checked.backbone, adapter, q, emb,
                       span_frames(np.array([[h.start_sec, h.end_sec]]), 1.0, len(emb)))
        assert h.score == pytest.approx(h0.score * p[0] ** 1.5, rel=1e-6)
        assert h.found_prob == pytest.approx(h0.found_prob * p[0], rel=1e-6)
    assert [h.score for h in res.hits] == sorted((h.score for h in res.hits), reverse=True)
    # eval grounds within each video through the same path, re-scorer included
    ev = evaluate(checked, queries)
    assert 0.0 <= ev.metrics["within-R1@0.5"] <= 1.0
    seq = next(s for s, r in checked.videos.items() if r["video_id"] == res.hits[0].video_id)
    within = checked.ground(QUERY, {seq: checked.proposal_ranges(seq)})[0].hits
    assert [h.score for h in within] == sorted((h.score for h in within), reverse=True)
    update_config(head, {"rescorer": None})


def test_a_check_without_a_clip_term_or_an_unknown_rescorer_is_refused(clip_index_and_head, tiny_model_dir):
    from groundzero.model.checkpoint import update_config
    from groundzero.plugins import load_rescorer

    b = Backbone(str(tiny_model_dir), device="cpu")
    with pytest.raises(ConfigError, match="not trained on clips"):
        load_rescorer({"name": "clip-check", "weight": 1.0}, b)
    with pytest.raises(ConfigError, match="no installed package registers"):
        load_rescorer({"name": "no-such-rescorer"}, b)
    index, head, _ = clip_index_and_head
    update_config(head, {"rescorer": {"name": "no-such-rescorer"}})
    try:
        r = CliRunner().invoke(app, ["search", QUERY, "--index", str(index)])
        assert r.exit_code != 0 and "no-such-rescorer" in r.output and "Traceback" not in r.output
    finally:
        update_config(head, {"rescorer": None})
