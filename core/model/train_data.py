"""Training samples: one (query, proposal window) pair per item, cut from stored frame embeddings.

A positive item takes a window that holds the ground-truth moment (fully, when
one does; else the one overlapping it most) and labels the span inside it; a
negative item (``neg_fraction`` of the items, and every query without a moment —
the "not found" queries) takes a window away from any moment, labelled
"not present" for the confidence head and all-background for the decoder.

Hard negatives: a window drawn uniformly is mostly footage that shares nothing with
the sentence, so the confidence head learns to reject only easy windows and, at
search time, a distractor in another video ("a red circle moving right" for "... moving
left") outscores the true moment. A share ``hard_negatives`` of the negative items
therefore takes one of the ``hard_pool`` moment-free windows whose best frame is most
similar to the sentence (stored frame embedding · pooled text embedding, the
zero-shot score); the rest stay uniform, so the head still sees ordinary footage.
Mining reads the stored embeddings even in LoRA mode, where items carry raw frames.

Negative sentences: a window is only ever contrasted with *other windows*, so nothing
asks the head whether "moving left" or "moving right" is what a window shows when both
sentences look alike to the backbone. With ``sentence_negatives`` K > 0 a positive item
also carries up to K other sentences of the *same video* that are known not to be in its
window: queries whose moments all lie outside it, or that have no moment in the video at
all (the "not found" queries, one attribute away from something shown). They are drawn
from the ``sentence_pool`` most similar to the item's sentence (pooled embeddings), so
they are look-alikes. :func:`collate` serves each as an extra "not present" row on the
same window, and the criterion ranks the true sentence above them
(``loss_sentence_contrast``). Only annotations of the same video are used, so a
negative is never a sentence that may describe the window unannotated.

Video normalisation (notes §9 point 3): RGNet's loader meant to L2-normalise frame
features but returns the raw ones; here the model always receives the stored
SigLIP embeddings, which are L2-normalised at index time (and the same at search
time), so training and inference see identically scaled inputs.

Frames: frame ``k`` at ``fps`` covers ``[k/fps, (k+1)/fps)``; a moment
``[s, e)`` seconds covers frames ``floor(s*fps) .. ceil(e*fps) - 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from core.errors import ConfigError
from core.model.annotations import MomentQuery
from core.proposals import ProposalConfig, make_windows


@dataclass(frozen=True)
class TextFeatures:
    """A query's text: word states (L, Dt), mask (L,) bool, pooled embedding (D,)."""

    tokens: np.ndarray
    mask: np.ndarray
    pooled: np.ndarray


def moment_frames(start_sec: float, end_sec: float, fps: float, n_frames: int) -> tuple[int, int]:
    """Inclusive frame range covered by a moment, clipped to the video."""
    a = min(max(int(math.floor(start_sec * fps)), 0), n_frames - 1)
    b = min(max(int(math.ceil(end_sec * fps)) - 1, a), n_frames - 1)
    return a, b


