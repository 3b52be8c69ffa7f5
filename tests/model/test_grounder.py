"""The whole grounding model: overfits a planted set, checkpoints round-trip, pickle is refused."""

import numpy as np
import pytest
import torch

from core.errors import ConfigError
from core.model.annotations import MomentQuery
from core.model.checkpoint import load_model, save_model
from core.model.grounder import GroundingModel, GroundingModelConfig
from core.model.inference import ground
from core.model.metrics import recall_at_k
from core.model.train import TrainConfig, train
from core.model.train_data import GroundingDataset, TextFeatures, collate
from core.proposals import ProposalConfig, make_windows

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
    from dataclasses import replace

    torch.manual_seed(0)
    cfg = GroundingModelConfig.tiny()
    cfg = replace(cfg, encoder=replace(cfg.encoder, motion_offsets=(2, 4)), text_layers=(0, -1),
                  context_motion_offsets=(1, 3))
    model = GroundingModel(cfg).eval()
    torch.nn.init.normal_(model.context_pooler.motion.weight)  # not the zero init: the weights must round-trip
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
    from core.model.losses import build_criterion
    from core.model.train import _step_losses

    cfg = TrainConfig(retrieval_group=retrieval_group, context_token_weight=0.0)
    return _step_losses(model, build_criterion(model.cfg.loss), batch, torch.device("cpu"), cfg)["loss_contrastive"]


def test_retrieval_groups_split_the_contrastive_matrix():
    """Group >= positives: RGNet's full B x B loss; group 2: the mean over 2 x 2 blocks."""
    from core.model.losses import build_criterion

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
    from core.model.inference import ground_many

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


def test_aligned_retrieval_groups_follow_the_batch_blocks():
    from core.model.train import retrieval_groups

    present = torch.tensor([1, 0, 1, 1, 1, 1, 0, 0, 1, 1.0])
    # look-alike batches: a group is one block of 4 items' positives; singletons dropped
    assert [g.tolist() for g in retrieval_groups(present, 4, aligned=True)] == [[0, 2, 3], [4, 5], [8, 9]]
    # shuffled batches: consecutive chunks of 4 positives
    assert [g.tolist() for g in retrieval_groups(present, 4, aligned=False)] == [[0, 2, 3, 4], [5, 8, 9]]
    assert [g.tolist() for g in retrieval_groups(present, None, aligned=False)] == [[0, 2, 3, 4, 5, 8, 9]]


def test_training_with_lookalike_groups_runs_and_bad_settings_are_refused(tmp_path):
    q, v, t = planted(n_videos=8)
    cfg = TrainConfig(epochs=2, batch_size=4, lr=1e-3, lr_drop=(), seed=1, retrieval_group=2, lookalike_groups=1.0)
    torch.manual_seed(0)
    history = train(GroundingModel(GroundingModelConfig.tiny()), GroundingDataset(q, v, t, 1.0, PROPS), cfg,
                    tmp_path / "la")
    assert len(history) == 2 and np.isfinite(history[-1]["loss_contrastive"])
    with pytest.raises(ConfigError, match="retrieval-group"):
        TrainConfig(lookalike_groups=0.5).validate()
    with pytest.raises(ConfigError, match="multiple"):
        TrainConfig(lookalike_groups=0.5, retrieval_group=5, batch_size=32).validate()
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        TrainConfig(lookalike_groups=1.5, retrieval_group=8).validate()


def test_negative_sentences_teach_which_sentence_a_window_shows(tmp_path):
    """Two queries per video with look-alike sentences (shared words), moments apart: trained with
    negative sentences, a window scores its own sentence above the other one."""
    rng = np.random.default_rng(3)
    D, T = 32, 60
    queries, videos, text = [], {}, {}
    for v in range(6):
        shared = rng.normal(size=(3, D)).astype(np.float32)  # the words both sentences have
        emb = _unit(rng.normal(size=(T, D)))
        for k, (s, e) in enumerate(((5, 12), (35, 42))):
            word = rng.normal(size=(1, D)).astype(np.float32)  # the one word that differs
            tokens = np.concatenate([shared, word])
            # both moments show the shared part: only the differing word tells them apart
            emb[s:e] = _unit(shared.mean(0) + 0.5 * word[0] + 0.1 * rng.normal(size=(e - s, D)))
            qid = f"q{v}_{k}"
            text[qid] = TextFeatures(tokens, np.ones(4, bool), _unit(tokens.mean(0)))
            queries.append(MomentQuery(qid, f"sentence {v} {k}", f"v{v}", float(T), ((float(s), float(e)),)))
        videos[f"v{v}"] = emb
    data = GroundingDataset(queries, videos, text, 1.0, PROPS, neg_fraction=0.0, sentence_negatives=1, seed=0)
    torch.manual_seed(0)
    model = GroundingModel(GroundingModelConfig.tiny())
    history = train(model, data, TrainConfig(epochs=30, batch_size=6, lr=3e-3, lr_drop=(), seed=0), tmp_path / "sn")
    assert history[-1]["loss_sentence_contrast"] < 0.5 * history[0]["loss_sentence_contrast"]
    model.eval()
    batch = collate([data[i] for i in range(len(data))])
    with torch.no_grad():
        r = model(batch["video"], batch["video_mask"], batch["text"], batch["text_mask"])["retrieval_logit"]
    neg_of = batch["targets"]["neg_of"]
    wins = (r[neg_of] > r[len(data):]).float().mean().item()
    assert wins >= 0.9, wins  # trained without negative sentences: 0.75 (windows told apart by the shared part)
