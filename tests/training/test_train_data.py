"""Training samples: positive windows hold the moment, negative windows avoid it; draws are seeded."""

import numpy as np
import pytest
import torch

from groundzero.data.annotations import MomentQuery
from groundzero.data.proposals import ProposalConfig
from groundzero.errors import ConfigError
from groundzero.training.data import GroundingDataset, TextFeatures, collate

PROPS = ProposalConfig(window_sec=10, stride_sec=5, tokens_per_proposal=2)
T, D = 120, 16


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _video(seed=0):
    """One query with a moment at 22-28 s (frames 22..27) in a 120-s video."""
    rng = np.random.default_rng(seed)
    pooled = _unit(rng.normal(size=D))
    emb = _unit(rng.normal(size=(T, D)))
    q = MomentQuery("q0", "a red circle moving left", "v0", float(T), ((22.0, 28.0),))
    return [q], {"v0": emb}, {"q0": TextFeatures(np.ones((3, 4), np.float32), np.ones(3, bool), pooled)}


def _negative_windows(data, n=200):
    out = []
    for epoch in range(n):
        data.set_epoch(epoch)
        item = data[0]
        if item["present"] == 0.0:
            out.append(item["window_start"])
    return out


def test_negative_windows_are_uniform_and_never_overlap_the_moment():
    q, v, t = _video()
    starts = _negative_windows(GroundingDataset(q, v, t, 1.0, PROPS, neg_fraction=1.0, seed=0))
    assert len(starts) == 200 and len(set(starts)) > 10  # drawn over the whole moment-free footage
    for a in starts:
        assert a + PROPS.window_sec <= 22 or a >= 28  # a negative window never overlaps the moment


def test_positive_windows_hold_the_moment_and_label_its_span():
    q, v, t = _video()
    data = GroundingDataset(q, v, t, 1.0, PROPS, neg_fraction=0.0, seed=0)
    for epoch in range(20):
        data.set_epoch(epoch)
        item = data[0]
        ws, L = item["window_start"], len(item["video"])
        assert item["present"] == 1.0 and ws <= 22 and ws + L >= 28
        assert (item["start_idx"], item["end_idx"]) == (22 - ws, 27 - ws)  # frames 22..27, inclusive
        c, w = item["span_cw"][0]
        assert c == pytest.approx((22 - ws + 3) / L) and w == pytest.approx(6 / L)
        assert item["start_idx"] <= item["pos_idx"] <= item["end_idx"]
        assert not item["start_idx"] <= item["neg_idx"] <= item["end_idx"] and item["saliency_valid"]


def test_draws_are_seeded_per_epoch():
    q, v, t = _video()
    a = GroundingDataset(q, v, t, 1.0, PROPS, neg_fraction=0.5, seed=3)
    b = GroundingDataset(q, v, t, 1.0, PROPS, neg_fraction=0.5, seed=3)
    assert _negative_windows(a) == _negative_windows(b)
    share = len(_negative_windows(a)) / 200
    assert 0.35 < share < 0.65, share


def test_raw_frames_are_served_for_lora_and_bad_shares_are_refused():
    q, _, t = _video()
    frames = {"v0": np.zeros((T, 8, 8, 3), np.uint8)}
    data = GroundingDataset(q, frames, t, 1.0, PROPS, neg_fraction=1.0)
    item = data[0]
    assert item["video"].dtype == np.uint8 and item["video"].shape == (10, 8, 8, 3)
    batch = collate([item, item])
    assert batch["video"].dtype == torch.uint8 and batch["video"].shape == (2, 10, 8, 8, 3)
    with pytest.raises(ConfigError, match="neg_fraction"):
        GroundingDataset(q, frames, t, 1.0, PROPS, neg_fraction=1.5)


def test_collate_pads_windows_and_texts_and_masks_the_padding():
    rng = np.random.default_rng(0)
    emb = _unit(rng.normal(size=(T, D)))
    qs = [MomentQuery("q0", "a red circle", "v0", float(T), ((22.0, 28.0),)),
          MomentQuery("q1", "the background turns blue", "v1", 7.0, ())]  # a 7-s video: one short window
    text = {"q0": TextFeatures(np.ones((3, 4), np.float32), np.ones(3, bool), _unit(rng.normal(size=D))),
            "q1": TextFeatures(np.full((5, 4), 2, np.float32), np.ones(5, bool), _unit(rng.normal(size=D)))}
    data = GroundingDataset(qs, {"v0": emb, "v1": emb[:7]}, text, 1.0, PROPS, neg_fraction=0.0)
    batch = collate([data[0], data[1]])
    assert batch["video"].shape == (2, 10, D) and batch["text"].shape == (2, 5, 4)
    assert batch["video_mask"].sum(1).tolist() == [10, 7] and batch["text_mask"].sum(1).tolist() == [3, 5]
    assert (batch["video"][1, 7:] == 0).all() and (batch["text"][0, 3:] == 0).all()
    assert batch["pooled"].shape == (2, D) and batch["qid"] == ["q0", "q1"]
    targets = batch["targets"]
    assert targets["present"].tolist() == [1.0, 0.0]  # q1 has no moment: a "not found" window
    assert targets["span_labels"][0]["spans"].shape == (1, 2) and targets["span_labels"][1]["spans"].shape == (0, 2)
    assert targets["saliency_valid"].tolist() == [True, False]
