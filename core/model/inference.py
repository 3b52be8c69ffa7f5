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

from core.model.grounder import GroundingModel
from core.model.span_head import decode_best_span
from core.model.span_ops import cw_to_xx
from core.spans import nms


WINDOW_SCORES = ("retrieval", "retrieval_confidence")


@dataclass(frozen=True)
class Grounding:
    spans: np.ndarray  #: float64 (N, 2) [start_sec, end_sec], best first
    scores: np.ndarray  #: float64 (N,)
    window_rank: np.ndarray  #: int64 (P,) proposal indices by descending σ(r)
    window_scores: np.ndarray  #: float64 (P,) σ(r) (or σ(r)·σ(c)) per proposal (in proposal order)
    found_prob: float


@torch.no_grad()
def ground(model: GroundingModel, frames: np.ndarray, windows: np.ndarray, text: np.ndarray,
           text_mask: np.ndarray, fps: float, top_windows: int = 5, nms_iou: float = 0.5,
           max_spans: int = 10, batch_windows: int = 64, window_score: str = "retrieval") -> Grounding:
    """Args:
        frames: float32 (T, D) a video's frame embeddings; windows: int64 (P, 2) frame ranges.
        text: float32 (L, Dt) query word states; text_mask: bool (L,).
        window_score: "retrieval" (RGNet: σ(r)) or "retrieval_confidence" (σ(r)·σ(c)).
    """
    if window_score not in WINDOW_SCORES:
        raise ValueError(f"window_score={window_score!r}; allowed: {', '.join(WINDOW_SCORES)}")
    model.eval()
    dev = next(model.parameters()).device
    P = len(windows)
    Lw = int((windows[:, 1] - windows[:, 0]).max())
    r_all, outs = [], []
    for s in range(0, P, batch_windows):
        ws = windows[s : s + batch_windows]
        B = len(ws)
        video = torch.zeros(B, Lw, frames.shape[1], device=dev)
        vmask = torch.zeros(B, Lw, dtype=torch.bool, device=dev)
        for i, (a, b) in enumerate(ws):
            video[i, : b - a] = torch.from_numpy(frames[a:b]).to(dev)
            vmask[i, : b - a] = True
        t = torch.from_numpy(np.asarray(text, np.float32)).to(dev)[None].expand(B, -1, -1)
        tm = torch.from_numpy(np.asarray(text_mask, bool)).to(dev)[None].expand(B, -1)
        out = model(video, vmask, t, tm)
        r_b = torch.sigmoid(out["retrieval_logit"].float())
        if window_score == "retrieval_confidence":
            r_b = r_b * torch.sigmoid(out["confidence_logit"].float())
        r_all.append(r_b)
        outs.append((out, vmask))
    r = torch.cat(r_all).cpu().numpy().astype(np.float64)  # (P,)
    rank = np.argsort(-r, kind="stable")
    keep = set(rank[:top_windows].tolist())
    spans, scores, found = [], [], 0.0
    for chunk, (out, vmask) in enumerate(outs):
        p_fg = out["pred_logits"].float().softmax(-1)[..., 0]  # (B, Q)
        xx = cw_to_xx(out["pred_spans"].float()).clamp(0, 1)  # (B, Q, 2), window fractions
        st, en, _ = decode_best_span(out["start_logits"], out["end_logits"], vmask)
        p_st = out["start_logits"].float().softmax(-1).gather(1, st[:, None])[:, 0]
        p_en = out["end_logits"].float().softmax(-1).gather(1, en[:, None])[:, 0]
        conf = torch.sigmoid(out["confidence_logit"].float())
        for i in range(len(vmask)):
            w = chunk * batch_windows + i
            if w not in keep:
                continue
            a, b = windows[w]
            n = b - a
            found = max(found, float(conf[i]))
            for q in range(xx.shape[1]):
                s0, e0 = float(xx[i, q, 0]) * n, float(xx[i, q, 1]) * n
                if e0 - s0 > 1e-6:
                    spans.append(((a + s0) / fps, (a + e0) / fps))
                    scores.append(float(p_fg[i, q]) * r[w])
            spans.append(((a + int(st[i])) / fps, (a + int(en[i]) + 1) / fps))
            scores.append(r[w] * float(torch.sqrt(p_st[i] * p_en[i])))
    spans_a, scores_a = np.asarray(spans, np.float64).reshape(-1, 2), np.asarray(scores, np.float64)
    kept = nms(spans_a, scores_a, nms_iou)[:max_spans]
    return Grounding(spans_a[kept], scores_a[kept], rank, r, found)
