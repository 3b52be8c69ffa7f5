"""Moment-retrieval evaluation metrics (numpy only).

- :func:`qvhighlights_metrics`: the official QVHighlights moment-retrieval
  evaluation (moment_detr ``standalone_eval/eval.py``): R1 and mAP over IoU
  0.5:0.05:0.95, overall and per GT-length bucket, percentages to 2 decimals.

Recall at k (single-video, corpus-wide, proposals) and the "not found" answer's quality
are in :mod:`groundzero.data.recall`; submission files in :mod:`groundzero.data.submission`.

All spans are ``[start_sec, end_sec]``; IoU is :func:`groundzero.data.spans.temporal_iou`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from groundzero.data.spans import temporal_iou
from groundzero.errors import ConfigError

#: QVHighlights IoU thresholds 0.5:0.05:0.95, rounded like the official script.
QVH_IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
#: Only the first this-many predicted windows of a query count for mAP.
QVH_MAX_PRED_WINDOWS = 10
#: GT-length buckets ``(name, min_sec, max_sec)``, a window in ``(min, max]``.
#: The official script bounds "long" at 150 s (QVHighlights' longest video);
#: here it is open-ended, which is identical on QVHighlights.
QVH_LENGTH_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("short", 0.0, 10.0),
    ("middle", 10.0, 30.0),
    ("long", 30.0, math.inf),
)


# --------------------------------------------------------------------------- AP building blocks


def voc_average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC-2011 all-point interpolated AP.

    Args:
        precision, recall: (P,) values after each ranked prediction.
    Returns:
        Area under the precision-recall curve once precision is made monotone
        non-increasing from the right, summed where recall changes.

    >>> voc_average_precision(np.array([1.0, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0]))
    0.8333333333333333
    """
    mprec = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def greedy_true_positives(
    pred_spans: np.ndarray, gt_spans: np.ndarray, thresholds: Sequence[float]
) -> np.ndarray:
    """Greedy matching of score-ranked predictions to GT windows, per threshold.

    Each prediction, in order, takes the unmatched GT window of highest IoU
    among those with IoU >= threshold (ties: the later GT window, as the
    official ``argsort()[::-1]`` does); otherwise it is a false positive, so a
    duplicate of an already-matched window only counts once.

    Args:
        pred_spans: (P, 2) predictions, best first; gt_spans: (G, 2).
    Returns:
        (T, P) bool, True where prediction p is a true positive at threshold t.
    """
    n_pred, n_gt = len(pred_spans), len(gt_spans)
    tp = np.zeros((len(thresholds), n_pred), dtype=bool)
    if n_pred == 0 or n_gt == 0:
        return tp
    iou = temporal_iou(pred_spans, gt_spans)  # (P, G)
    taken = np.zeros((len(thresholds), n_gt), dtype=bool)
    for p in range(n_pred):
        order = np.argsort(iou[p], kind="stable")[::-1]
        for t, thr in enumerate(thresholds):
            for g in order:
                if iou[p, g] < thr:
                    break
                if not taken[t, g]:
                    taken[t, g] = tp[t, p] = True
                    break
    return tp


def query_average_precision(
    pred_windows: np.ndarray, gt_spans: np.ndarray, thresholds: Sequence[float]
) -> np.ndarray:
    """AP of one query's predictions at each IoU threshold.

    Args:
        pred_windows: (P, 3) ``[start, end, score]`` (already cut to the first
            10); they are stable-sorted by score, descending, here.
        gt_spans: (G, 2), G >= 1.
    Returns:
        (T,) AP in [0, 1]; all zeros when P == 0.
    """
    if len(pred_windows) == 0:
        return np.zeros(len(thresholds))
    ranked = pred_windows[np.argsort(-pred_windows[:, 2], kind="stable")]
    tp = greedy_true_positives(ranked[:, :2], gt_spans, thresholds)  # (T, P)
    cum_tp = np.cumsum(tp, axis=1)
    precision = cum_tp / np.arange(1, tp.shape[1] + 1)
    recall = cum_tp / len(gt_spans)
    return np.array(
        [voc_average_precision(precision[t], recall[t]) for t in range(len(thresholds))]
    )


def top1_iou(pred_windows: np.ndarray, gt_spans: np.ndarray) -> float:
    """IoU of the FIRST predicted window (the official top-1) with its best GT window.

    Args:
        pred_windows: (P, >=2), listed best first; gt_spans: (G, 2), G >= 1.
    Returns:
        Max IoU over GT windows; 0.0 when there is no prediction.
    """
    if len(pred_windows) == 0:
        return 0.0
    return float(temporal_iou(pred_windows[:1, :2], gt_spans).max())


# --------------------------------------------------------------------------- QVHighlights