class GroundingDataset(torch.utils.data.Dataset):
    """Args:
        queries: annotations; those whose ``vid`` has no frames are dropped (see ``missing``).
        videos: vid -> float32 (T, D) frame embeddings (L2-normalised, as stored), or, for LoRA
            fine-tuning, uint8 (T, S, S, 3) decoded frames (items then carry frames).
        text: qid -> :class:`TextFeatures`.
        fps, proposals: how the index sampled frames and cut windows.
        neg_fraction: share of positive queries served as a negative window instead.
        hard_negatives: share of negative items that take a hard window (see the module
            docstring); 0 = every negative window uniform.
        hard_pool: how many of the most sentence-like moment-free windows a hard negative
            is drawn from (uniformly).
        embeddings: vid -> float32 (T, D) stored frame embeddings to mine hard negatives
            with; default ``videos`` (required when ``videos`` holds raw frames and
            ``hard_negatives`` > 0).
        sentence_negatives: K, how many negative sentences a positive item carries (module
            docstring); 0 = none, as RGNet.
        sentence_pool: they are drawn uniformly from this many most similar candidates.
    """

    def __init__(self, queries: list[MomentQuery], videos: dict[str, np.ndarray], text: dict[str, TextFeatures],
                 fps: float, proposals: ProposalConfig, neg_fraction: float = 0.2, seed: int = 0,
                 hard_negatives: float = 0.0, hard_pool: int = 4,
                 embeddings: dict[str, np.ndarray] | None = None, sentence_negatives: int = 0,
                 sentence_pool: int = 4):
        if not (0.0 <= neg_fraction <= 1.0 and 0.0 <= hard_negatives <= 1.0 and hard_pool >= 1):
            raise ConfigError(f"GroundingDataset: neg_fraction={neg_fraction} and hard_negatives={hard_negatives} "
                              f"must be in [0, 1], hard_pool={hard_pool} >= 1")
        if sentence_negatives < 0 or sentence_pool < max(sentence_negatives, 1):
            raise ConfigError(f"GroundingDataset: sentence_negatives={sentence_negatives} must be >= 0 and "
                              f"sentence_pool={sentence_pool} >= max(it, 1)")
        self.queries = [q for q in queries if q.vid in videos]
        self.missing = sorted({q.vid for q in queries if q.vid not in videos})
        self.videos, self.text, self.fps, self.proposals = videos, text, fps, proposals
        self.neg_fraction, self.seed, self.epoch = neg_fraction, seed, 0
        self.hard_negatives, self.hard_pool = hard_negatives, hard_pool
        self.embeddings = videos if embeddings is None else embeddings
        if hard_negatives > 0 and any(self.embeddings[q.vid].dtype == np.uint8 for q in self.queries):
            raise ConfigError("GroundingDataset: hard negatives are mined with stored frame embeddings; "
                              "pass embeddings= (vid -> (T, D) float32) when videos holds raw frames")
        self._windows = {vid: make_windows(len(e), fps, proposals) for vid, e in videos.items()}
        self._window_sim: dict[str, np.ndarray] = {}  #: qid -> (P,) best frame-sentence similarity per window
        self.sentence_negatives, self.sentence_pool = sentence_negatives, sentence_pool
        self._by_video: dict[str, list[int]] = {}  #: vid -> indices of its queries
        for i, q in enumerate(self.queries):
            self._by_video.setdefault(q.vid, []).append(i)
        self._sentence_order: dict[int, np.ndarray] = {}  #: item -> same-video items, most similar first
        #: item -> its moments as inclusive frame ranges (fixed: computed once, not per draw)
        self._moments = [[moment_frames(s, e, fps, len(videos[q.vid])) for s, e in q.windows] for q in self.queries]

    def set_epoch(self, epoch: int) -> None:
        """Re-draw windows and frame pairs each epoch, deterministically."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.queries)

    def __getitem__(self, i: int) -> dict:
        q = self.queries[i]
        rng = np.random.default_rng((self.seed, self.epoch, i))
        emb, windows = self.videos[q.vid], self._windows[q.vid]
        moments = self._moments[i]
        positive = bool(moments) and rng.random() >= self.neg_fraction
        if positive:
            a, b = moments[int(rng.integers(len(moments)))]
            inside = [w for w in range(len(windows)) if windows[w, 0] <= a and b < windows[w, 1]]
            if not inside:
                overlap = np.minimum(windows[:, 1] - 1, b) - np.maximum(windows[:, 0], a)
                inside = [int(np.argmax(overlap))]
            w = inside[int(rng.integers(len(inside)))]
        else:
            free = [w for w in range(len(windows))
                    if all(windows[w, 1] <= ma or windows[w, 0] > mb for ma, mb in moments)]
            pool = free or list(range(len(windows)))
            if self.hard_negatives > 0 and rng.random() < self.hard_negatives:
                pool = self._hardest(q, windows, pool)
            w = pool[int(rng.integers(len(pool)))]
        ws, we = int(windows[w, 0]), int(windows[w, 1])
        L = we - ws
        item = {"video": emb[ws:we], "qid": q.qid, "vid": q.vid, "window_start": ws, "present": float(positive)}
        t = self.text[q.qid]
        item.update(text=t.tokens, text_mask=t.mask, pooled=t.pooled)
        if positive:
            la, lb = max(a - ws, 0), min(b - ws, L - 1)
            item["span_cw"] = np.array([[(la + lb + 1) / 2 / L, (lb - la + 1) / L]], np.float32)
            item["start_idx"], item["end_idx"] = la, lb
            item["pos_idx"] = int(rng.integers(la, lb + 1))
            outside = [j for j in range(L) if j < la or j > lb]
            item["neg_idx"] = int(outside[int(rng.integers(len(outside)))]) if outside else 0
            item["saliency_valid"] = bool(outside)
            if self.sentence_negatives:
                item["neg_texts"] = [(self.text[self.queries[j].qid].tokens, self.text[self.queries[j].qid].mask)
                                     for j in self._negative_sentences(i, ws, we, rng)]
        else:
            item.update(span_cw=np.zeros((0, 2), np.float32), start_idx=0, end_idx=0, pos_idx=0, neg_idx=0,
                        saliency_valid=False)
        return item

    def _negative_sentences(self, i: int, ws: int, we: int, rng: np.random.Generator) -> list[int]:
        """Up to K same-video items whose sentence differs from item ``i``'s and has no moment in
        frames ``[ws, we)``, drawn from the ``sentence_pool`` most similar such sentences."""
        q = self.queries[i]
        order = self._sentence_order.get(i)
        if order is None:  # once per item: the same for every epoch
            others = np.array([j for j in self._by_video[q.vid] if self.queries[j].query != q.query], np.int64)
            sims = np.array([float(self.text[self.queries[j].qid].pooled @ self.text[q.qid].pooled)
                             for j in others])
            order = self._sentence_order[i] = others[np.argsort(-sims, kind="stable")] if len(others) else others
        fits = []
        for j in order:
            if all(b < ws or a >= we for a, b in self._moments[int(j)]):
                fits.append(int(j))
                if len(fits) == self.sentence_pool:
                    break
        take = min(self.sentence_negatives, len(fits))
        return [fits[int(k)] for k in rng.choice(len(fits), size=take, replace=False)] if take else []

    def _hardest(self, q: MomentQuery, windows: np.ndarray, pool: list[int]) -> list[int]:
        """The ``hard_pool`` windows of ``pool`` whose best frame is most similar to ``q``'s sentence."""
        best = self._window_sim.get(q.qid)
        if best is None:  # once per query: the same for every epoch
            sim = self.embeddings[q.vid] @ self.text[q.qid].pooled  # (T,)
            best = self._window_sim[q.qid] = np.array([sim[a:b].max() for a, b in windows])  # (P,)
        order = np.argsort(-best[pool], kind="stable")[: self.hard_pool]
        return [pool[int(i)] for i in order]


