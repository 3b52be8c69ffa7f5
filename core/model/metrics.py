"""Moment-retrieval evaluation metrics (numpy only).

- :func:`qvhighlights_metrics`: the official QVHighlights moment-retrieval
  evaluation (moment_detr ``standalone_eval/eval.py``): R1 and mAP over IoU
  0.5:0.05:0.95, overall and per GT-length bucket, percentages to 2 decimals.
- :func:`recall_at_k`: R{k}@{IoU} for single-video grounding (Charades-STA,
  Ego4D-NLQ, MAD).
- :func:`proposal_recall_at_k`: RGNet's proposal (window) retrieval R@k.
- :func:`corpus_recall_at_k`: video *and* span right among the top k over a
  whole index.
- :func:`not_found_precision_recall`: quality of the "no such moment" answer.
- :func:`write_submission` / :func:`read_submission`: QVHighlights
  submission jsonl.

All spans are ``[start_sec, end_sec]``; IoU is :func:`core.spans.temporal_iou`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError
from core.model.annotations import iter_jsonl
from core.spans import temporal_iou

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

SUBMISSION_FIELDS = ("qid", "query", "vid", "pred_relevant_windows")


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
        {f"MR-{name}-mAP@{_fmt(t)}": _pct(float(v)) for t, v in zip(thr, map_t, strict=True)}
    )
    out.update({f"MR-{name}-R1@{_fmt(t)}": _pct(float(v)) for t, v in zip(thr, r1_t, strict=True)})
    return out


def _qvh_predictions(preds: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """``{qid: (P, 3) [start, end, score]}`` in the submitted order."""
    out: dict[str, np.ndarray] = {}
    for i, row in enumerate(preds):
        where = f"prediction {i}"
        qid = str(_require(row, "qid", where))
        if qid in out:
            raise ConfigError(f"{where}: qid {qid} is predicted twice; give one row per query")
        out[qid] = _windows_array(
            _require(row, "pred_relevant_windows", where), 3, f"{where} (qid {qid})"
        )
    return out


def _qvh_ground_truth(gts: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """``{qid: (G, 2) [start, end]}``."""
    out: dict[str, np.ndarray] = {}
    for i, row in enumerate(gts):
        where = f"ground truth {i}"
        qid = str(_require(row, "qid", where))
        if qid in out:
            raise ConfigError(f"{where}: qid {qid} appears twice in the ground truth")
        out[qid] = _windows_array(row.get("relevant_windows") or [], 2, f"{where} (qid {qid})")
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


def _windows_array(windows: Any, width: int, where: str) -> np.ndarray:
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


def _require(row: Any, key: str, where: str) -> Any:
    if not isinstance(row, dict) or key not in row:
        raise ConfigError(f"{where}: missing field {key!r}")
    return row[key]


def _pct(fraction: float) -> float:
    """Fraction -> percentage with 2 decimals (the official ``float(f"{100 * v:.2f}")``)."""
    return fraction if math.isnan(fraction) else round(100.0 * fraction, 2)


def _fmt(x: float) -> str:
    """Threshold as the official key writes it: 0.5 -> "0.5", 0.55 -> "0.55"."""
    return f"{x:g}"


# --------------------------------------------------------------------------- recall@k


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
            out[f"R{k}@{_fmt(t)}"] = float(hits.mean()) if len(top) else math.nan
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


# --------------------------------------------------------------------------- submission files


def write_submission(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write a QVHighlights submission jsonl.

    Each row needs ``qid``, ``query``, ``vid`` and ``pred_relevant_windows``
    (``[[start, end, score], ...]``, best first); other keys (e.g.
    ``pred_saliency_scores``) are written as given. numpy scalars and arrays
    are converted to plain JSON numbers and lists.
    """
    path = Path(path)
    lines = [
        json.dumps(_submission_row(row, f"row {i}"), default=_json_default)
        for i, row in enumerate(rows)
    ]
    try:
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot write submission ({e.strerror})") from e


def read_submission(path: str | Path) -> list[dict[str, Any]]:
    """Read a QVHighlights submission jsonl written by :func:`write_submission` (or anyone).

    Returns the rows as parsed; raises ConfigError with ``file:line`` when a
    line is not JSON, lacks a required field or has malformed windows.
    """
    path = Path(path)
    return [_submission_row(obj, f"{path}:{line_no}") for line_no, obj in iter_jsonl(path)]


def _submission_row(row: Any, where: str) -> dict[str, Any]:
    """Validate one submission row; windows become plain ``[[s, e, score], ...]`` lists."""
    for key in SUBMISSION_FIELDS:
        _require(row, key, where)
    out = dict(row)
    out["pred_relevant_windows"] = _windows_array(row["pred_relevant_windows"], 3, where).tolist()
    return out


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
