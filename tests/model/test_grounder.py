"""The whole grounding model: overfits a planted set, checkpoints round-trip (heads saved before the
experimental options were removed included), pickle is refused."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from groundzero.data.annotations import MomentQuery
from groundzero.data.proposals import ProposalConfig, make_windows
from groundzero.data.recall import recall_at_k
from groundzero.errors import ConfigError
from groundzero.model.checkpoint import load_model, read_config, save_model
from groundzero.model.grounder import GroundingModel, GroundingModelConfig
from groundzero.model.inference import ground
from groundzero.training.data import GroundingDataset, TextFeatures, collate
from groundzero.training.loop import TrainConfig, train

PROPS = ProposalConfig(window_sec=24, stride_sec=12, tokens_per_proposal=4)


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def planted(n_videos=6, T=60, D=32, seed=0):
    """Each query's moment frames are its pooled text vector plus noise; the rest is random."""
    rng = np.random.default_rng(seed)
    videos, text, queries = {}, {}, []
    for v in range(n_videos):
        tokens = rng.normal(size=(4, D)).astype(np.float32)
        pooled = _unit(tokens.mean(0))
        emb = _unit(rng.normal(size=(T, D)))
        s = int(rng.integers(2, T - 12))
        e = s + int(rng.integers(4, 9))
        emb[s:e] = _unit(pooled + 0.1 * rng.normal(size=(e - s, D)))
        vid, qid = f"v{v}", f"q{v}"
        videos[vid] = emb
        text[qid] = TextFeatures(tokens, np.ones(4, bool), pooled)
        queries.append(MomentQuery(qid, f"query {v}", vid, float(T), ((float(s), float(e)),)))
    return queries, videos, text


def test_forward_shapes():
    torch.manual_seed(0)
    q, v, t = planted()
    data = GroundingDataset(q, v, t, 1.0, PROPS)
    batch = collate([data[i] for i in range(3)])
    model = GroundingModel(GroundingModelConfig.tiny())
    out = model(batch["video"], batch["video_mask"], batch["text"], batch["text_mask"])
    assert out["pred_spans"].shape == (3, 5, 2) and out["pred_logits"].shape == (3, 5, 2)
    assert out["start_logits"].shape == (3, 24) and out["confidence_logit"].shape == (3,)
    assert model.retrieval_matrix(batch["video"], batch["video_mask"], batch["text"], batch["text_mask"]).shape == (3, 3)
    assert model.context_tokens(batch["video"], batch["video_mask"]).shape == (3, 4, 32)


@pytest.mark.slow
def test_overfits_planted_set_to_r1_at_07(tmp_path):
    q, v, t = planted()
    data = GroundingDataset(q, v, t, 1.0, PROPS, neg_fraction=0.2, seed=0)
    torch.manual_seed(0)
    model = GroundingModel(GroundingModelConfig.tiny())
    cfg = TrainConfig(epochs=150, batch_size=6, lr=2e-3, lr_drop=(), grad_clip=1.0, seed=0, save_every=1000)
    history = train(model, data, cfg, tmp_path / "ckpt")
    assert history[-1]["loss_total"] < history[0]["loss_total"]
    preds, gts = [], []
    for mq in q:
        g = ground(model, v[mq.vid], make_windows(60, 1.0, PROPS), t[mq.qid].tokens, t[mq.qid].mask, 1.0)
        preds.append([tuple(s) for s in g.spans])
        gts.append(list(mq.windows))
    r = recall_at_k(preds, gts, ks=(1,), ious=(0.7,))
    assert r["R1@0.7"] == 1.0, (r, preds, gts)


def test_checkpoint_round_trip_and_pickle_refused(tmp_path):
    torch.manual_seed(0)
    cfg = GroundingModelConfig.tiny()
    model = GroundingModel(cfg).eval()
    torch.nn.init.normal_(model.context_pooler.up.weight)  # not the zero init: the weights must round-trip
    save_model(tmp_path / "head", model, extra={"note": "x"})
    loaded, meta = load_model(tmp_path / "head")
    assert meta["note"] == "x" and loaded.cfg == cfg
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    bad = tmp_path / "pickled"
    bad.mkdir()
    torch.save(model.state_dict(), bad / "model.pt")
    with pytest.raises(ConfigError, match="pickle"):
        load_model(bad)
    with pytest.raises(ConfigError, match="pickle"):
        load_model(bad / "model.pt")


