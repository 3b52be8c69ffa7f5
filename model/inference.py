"""Grounding one query inside one video with a trained model (RGNet §3.3-3.4, notes §3 merge).

1. every proposal window of the video goes through the model with the query;
2. windows are ranked by σ(retrieval logit) and the top ``top_windows`` kept;
3. each kept window yields its decoder's Q spans, scored p_fg · σ(r) (RGNet's proposal
   score), and the span head's best start/end pair, scored σ(r) · sqrt(p_start · p_end);
4. spans go back to seconds and are merged with temporal NMS (IoU > 0.5 suppressed).

Decision (notes §9, point 5): we keep RGNet's proposal score p_fg · σ(r) and NMS 0.5 but
drop CONE's top-3 matching score and its min-max fusion — with one backbone for frames
and text, the retrieval token already reads the matching, and min-max normalisation
makes scores incomparable across queries, which a corpus-wide ranking needs.
``found_prob`` is the largest σ(confidence logit) over the kept windows.

Decision (GroundZero, ``window_score="retrieval_confidence"``): RGNet ranks windows by σ(r)
alone, and r is trained contrastively against *other videos'* windows in the batch; the
confidence head is trained on windows of the *same* video with and without the moment,
exactly the distinction within-video ranking needs. With this option a window's score
is σ(r)·σ(c) and replaces σ(r) in the span scores above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from groundzero.data.spans import nms
from groundzero.model.grounder import GroundingModel
from groundzero.model.span_head import decode_best_span
from groundzero.model.span_ops import cw_to_xx

WINDOW_SCORES = ("retrieval", "retrieval_confidence")


@dataclass(frozen=True)
class Grounding:
    spans: np.ndarray  #: float64 (N, 2) [start_sec, end_sec], best first
    scores: np.ndarray  #: float64 (N,)
    window_rank: np.ndarray  #: int64 (P,) proposal indices by descending σ(r)
    window_scores: np.ndarray  #: float64 (P,) σ(r) (or σ(r)·σ(c)) per proposal (in proposal order)
    found_prob: float


@dataclass(frozen=True)
class WindowOutputs:
    """The model's outputs for P windows of one query, on the CPU (see :func:`forward_windows`)."""

    score: np.ndarray  #: float64 (P,) σ(r), or σ(r)·σ(c) with window_score="retrieval_confidence"
    confidence: np.ndarray  #: float64 (P,) σ(confidence logit)
    p_fg: np.ndarray  #: float64 (P, Q) decoder queries' foreground probability
    spans_xx: np.ndarray  #: float64 (P, Q, 2) decoder spans, [start, end] as fractions of the window
    best: np.ndarray  #: int64 (P, 2) the span head's best (start, end) frame, inclusive, within the window
    best_prob: np.ndarray  #: float64 (P,) sqrt(p_start · p_end) of that pair

    def take(self, idx: slice) -> WindowOutputs:
        return WindowOutputs(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


@torch.no_grad()
def forward_windows(model: GroundingModel, frames: list[np.ndarray], windows: list[np.ndarray],
                    text: np.ndarray, text_mask: np.ndarray, batch_windows: int = 64,
                    window_score: str = "retrieval") -> WindowOutputs:
    """Every window of every video through the model with one query, ``batch_windows`` at a time.

    Windows of several videos share batches (a search's shortlist spans many videos, each with
    a few windows): one forward pass per batch, not per video. Padding is masked, so a window's
    outputs do not depend on what it is batched with.

    Args:
        frames: per video, float32 (T_v, D) frame embeddings; windows: per video, int64 (P_v, 2)
            frame ranges into it. text: float32 (L, Dt) word states; text_mask: bool (L,).
    Returns: outputs of the P = sum P_v windows, video by video in the given order.
    """
    if window_score not in WINDOW_SCORES:
        raise ValueError(f"window_score={window_score!r}; allowed: {', '.join(WINDOW_SCORES)}")
    model.eval()
    dev = next(model.parameters()).device
    items = [(f, a, b) for f, ws in zip(frames, windows) for a, b in np.asarray(ws, np.int64).reshape(-1, 2)]
    t_all = torch.from_numpy(np.asarray(text, np.float32)).to(dev)[None]
    tm_all = torch.from_numpy(np.asarray(text_mask, bool)).to(dev)[None]
    parts: list[dict[str, np.ndarray]] = []
    for s in range(0, len(items), batch_windows):
        chunk = items[s : s + batch_windows]
        B, Lw = len(chunk), max(int(b - a) for _, a, b in chunk)
        video = torch.zeros(B, Lw, chunk[0][0].shape[1], device=dev)
        vmask = torch.zeros(B, Lw, dtype=torch.bool, device=dev)
        for i, (f, a, b) in enumerate(chunk):
            video[i, : b - a] = torch.from_numpy(np.ascontiguousarray(f[a:b])).to(dev)
            vmask[i, : b - a] = True
        out = model(video, vmask, t_all.expand(B, -1, -1), tm_all.expand(B, -1))
        r = torch.sigmoid(out["retrieval_logit"].float())
        conf = torch.sigmoid(out["confidence_logit"].float())
        st, en, _ = decode_best_span(out["start_logits"], out["end_logits"], vmask)
        p_st = out["start_logits"].float().softmax(-1).gather(1, st[:, None])[:, 0]
        p_en = out["end_logits"].float().softmax(-1).gather(1, en[:, None])[:, 0]
        parts.append({
            "score": r * conf if window_score == "retrieval_confidence" else r,
            "confidence": conf,
            "p_fg": out["pred_logits"].float().softmax(-1)[..., 0],  # (B, Q)
            "spans_xx": cw_to_xx(out["pred_spans"].float()).clamp(0, 1),  # (B, Q, 2)
            "best": torch.stack([st, en], 1),
            "best_prob": torch.sqrt(p_st * p_en),
        })
    if not parts:
        raise ValueError("no windows to ground in")
    cat = {k: torch.cat([p[k] for p in parts]).cpu().numpy() for k in parts[0]}
    return WindowOutputs(**{k: v.astype(np.int64 if k == "best" else np.float64) for k, v in cat.items()})


def decode_windows(out: WindowOutputs, windows: np.ndarray, fps: float, top_windows: int = 5,
                   nms_iou: float = 0.5, max_spans: int = 10) -> Grounding:
    """Steps 2-4 of the module docstring for one video's windows (P, 2) and their outputs."""
    r = out.score
    rank = np.argsort(-r, kind="stable")
    spans, scores = [], []
    for w in rank[:top_windows]:
        a, b = (int(x) for x in windows[w])
        n = b - a
        for q in range(out.spans_xx.shape[1]):
            s0, e0 = out.spans_xx[w, q, 0] * n, out.spans_xx[w, q, 1] * n
            if e0 - s0 > 1e-6:
                spans.append(((a + s0) / fps, (a + e0) / fps))
                scores.append(out.p_fg[w, q] * r[w])
        spans.append(((a + int(out.best[w, 0])) / fps, (a + int(out.best[w, 1]) + 1) / fps))
        scores.append(r[w] * out.best_prob[w])
    found = float(out.confidence[rank[:top_windows]].max()) if len(rank) else 0.0
    spans_a, scores_a = np.asarray(spans, np.float64).reshape(-1, 2), np.asarray(scores, np.float64)
    kept = nms(spans_a, scores_a, nms_iou)[:max_spans]
    return Grounding(spans_a[kept], scores_a[kept], rank, r, found)


def ground(model: GroundingModel, frames: np.ndarray, windows: np.ndarray, text: np.ndarray,
           text_mask: np.ndarray, fps: float, top_windows: int = 5, nms_iou: float = 0.5,
           max_spans: int = 10, batch_windows: int = 64, window_score: str = "retrieval") -> Grounding:
    """Args:
        frames: float32 (T, D) a video's frame embeddings; windows: int64 (P, 2) frame ranges.
        text: float32 (L, Dt) query word states; text_mask: bool (L,).
        window_score: "retrieval" (RGNet: σ(r)) or "retrieval_confidence" (σ(r)·σ(c)).
    """
    return ground_many(model, [(frames, windows)], text, text_mask, fps, top_windows, nms_iou, max_spans,
                       batch_windows, window_score)[0]


def ground_many(model: GroundingModel, videos: list[tuple[np.ndarray, np.ndarray]], text: np.ndarray,
                text_mask: np.ndarray, fps: float, top_windows: int = 5, nms_iou: float = 0.5,
                max_spans: int = 10, batch_windows: int = 64, window_score: str = "retrieval") -> list[Grounding]:
    """:func:`ground` in each of several videos, their windows batched together.

    Args:
        videos: per video (frame embeddings float32 (T_v, D), windows int64 (P_v, 2)).
    Returns: one :class:`Grounding` per video, in order.
    """
    out = forward_windows(model, [f for f, _ in videos], [w for _, w in videos], text, text_mask,
                          batch_windows, window_score)
    groundings, at = [], 0
    for _, w in videos:
        n = len(w)
        groundings.append(decode_windows(out.take(slice(at, at + n)), np.asarray(w), fps, top_windows, nms_iou,
                                         max_spans))
        at += n
    return groundings
