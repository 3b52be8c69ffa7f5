"""Training samples: negative windows avoid the moment; hard negatives are the sentence-like ones."""

import numpy as np
import pytest
import torch

from core.errors import ConfigError
from core.model.annotations import MomentQuery
from core.model.train_data import GroundingDataset, TextFeatures, lookalike_batches, lookalike_neighbours
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


def _sentences(n_kinds=12, per_kind=4, seed=0):
    """``n_kinds`` sentence families of 4 look-alikes each (close pooled embeddings), each
    sentence said by ``per_kind`` queries."""
    rng = np.random.default_rng(seed)
    family = _unit(rng.normal(size=(n_kinds, D)))
    names, pooled = [], []
    for f in range(n_kinds):
        for m in range(4):  # four "motions" of one shape and colour
            emb = _unit(family[f] + 0.05 * rng.normal(size=D))
            for _ in range(per_kind):
                names.append(f"family {f} motion {m}")
                pooled.append(emb)
    return names, np.stack(pooled)


def test_lookalike_groups_gather_sentence_neighbours_with_distinct_sentences():
    names, pooled = _sentences()
    N, G = len(names), 4
    eligible = np.ones(N, bool)
    eligible[::7] = False  # queries without a moment join only random groups
    near = lookalike_neighbours(pooled, eligible)
    batches = lookalike_batches(near, names, 8, G, 1.0, np.random.default_rng(0))
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(N))  # every query once per epoch
    assert all(len(b) == 8 for b in batches[:-1])
    blocks = [flat[i:i + G] for i in range(0, N - N % G, G)]
    family = lambda i: names[i].split(" motion")[0]
    lookalike = [b for b in blocks if len({family(i) for i in b}) == 1 and len({names[i] for i in b}) == G]
    assert len(lookalike) >= 0.5 * len(blocks), (len(lookalike), len(blocks))
    assert all(eligible[i] for b in lookalike for i in b)
    # share 0: random groups, which almost never hold one family's four sentences
    rand = lookalike_batches(near, names, 8, G, 0.0, np.random.default_rng(0))
    rflat = [i for b in rand for i in b]
    rblocks = [rflat[i:i + G] for i in range(0, N - N % G, G)]
    assert sum(len({family(i) for i in b}) == 1 for b in rblocks) <= 2
    again = lookalike_batches(near, names, 8, G, 1.0, np.random.default_rng(0))
    assert again == batches  # seeded


def test_lookalike_batches_need_whole_groups_per_batch():
    names, pooled = _sentences(n_kinds=2)
    with pytest.raises(ConfigError, match="multiple"):
        lookalike_batches(lookalike_neighbours(pooled, np.ones(len(names), bool)), names, 10, 4, 0.5,
                          np.random.default_rng(0))


def test_lookalike_neighbours_in_chunks_are_the_nearest_ones():
    names, pooled = _sentences()
    eligible = np.ones(len(names), bool)
    eligible[::5] = False
    near = lookalike_neighbours(pooled, eligible, k=6, chunk_bytes=4 * 40 * 10)  # 10 rows per chunk
    items = np.flatnonzero(eligible)
    assert near.items.tolist() == items.tolist() and near.order.shape == (len(items), 7)
    assert np.isin(near.order, items).all()  # only eligible items are neighbours
    p = pooled[items] / np.linalg.norm(pooled[items], axis=1, keepdims=True)
    full = np.sort(p @ p.T, axis=1)[:, ::-1][:, :7]  # (M, 7) the 7 largest similarities per row
    unit = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    got = np.einsum("md,mkd->mk", unit[items], unit[near.order])  # similarities of the chosen ones
    np.testing.assert_allclose(got, full, atol=1e-5)  # nearest first


def _video_with_sentences():
    """One video, four queries: the item's (moment 20-30 s), a look-alike elsewhere (80-90 s), one
    overlapping the item's windows (24-28 s), and a moment-less look-alike; pooled vectors set so the
    look-alikes are nearest."""
    rng = np.random.default_rng(0)
    base = _unit(rng.normal(size=D))
    far = _unit(rng.normal(size=D))
    emb = _unit(rng.normal(size=(T, D)))
    qs = [MomentQuery("q0", "a red circle moving left", "v0", float(T), ((20.0, 30.0),)),
          MomentQuery("q1", "a red circle moving right", "v0", float(T), ((80.0, 90.0),)),
          MomentQuery("q2", "a red square moving left", "v0", float(T), ((24.0, 28.0),)),
          MomentQuery("q3", "a red circle moving up", "v0", float(T), ()),
          MomentQuery("q4", "the background turns blue", "v0", float(T), ((100.0, 110.0),)),
          MomentQuery("q5", "a red circle moving left", "v1", float(T), ((50.0, 60.0),))]
    pooled = {"q0": base, "q1": _unit(base + 0.1 * far), "q2": _unit(base + 0.05 * far),
              "q3": _unit(base + 0.2 * far), "q4": far, "q5": base}
    text = {q: TextFeatures(np.full((i + 2, 4), i, np.float32), np.ones(i + 2, bool), p)
            for i, (q, p) in enumerate(pooled.items())}
    return qs, {"v0": emb, "v1": emb.copy()}, text


def test_negative_sentences_are_same_video_look_alikes_outside_the_window():
    qs, v, t = _video_with_sentences()
    data = GroundingDataset(qs, v, t, 1.0, PROPS, neg_fraction=0.0, sentence_negatives=2, sentence_pool=2)
    seen = set()
    for epoch in range(20):
        data.set_epoch(epoch)
        item = data[0]
        assert item["present"] == 1.0 and len(item["neg_texts"]) == 2
        # q2 overlaps every window holding q0's moment, q4 is not among the 2 most alike, q5 is another video
        seen |= {int(tokens[0, 0]) for tokens, _ in item["neg_texts"]}
    assert seen == {1, 3}  # text index i of q1 and q3 (the moment-less one)
    assert "neg_texts" not in GroundingDataset(qs, v, t, 1.0, PROPS, neg_fraction=0.0)[0]
    with pytest.raises(ConfigError, match="sentence_negatives"):
        GroundingDataset(qs, v, t, 1.0, PROPS, sentence_negatives=3, sentence_pool=2)


def test_collate_serves_negative_sentences_as_not_present_rows_on_the_same_window():
    from core.model.train_data import collate

    qs, v, t = _video_with_sentences()
    data = GroundingDataset(qs, v, t, 1.0, PROPS, neg_fraction=0.0, sentence_negatives=2, sentence_pool=3)
    items = [data[0], data[1], data[5]]
    n_neg = [len(it["neg_texts"]) for it in items]
    batch = collate(items)
    B = len(items)
    assert batch["video"].shape[0] == B + sum(n_neg)
    assert batch["targets"]["neg_of"].tolist() == [i for i, n in enumerate(n_neg) for _ in range(n)]
    for row, owner in enumerate(batch["targets"]["neg_of"].tolist(), start=B):
        assert torch.equal(batch["video"][row], batch["video"][owner])
        assert batch["targets"]["present"][row] == 0 and batch["targets"]["span_labels"][row]["spans"].shape == (0, 2)
    assert batch["targets"]["present"][:B].tolist() == [1.0] * B
    assert n_neg[2] == 0  # q5's video has no other sentence