def _old_head(tmp_path, **values):
    """A tiny head whose config.json holds the keys a head saved before the removal of the experimental
    options had (their "not used" values), with ``values`` ("a.b.c": value) set over them."""
    torch.manual_seed(0)
    model = GroundingModel(GroundingModelConfig.tiny()).eval()
    save_model(tmp_path / "old", model, extra={"train": {"epochs": 2, "retrieval_group": 8}})
    path = tmp_path / "old" / "config.json"
    meta = json.loads(path.read_text())
    old = {"model.encoder.motion_offsets": [], "model.text_layers": [-1], "model.context_motion_offsets": [],
           "model.loss.sentence_contrast": 1.0, "train.hard_negatives": 0.0, "train.lookalike_groups": 0.0,
           "train.sentence_negatives": 0}
    for key, value in {**old, **values}.items():
        *parents, last = key.split(".")
        node = meta
        for part in parents:
            node = node[part]
        node[last] = value
    path.write_text(json.dumps(meta, indent=2))
    return tmp_path / "old", model


def test_a_head_saved_before_the_experiment_options_were_removed_still_loads(tmp_path):
    head, model = _old_head(tmp_path, **{"model.loss.sentence_contrast": 2.5})  # any weight: the loss is gone
    loaded, meta = load_model(head)
    assert loaded.cfg == model.cfg
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    # the removed keys are gone from what the reader returns; the rest is untouched
    assert "motion_offsets" not in meta["model"]["encoder"] and "sentence_contrast" not in meta["model"]["loss"]
    assert not {"text_layers", "context_motion_offsets"} & set(meta["model"])
    assert meta["train"] == {"epochs": 2, "retrieval_group": 8}
    assert read_config(head) == meta


@pytest.mark.parametrize("key, value", [
    ("model.encoder.motion_offsets", [2, 4]),
    ("model.text_layers", [0, -1]),
    ("model.context_motion_offsets", [2]),
])
def test_a_head_trained_with_a_removed_option_is_refused(tmp_path, key, value):
    head, _ = _old_head(tmp_path, **{key: value})
    match = rf"removed experimental option \({re.escape(key)}={re.escape(json.dumps(value))}\).*retrain"
    with pytest.raises(ConfigError, match=match):
        load_model(head)


@pytest.mark.parametrize("key", ["train.hard_negatives", "train.lookalike_groups", "train.sentence_negatives"])
def test_a_head_trained_with_a_removed_training_only_option_still_loads(tmp_path, key):
    head, _ = _old_head(tmp_path, **{key: 0.5})
    _, meta = load_model(head)
    assert key.split(".")[1] not in meta["train"]


def test_the_bundled_demo_head_loads_strict():
    from safetensors.torch import load_file

    head = Path(__file__).resolve().parents[2] / "examples" / "synthetic" / "bundled" / "head"
    model, meta = load_model(head)
    assert model.state_dict().keys() == load_file(str(head / "model.safetensors")).keys()
    assert meta["train"]["retrieval_group"] == 8


def test_training_resumes_where_it_stopped(tmp_path):
    q, v, t = planted(n_videos=3)
    cfg = TrainConfig(epochs=2, batch_size=3, lr=1e-3, lr_drop=(), seed=1)

    def fresh():
        torch.manual_seed(0)
        return GroundingModel(GroundingModelConfig.tiny())

    full = train(fresh(), GroundingDataset(q, v, t, 1.0, PROPS), cfg, tmp_path / "a")
    train(fresh(), GroundingDataset(q, v, t, 1.0, PROPS), TrainConfig(**{**cfg.__dict__, "epochs": 1}), tmp_path / "b")
    resumed = train(fresh(), GroundingDataset(q, v, t, 1.0, PROPS), cfg, tmp_path / "b", resume=True)
    assert len(resumed) == 2
    assert resumed[-1]["loss_total"] == pytest.approx(full[-1]["loss_total"], rel=1e-4)


def _contrastive(retrieval_group, batch, model):
    from groundzero.model.losses import build_criterion
    from groundzero.training.loop import _step_losses

    cfg = TrainConfig(retrieval_group=retrieval_group, context_token_weight=0.0)
    return _step_losses(model, build_criterion(model.cfg.loss), batch, torch.device("cpu"), cfg)["loss_contrastive"]