def collate(items: list[dict]) -> dict:
    """Pad windows and texts to the batch maximum; masks are True at valid positions.

    An item's negative sentences (``neg_texts``, see :class:`GroundingDataset`) become extra rows
    after the B items: the item's window with that sentence, "not present", no span. Then
    ``targets["neg_of"]`` (N,) long gives, for each of the N extra rows, the row of its item.
    """
    extra, neg_of = [], []
    for i, it in enumerate(items):
        for tokens, mask in it.get("neg_texts", ()):
            extra.append({**it, "text": tokens, "text_mask": mask, "present": 0.0,
                          "span_cw": np.zeros((0, 2), np.float32), "start_idx": 0, "end_idx": 0, "pos_idx": 0,
                          "neg_idx": 0, "saliency_valid": False})
            neg_of.append(i)
    batch = _collate_rows(items + extra)
    if extra:
        batch["targets"]["neg_of"] = torch.tensor(neg_of, dtype=torch.long)
    return batch


def _collate_rows(items: list[dict]) -> dict:
    B = len(items)
    T = max(len(it["video"]) for it in items)
    L = max(len(it["text"]) for it in items)
    Dt = items[0]["text"].shape[1]
    frames = items[0]["video"].dtype == np.uint8  # LoRA mode: raw frames (T, S, S, 3), not embeddings
    video = torch.zeros((B, T) + items[0]["video"].shape[1:], dtype=torch.uint8 if frames else torch.float32)
    vmask = torch.zeros(B, T, dtype=torch.bool)
    text = torch.zeros(B, L, Dt)
    tmask = torch.zeros(B, L, dtype=torch.bool)
    for i, it in enumerate(items):
        n, m = len(it["video"]), len(it["text"])
        video[i, :n] = torch.as_tensor(np.array(it["video"]))
        vmask[i, :n] = True
        text[i, :m] = torch.from_numpy(np.asarray(it["text"], np.float32))
        tmask[i, :m] = torch.from_numpy(np.asarray(it["text_mask"], bool))
    long = lambda k: torch.tensor([it[k] for it in items], dtype=torch.long)
    return {
        "video": video, "video_mask": vmask, "text": text, "text_mask": tmask,
        "pooled": torch.from_numpy(np.stack([it["pooled"] for it in items]).astype(np.float32)),
        "targets": {
            "span_labels": [{"spans": torch.from_numpy(it["span_cw"])} for it in items],
            "start_idx": long("start_idx"), "end_idx": long("end_idx"),
            "pos_idx": long("pos_idx"), "neg_idx": long("neg_idx"),
            "saliency_valid": torch.tensor([it["saliency_valid"] for it in items]),
            "present": torch.tensor([it["present"] for it in items], dtype=torch.float32),
        },
        "qid": [it["qid"] for it in items],
    }