def qvhighlights_metrics(
    preds: list[dict[str, Any]], gts: list[dict[str, Any]]
) -> dict[str, float]:
    """The official QVHighlights moment-retrieval metrics.

    Args:
        preds: ``{"qid", "pred_relevant_windows": [[start, end, score], ...]}``
            per query, windows listed by descending score (the first is the top-1).
        gts: ``{"qid", "relevant_windows": [[start, end], ...], ...}`` per query.
            The qid sets must be equal (compared as strings), as the official
            script asserts.
    Returns:
        Percentages rounded to 2 decimals, for bucket in full/short/middle/long
        and t in 0.5, 0.55, ..., 0.95:

        - ``MR-{bucket}-mAP``: mAP averaged over the thresholds,
        - ``MR-{bucket}-mAP@{t}``: mAP at one threshold,
        - ``MR-{bucket}-R1@{t}``: share of queries whose first window has IoU >= t
          with some GT window of the bucket.

        "full" uses every GT window; a length bucket keeps only its GT windows
        (length in (min, max], see :data:`QVH_LENGTH_BUCKETS`), drops queries
        with none, and keeps all predictions. A bucket with no query gives nan.

    Departures from the official script, outside its domain (it would crash or
    skip): a query with an empty prediction list counts as AP 0 and an R1
    miss; a GT query with no window is left out of every figure.
    """
    pred_by_qid = _qvh_predictions(preds)
    gt_by_qid = _qvh_ground_truth(gts)
    _check_same_qids(pred_by_qid, gt_by_qid)
    out: dict[str, float] = {}
    out.update(_qvh_bucket("full", pred_by_qid, gt_by_qid))
    lengths = {q: g[:, 1] - g[:, 0] for q, g in gt_by_qid.items()}
    for name, lo, hi in QVH_LENGTH_BUCKETS:
        bucket_gt = {q: g[(lengths[q] > lo) & (lengths[q] <= hi)] for q, g in gt_by_qid.items()}
        out.update(_qvh_bucket(name, pred_by_qid, bucket_gt))
    return out


def _qvh_bucket(
    name: str, pred_by_qid: dict[str, np.ndarray], gt_by_qid: dict[str, np.ndarray]
) -> dict[str, float]:
    """R1 and mAP figures for the queries that have at least one GT window."""
    qids = [q for q, g in gt_by_qid.items() if len(g) > 0]
    thr = QVH_IOU_THRESHOLDS
    if qids:
        ap = np.stack(
            [
                query_average_precision(pred_by_qid[q][:QVH_MAX_PRED_WINDOWS], gt_by_qid[q], thr)
                for q in qids
            ]
        )  # (Q, T)
        iou1 = np.array([top1_iou(pred_by_qid[q], gt_by_qid[q]) for q in qids])  # (Q,)
        map_t = ap.mean(axis=0)
        r1_t = np.array([np.mean(iou1 >= t) for t in thr])
    else:
        map_t = r1_t = np.full(len(thr), math.nan)
    out = {f"MR-{name}-mAP": _pct(float(np.mean(map_t)))}
    out.update(
        {f"MR-{name}-mAP@{format_threshold(t)}": _pct(float(v)) for t, v in zip(thr, map_t, strict=True)}
    )
    out.update({f"MR-{name}-R1@{format_threshold(t)}": _pct(float(v)) for t, v in zip(thr, r1_t, strict=True)})
    return out


def _qvh_predictions(preds: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """``{qid: (P, 3) [start, end, score]}`` in the submitted order."""
    out: dict[str, np.ndarray] = {}
    for i, row in enumerate(preds):
        where = f"prediction {i}"
        qid = str(require_field(row, "qid", where))
        if qid in out:
            raise ConfigError(f"{where}: qid {qid} is predicted twice; give one row per query")
        out[qid] = windows_array(
            require_field(row, "pred_relevant_windows", where), 3, f"{where} (qid {qid})"
        )
    return out


def _qvh_ground_truth(gts: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """``{qid: (G, 2) [start, end]}``."""
    out: dict[str, np.ndarray] = {}
    for i, row in enumerate(gts):
        where = f"ground truth {i}"
        qid = str(require_field(row, "qid", where))
        if qid in out:
            raise ConfigError(f"{where}: qid {qid} appears twice in the ground truth")
        out[qid] = windows_array(row.get("relevant_windows") or [], 2, f"{where} (qid {qid})")
    return out


def _check_same_qids(pred_by_qid: dict[str, Any], gt_by_qid: dict[str, Any]) -> None:
    missing = gt_by_qid.keys() - pred_by_qid.keys()
    extra = pred_by_qid.keys() - gt_by_qid.keys()
    if missing or extra:
        raise ConfigError(
            f"predictions and ground truth must cover the same queries: {len(missing)} GT qids "
            f"have no prediction (e.g. {sorted(missing)[:3]}), {len(extra)} predicted qids are "
            f"not in the ground truth (e.g. {sorted(extra)[:3]})"
        )


def windows_array(windows: Any, width: int, where: str) -> np.ndarray:
    """List of ``[start, end(, score)]`` -> (N, width) float64; ConfigError if malformed."""
    try:
        arr = np.asarray(windows, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{where}: windows must be a list of [start, end{', score' * (width == 3)}]"
        ) from None
    if arr.size == 0:
        return np.zeros((0, width))
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ConfigError(f"{where}: windows must have {width} numbers each, got shape {arr.shape}")
    if not np.isfinite(arr).all() or (arr[:, 1] < arr[:, 0]).any():
        raise ConfigError(f"{where}: windows must be finite with start <= end")
    return arr


def require_field(row: Any, key: str, where: str) -> Any:
    if not isinstance(row, dict) or key not in row:
        raise ConfigError(f"{where}: missing field {key!r}")
    return row[key]


def _pct(fraction: float) -> float:
    """Fraction -> percentage with 2 decimals (the official ``float(f"{100 * v:.2f}")``)."""
    return fraction if math.isnan(fraction) else round(100.0 * fraction, 2)


def format_threshold(x: float) -> str:
    """Threshold as the official key writes it: 0.5 -> "0.5", 0.55 -> "0.55"."""
    return f"{x:g}"
