"""Training samples: one (query, proposal window) pair per item, cut from stored frame embeddings.

A positive item takes a window that holds the ground-truth moment (fully, when
one does; else the one overlapping it most) and labels the span inside it; a
negative item (``neg_fraction`` of the items, and every query without a moment —
the "not found" queries) takes a window away from any moment, labelled
"not present" for the confidence head and all-background for the decoder.

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

from groundzero.data.annotations import MomentQuery
from groundzero.data.proposals import ProposalConfig, make_windows
from groundzero.errors import ConfigError


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
        seed: with the epoch and the item index, seeds every draw (windows, frame pairs).
    """

    def __init__(self, queries: list[MomentQuery], videos: dict[str, np.ndarray], text: dict[str, TextFeatures],
                 fps: float, proposals: ProposalConfig, neg_fraction: float = 0.2, seed: int = 0):
        if not 0.0 <= neg_fraction <= 1.0:
            raise ConfigError(f"GroundingDataset: neg_fraction={neg_fraction} must be in [0, 1]")
        self.queries = [q for q in queries if q.vid in videos]
        self.missing = sorted({q.vid for q in queries if q.vid not in videos})
        self.videos, self.text, self.fps, self.proposals = videos, text, fps, proposals
        self.neg_fraction, self.seed, self.epoch = neg_fraction, seed, 0
        self._windows = {vid: make_windows(len(e), fps, proposals) for vid, e in videos.items()}
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
        else:
            item.update(span_cw=np.zeros((0, 2), np.float32), start_idx=0, end_idx=0, pos_idx=0, neg_idx=0,
                        saliency_valid=False)
        return item


def collate(items: list[dict]) -> dict:
    """Pad windows and texts to the batch maximum; masks are True at valid positions.

    Returns ``video`` (B, T, D) float32 (LoRA mode: (B, T, S, S, 3) uint8 frames), ``video_mask``
    (B, T), ``text`` (B, L, Dt), ``text_mask`` (B, L), ``pooled`` (B, D), ``qid`` (B,) and the
    criterion's ``targets`` (:class:`~groundzero.model.losses.SetCriterion`).
    """
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