def test_retrieval_groups_split_the_contrastive_matrix():
    """Group >= positives: RGNet's full B x B loss; group 2: the mean over 2 x 2 blocks."""
    from groundzero.model.losses import build_criterion

    q, v, t = planted()
    batch = collate([GroundingDataset(q, v, t, 1.0, PROPS, neg_fraction=0.0)[i] for i in range(4)])
    torch.manual_seed(0)
    model = GroundingModel(GroundingModelConfig.tiny()).eval()
    with torch.no_grad():
        full = _contrastive(None, batch, model)
        assert float(_contrastive(4, batch, model)) == pytest.approx(float(full), rel=1e-6)
        crit = build_criterion(model.cfg.loss)
        m = model.retrieval_matrix(batch["video"], batch["video_mask"], batch["text"], batch["text_mask"])
        blocks = (crit.contrastive_loss(m[:2, :2]) + crit.contrastive_loss(m[2:, 2:])) / 2
        assert float(_contrastive(2, batch, model)) == pytest.approx(float(blocks), rel=1e-5)


def test_presets_and_unknown_size():
    small = GroundingModelConfig.preset("small", 128, 128)
    assert small.encoder.hidden == 128 and small.decoder.layers == 3
    assert GroundingModelConfig.from_dict(small.to_dict()) == small
    with pytest.raises(ConfigError, match="allowed: full, small, tiny"):
        GroundingModelConfig.preset("huge", 8, 8)


def test_window_score_can_include_the_confidence_head():
    q, v, t = planted(n_videos=1)
    torch.manual_seed(0)
    model = GroundingModel(GroundingModelConfig.tiny()).eval()
    windows = make_windows(60, 1.0, PROPS)
    args = (model, v["v0"], windows, t["q0"].tokens, t["q0"].mask, 1.0)
    plain = ground(*args)
    both = ground(*args, window_score="retrieval_confidence")
    Lw = int((windows[:, 1] - windows[:, 0]).max())
    video = torch.zeros(len(windows), Lw, 32)
    mask = torch.zeros(len(windows), Lw, dtype=torch.bool)
    for i, (a, b) in enumerate(windows):
        video[i, : b - a], mask[i, : b - a] = torch.from_numpy(v["v0"][a:b]), True
    text = torch.from_numpy(t["q0"].tokens)[None].expand(len(windows), -1, -1)
    with torch.no_grad():
        out = model(video, mask, text, torch.ones(text.shape[:2], dtype=torch.bool))
    conf = torch.sigmoid(out["confidence_logit"]).numpy()
    np.testing.assert_allclose(both.window_scores, plain.window_scores * conf, rtol=1e-5)
    assert list(both.window_rank) == list(np.argsort(-both.window_scores, kind="stable"))
    with pytest.raises(ValueError, match="window_score"):
        ground(*args, window_score="nope")


def test_windows_of_several_videos_batched_together_give_each_video_its_own_answer():
    """ground_many (one forward for all shortlisted videos) == ground video by video, whatever the
    batch mates: windows of different lengths (a 20-s video is shorter than one window) and a
    batch boundary falling inside a video."""
    from groundzero.model.inference import ground_many

    _, v, t = planted(n_videos=3)
    torch.manual_seed(0)
    model = GroundingModel(GroundingModelConfig.tiny()).eval()
    short = v["v2"][:20]
    videos = [(v["v0"], make_windows(60, 1.0, PROPS)[[0, 2, 3]]), (short, make_windows(20, 1.0, PROPS)),
              (v["v1"], make_windows(60, 1.0, PROPS))]
    args = (t["q0"].tokens, t["q0"].mask, 1.0)
    many = ground_many(model, videos, *args, batch_windows=4, window_score="retrieval_confidence")
    assert len(many) == 3
    for (frames, windows), g in zip(videos, many):
        one = ground(model, frames, windows, *args, window_score="retrieval_confidence")
        np.testing.assert_allclose(g.window_scores, one.window_scores, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(g.spans, one.spans, atol=1e-5)
        np.testing.assert_allclose(g.scores, one.scores, rtol=1e-5, atol=1e-6)
        assert g.found_prob == pytest.approx(one.found_prob, rel=1e-5)


def test_retrieval_groups_are_consecutive_chunks_of_the_positives():
    from groundzero.training.loop import retrieval_groups

    present = torch.tensor([1, 0, 1, 1, 1, 1, 0, 0, 1, 1.0])
    assert [g.tolist() for g in retrieval_groups(present, 4)] == [[0, 2, 3, 4], [5, 8, 9]]
    assert [g.tolist() for g in retrieval_groups(present, 3)] == [[0, 2, 3], [4, 5, 8]]  # [9] alone: dropped
    assert [g.tolist() for g in retrieval_groups(present, None)] == [[0, 2, 3, 4, 5, 8, 9]]
    assert retrieval_groups(torch.zeros(4), None) == []
