"""Training samples: negative windows avoid the moment; hard negatives are the sentence-like ones."""

import numpy as np
import pytest

from core.errors import ConfigError
from core.model.annotations import MomentQuery
from core.model.train_data import GroundingDataset, TextFeatures
from core.proposals import ProposalConfig, make_windows

PROPS = ProposalConfig(window_sec=10, stride_sec=5, tokens_per_proposal=2)
T, D = 120, 16


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _video(seed=0):
    """One query with a moment at 20-30 s and a look-alike (a distractor) at 80-90 s."""
    rng = np.random.default_rng(seed)
    pooled = _unit(rng.normal(size=D))
    emb = _unit(rng.normal(size=(T, D)))
    emb[20:30] = _unit(pooled + 0.05 * rng.normal(size=(10, D)))
    emb[80:90] = _unit(pooled + 0.3 * rng.normal(size=(10, D)))
    q = MomentQuery("q0", "a red circle moving left", "v0", float(T), ((20.0, 30.0),))
    return [q], {"v0": emb}, {"q0": TextFeatures(np.ones((3, 4), np.float32), np.ones(3, bool), pooled)}


def _negative_windows(data, n=200):
    out = []
    for epoch in range(n):
        data.set_epoch(epoch)
        item = data[0]
        if item["present"] == 0.0:
            out.append(item["window_start"])
    return out


def test_hard_negatives_are_the_distractor_windows_never_the_moment():
    q, v, t = _video()
    windows = make_windows(T, 1.0, PROPS)
    data = GroundingDataset(q, v, t, 1.0, PROPS, neg_fraction=1.0, hard_negatives=1.0, hard_pool=2, seed=0)
    starts = set(_negative_windows(data))
    # the two moment-free windows most like the sentence hold the distractor (frames 80..89)
    hard = {int(a) for a, b in windows if a >= 30 and a < 90 and b > 80}
    assert starts and starts <= hard, (starts, hard)
    uniform = GroundingDataset(q, v, t, 1.0, PROPS, neg_fraction=1.0, hard_negatives=0.0, seed=0)
    assert len(set(_negative_windows(uniform)) - hard) > 5  # uniform draws reach ordinary footage
    for a in starts | set(_negative_windows(uniform)):
        b = a + PROPS.window_sec
        assert b <= 20 or a >= 30  # a negative window never overlaps the moment


def test_hard_negative_mix_is_deterministic_and_keeps_uniform_share():
    q, v, t = _video()
    a = GroundingDataset(q, v, t, 1.0, PROPS, neg_fraction=1.0, hard_negatives=0.5, hard_pool=2, seed=3)
    b = GroundingDataset(q, v, t, 1.0, PROPS, neg_fraction=1.0, hard_negatives=0.5, hard_pool=2, seed=3)
    assert _negative_windows(a) == _negative_windows(b)
    windows = make_windows(T, 1.0, PROPS)
    hard = {int(s) for s, e in windows if s >= 30 and s < 90 and e > 80}
    share = np.mean([s in hard for s in _negative_windows(a)])
    assert 0.4 < share < 0.8, share  # half hard, plus the uniform draws that land there by chance


def test_raw_frames_need_embeddings_to_mine_and_bad_shares_are_refused():
    q, v, t = _video()
    frames = {"v0": np.zeros((T, 8, 8, 3), np.uint8)}
    with pytest.raises(ConfigError, match="embeddings="):
        GroundingDataset(q, frames, t, 1.0, PROPS, hard_negatives=0.5)
    data = GroundingDataset(q, frames, t, 1.0, PROPS, neg_fraction=1.0, hard_negatives=1.0, hard_pool=2,
                            embeddings=v)
    assert data[0]["video"].dtype == np.uint8  # items carry frames; mining used the embeddings
    with pytest.raises(ConfigError, match="hard_negatives"):
        GroundingDataset(q, v, t, 1.0, PROPS, hard_negatives=1.5)