@dataclass(frozen=True)
class Neighbours:
    """Each eligible item's nearest eligible items by pooled sentence embedding (``lookalike_neighbours``)."""

    items: np.ndarray  #: (M,) int, the eligible items
    order: np.ndarray  #: (M, k) int, item indices, nearest first (an item's own index usually first)


def lookalike_neighbours(pooled: np.ndarray, eligible: np.ndarray, k: int = 32,
                         chunk_bytes: int = 1 << 28) -> Neighbours:
    """The ``k + 1`` nearest eligible items (cosine of pooled embeddings) of every eligible item.

    Computed once per training run, in row chunks of at most ``chunk_bytes`` of similarities, so a
    large annotation set (MAD's 280k queries) never holds an (M, M) matrix.

    Args:
        pooled: (N, D) pooled sentence embeddings, one per dataset item.
        eligible: (N,) bool, the items that may join look-alike groups.
    """
    items = np.flatnonzero(eligible)
    p = pooled[items].astype(np.float32)
    p /= np.linalg.norm(p, axis=1, keepdims=True).clip(1e-12)
    kk = min(k + 1, len(items))
    order = np.empty((len(items), kk), np.int64)
    rows = max(1, chunk_bytes // (4 * max(len(items), 1)))
    for r in range(0, len(items), rows):
        sim = p[r:r + rows] @ p.T  # (rows, M)
        top = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
        by_sim = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1, kind="stable")
        order[r:r + rows] = np.take_along_axis(top, by_sim, axis=1)
    return Neighbours(items, items[order])


def lookalike_batches(neighbours: Neighbours, sentences: list[str], batch_size: int, group: int,
                      share: float, rng: np.random.Generator) -> list[list[int]]:
    """One epoch's batches, where a share of the retrieval groups gather look-alike sentences.

    In-batch negatives drawn at random almost never share a shape and a colour, so the
    retrieval token learns to tell "a red circle" from "a blue square" but never "moving
    left" from "moving right" (the text tower's pooled embeddings of those two have cosine
    0.997 on the demo backbone). A look-alike group starts from a random anchor query and
    adds the ``group - 1`` nearest queries (``neighbours``) with another sentence (a
    same-sentence pair is masked out of the contrastive loss anyway, see
    ``train.same_sentence``); the rest of the groups are drawn at random, as before. Each
    query is used once per epoch.

    Args:
        neighbours: the eligible items (those that can be positives: they have a moment) and
            their nearest ones; only they join look-alike groups.
        sentences: N sentences, one per dataset item (equal strings = the same sentence).
        batch_size: items per batch, a multiple of ``group``.
        group: positives per retrieval-contrastive group (``TrainConfig.retrieval_group``).
        share: fraction of the groups built as look-alike groups, in [0, 1].
        rng: the epoch's generator.

    Returns:
        Batches of item indices; consecutive blocks of ``group`` items form the groups.
    """
    N = len(sentences)
    if batch_size % group:
        raise ConfigError(f"look-alike groups need batch_size ({batch_size}) to be a multiple of the "
                          f"retrieval group ({group})")
    unused = np.ones(N, bool)
    blocks: list[list[int]] = []
    n_lookalike = int(round(share * N / group))
    if n_lookalike and len(neighbours.items) >= group:
        for a in rng.permutation(len(neighbours.items)):
            if len(blocks) >= n_lookalike:
                break
            anchor = int(neighbours.items[a])
            if not unused[anchor]:
                continue
            block, seen = [anchor], {sentences[anchor]}
            for j in neighbours.order[a]:
                if len(block) == group:
                    break
                if unused[j] and sentences[j] not in seen:
                    block.append(int(j))
                    seen.add(sentences[j])
            if len(block) == group:
                unused[block] = False
                blocks.append(block)
    rest = rng.permutation(np.flatnonzero(unused)).tolist()
    blocks += [rest[i:i + group] for i in range(0, len(rest) - len(rest) % group, group)]
    flat = [i for b in (blocks[k] for k in rng.permutation(len(blocks))) for i in b]
    flat += rest[len(rest) - len(rest) % group:]  # the short block last, so every other stays aligned
    return [flat[i:i + batch_size] for i in range(0, len(flat), batch_size)]
