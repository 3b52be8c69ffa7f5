"""Recall at k and the "not found" answer's quality (numpy only).

- :func:`recall_at_k`: R{k}@{IoU} for single-video grounding (Charades-STA, Ego4D-NLQ, MAD).
- :func:`corpus_recall_at_k`: video *and* span right among the top k over a whole index.
- :func:`proposal_recall_at_k`: RGNet's proposal (window) retrieval R@k.
- :func:`not_found_precision_recall`: quality of the "no such moment" answer.

All spans are ``[start_sec, end_sec]``; IoU is :func:`groundzero.data.spans.temporal_iou`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from groundzero.data.metrics import format_threshold
from groundzero.data.spans import temporal_iou
from groundzero.errors import ConfigError


def recall_at_k(
    preds_ranked: list[list[tuple[float, float]]],
    gts: list[list[tuple[float, float]]],
    ks: Sequence[int] = (1, 5),
    ious: Sequence[float] = (0.3, 0.5, 0.7),
    strict: bool = False,
) -> dict[str, float]:
    """R{k}@{IoU} for single-video grounding.

    Args:
        preds_ranked: per query, predicted ``(start_sec, end_sec)`` best first;
            fewer than k (or none) is fine.
        gts: per query, GT ``(start_sec, end_sec)`` windows; queries with none
            are excluded.
        ks, ious: cut-offs and IoU thresholds.
        strict: count IoU > t instead of IoU >= t (the Ego4D-NLQ and MAD
            official scripts use >, see RGNET_NOTES §5).
    Returns:
        ``"R{k}@{iou}"`` as fractions in [0, 1] (nan when no query has GT) and
        ``"n"``, the number of queries evaluated.
    """
    _same_length(preds_ranked, gts)
    best = [
        _best_iou_by_rank(
            np.asarray(p, np.float64).reshape(-1, 2), np.asarray(g, np.float64).reshape(-1, 2)
        )
        for p, g in zip(preds_ranked, gts, strict=True)
        if len(g) > 0
    ]
    return _recall_table(best, ks, ious, strict)


def corpus_recall_at_k(
    ranked: list[list[tuple[str, float, float]]],
    gts: list[list[tuple[str, float, float]]],
    ks: Sequence[int] = (1, 5, 10),
    ious: Sequence[float] = (0.3, 0.5, 0.7),
    strict: bool = False,
) -> dict[str, float]:
    """Corpus-wide R{k}@{IoU}: the right video AND span among the top k.

    Args:
        ranked: per query, ``(video_id, start_sec, end_sec)`` over the whole
            index, best first.
        gts: per query, GT ``(video_id, start_sec, end_sec)``; queries with
            none are excluded.
        strict: IoU > t instead of >= t.
    Returns:
        ``"R{k}@{iou}"`` fractions (a hit needs equal video ids and IoU over
        the threshold with one of that video's GT windows) and ``"n"``.
    """
    _same_length(ranked, gts)
    best = [_best_corpus_iou_by_rank(r, g) for r, g in zip(ranked, gts, strict=True) if len(g) > 0]
    return _recall_table(best, ks, ious, strict)


def _best_iou_by_rank(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(P,) best IoU over GT windows among predictions 0..p (running max)."""
    if len(pred) == 0:
        return np.zeros(0)
    return np.maximum.accumulate(temporal_iou(pred, gt).max(axis=1))


def _best_corpus_iou_by_rank(
    ranked: list[tuple[str, float, float]], gt: list[tuple[str, float, float]]
) -> np.ndarray:
    """(P,) running max IoU where only same-video pairs count (-inf otherwise)."""
    if len(ranked) == 0:
        return np.zeros(0)
    iou = temporal_iou(
        np.array([r[1:] for r in ranked], np.float64), np.array([g[1:] for g in gt], np.float64)
    )
    same = np.array([[r[0] == g[0] for g in gt] for r in ranked])
    return np.maximum.accumulate(np.where(same, iou, -np.inf).max(axis=1))


def _recall_table(
    best_by_rank: list[np.ndarray], ks: Sequence[int], ious: Sequence[float], strict: bool
) -> dict[str, float]:
    """From each query's running-max IoU, the share of hits at each (k, IoU)."""
    out: dict[str, float] = {}
    for k in ks:
        top = np.array([b[min(k, len(b)) - 1] if len(b) else -np.inf for b in best_by_rank])
        for t in ious:
            hits = top > t if strict else top >= t
            out[f"R{k}@{format_threshold(t)}"] = float(hits.mean()) if len(top) else math.nan
    out["n"] = float(len(best_by_rank))
    return out


def proposal_recall_at_k(
    ranked_windows: list[list[int]], gt_windows: list[set[int]], ks: Sequence[int] = (1, 5, 10, 20)
) -> dict[str, float]:
    """RGNet's proposal-retrieval R@k (RGNET_NOTES §2).

    Args:
        ranked_windows: per query, proposal (window) indices best first.
        gt_windows: per query, the set of proposal indices that hold the GT
            moment; queries with an empty set are excluded.
    Returns:
        ``"R@{k}"``: share of queries whose top-k list holds any GT proposal
        (fraction; nan when no query is evaluated), and ``"n"``.
    """
    _same_length(ranked_windows, gt_windows)
    pairs = [
        (list(r), set(g)) for r, g in zip(ranked_windows, gt_windows, strict=True) if len(g) > 0
    ]
    out = {
        f"R@{k}": float(np.mean([not g.isdisjoint(r[:k]) for r, g in pairs])) if pairs else math.nan
        for k in ks
    }
    out["n"] = float(len(pairs))
    return out


def not_found_precision_recall(
    pred_found: list[bool], gt_has_moment: list[bool]
) -> dict[str, float]:
    """Precision and recall of the "not found" answer (positive class = no moment).

    Args:
        pred_found: per query, whether the system answered with a moment.
        gt_has_moment: per query, whether a GT moment exists.
    Returns:
        ``precision`` = correct "not found" / all "not found" answers,
        ``recall`` = correct "not found" / queries without a moment, ``f1``,
        and the counts ``n``, ``n_pred_not_found``, ``n_gt_not_found``.
        A ratio whose denominator is 0 is nan (e.g. precision when the system
        never answers "not found").
    """
    _same_length(pred_found, gt_has_moment)
    pred_nf = ~np.asarray(pred_found, dtype=bool)
    gt_nf = ~np.asarray(gt_has_moment, dtype=bool)
    tp = float(np.sum(pred_nf & gt_nf))
    precision = _ratio(tp, float(pred_nf.sum()))
    recall = _ratio(tp, float(gt_nf.sum()))
    return {
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "n": float(len(pred_nf)),
        "n_pred_not_found": float(pred_nf.sum()),
        "n_gt_not_found": float(gt_nf.sum()),
    }


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def _same_length(a: Sequence[Any], b: Sequence[Any]) -> None:
    if len(a) != len(b):
        raise ConfigError(
            f"predictions ({len(a)} queries) and ground truth ({len(b)}) must align one to one"
        )
