"""Calibrating the demo head on the synthetic val split: the clip check's weight and the
"not found" threshold. Used by :mod:`groundzero.synthetic.build`; never on the test split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from groundzero.data.annotations import MomentQuery
from groundzero.data.spans import temporal_iou
from groundzero.errors import ConfigError
from groundzero.search.evaluate import indexed_truth
from groundzero.search.searcher import Searcher
from groundzero.synthetic.clip_check import ClipCheck, checked_scores


def calibrate_clip_weight(searcher: Searcher, queries: list[MomentQuery],
                          weights: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
                          ) -> tuple[float, dict[str, float]]:
    """The clip check's weight w (:class:`~groundzero.synthetic.clip_check.ClipCheck`), from a val split.

    Grounds every query that has a moment in its own indexed video with the head once
    (:meth:`Searcher.ground`, over all of the video's windows; the searcher must have no
    re-scorer yet), rescores its candidates with each w in ``weights`` (score · p_clip^w),
    and returns the w with the best within-video R1@0.5 (the smallest on a tie, so 0 unless
    the check helps). Needs a head and a backbone with a clip term.

    Returns ``(w, stats)``; stats maps ``"R1@0.5 w=..."`` to that weight's within-video
    R1@0.5 on these queries, plus ``n_queries``.
    """
    if searcher.head is None or searcher.rescorer is not None:
        raise ConfigError("calibrating the clip check needs a grounding head that has no re-scorer yet")
    check = ClipCheck(searcher.backbone, {"weight": 0.0})
    stems = {Path(r["rel_path"]).stem: seq for seq, r in searcher.videos.items()}
    fps = searcher.manifest.params.fps
    rows = []
    for q in (q for q in queries if q.vid in stems and q.windows):
        seq = stems[q.vid]
        hits = searcher.ground(q.query, {seq: searcher.proposal_ranges(seq)})[0].hits
        scores = np.array([h.score for h in hits], np.float64)
        if not hits:
            rows.append((scores, scores, np.zeros(0)))
            continue
        spans = np.array([[h.start_sec, h.end_sec] for h in hits])
        _, emb, _ = searcher.video_data(seq)
        _, match = check.rescore(searcher.backbone.embed_texts([q.query])[0], emb, spans, scores, fps)
        rows.append((scores, match, temporal_iou(spans, np.array(q.windows, np.float64)).max(axis=1)))
    if not rows:
        raise ConfigError("no query of the split has a moment in an indexed video: nothing to calibrate on")
    r1 = {w: float(np.mean([len(iou) > 0 and iou[np.argmax(checked_scores(sc, m, w))] >= 0.5
                            for sc, m, iou in rows])) for w in weights}
    best = max(weights, key=lambda w: (r1[w], -w))
    return float(best), {**{f"R1@0.5 w={w:g}": v for w, v in r1.items()}, "n_queries": float(len(rows))}


def calibrate_found_threshold(searcher: Searcher, queries: list[MomentQuery],
                              max_missed: float = 0.1) -> tuple[float, dict[str, float]]:
    """The "moment exists" threshold on ``SearchResult.found_prob``, from a validation split.

    Runs :meth:`Searcher.search` on every query whose video is indexed (a query counts as having
    a moment when it has one anywhere in the index, see :func:`indexed_truth`) and returns the
    largest threshold that answers "not found" for at most ``max_missed`` of the queries *with*
    a moment (midway between neighbouring values): "not found" hides a real answer behind a
    warning, so its false alarms are bounded first, and within that budget as many moment-less
    queries as possible are caught. (Maximising balanced accuracy instead can flag a large share of
    the real answers when the found-probability barely separates the two kinds.)
    Needs both kinds of queries (calibrate on a validation split, never on test).

    Returns ``(threshold, stats)``, stats on these queries: ``answers_flagged`` (share of queries
    with a moment answered "not found"), ``not_found_precision``, ``not_found_recall``,
    ``balanced_accuracy``, ``auc`` (of found_prob separating the two kinds), ``n_found``, ``n_not_found``.
    """
    stems = {Path(r["rel_path"]).stem for r in searcher.videos.values()}
    used = [q for q in queries if q.vid in stems]
    probs = np.array([searcher.search(q.query).found_prob for q in used], np.float64)
    has = np.array([bool(indexed_truth(q, stems)) for q in used], bool)
    return found_threshold_from(probs, has, max_missed)


def found_threshold_from(probs: np.ndarray, has: np.ndarray, max_missed: float = 0.1) -> tuple[float, dict[str, float]]:
    """The rule of :func:`calibrate_found_threshold` on found-probabilities (N,) and has-a-moment flags (N,) bool."""
    if not 0.0 <= max_missed < 1.0:
        raise ValueError(f"max_missed must be in [0, 1), got {max_missed}")
    if has.all() or not has.any():
        raise ValueError("calibration needs queries with and without a moment")
    pos = np.sort(probs[has])
    k = int(np.floor(max_missed * len(pos)))  # at most k answers may fall below the threshold
    t = float(pos[0] - 1e-6) if k == 0 else float((pos[k - 1] + pos[k]) / 2)
    if k and pos[k - 1] == pos[k]:  # a tie straddles the budget: stay under it
        t = float(pos[k - 1] - 1e-6)
    t = min(max(t, 0.0), 1.0)
    flagged = probs < t
    caught = int((flagged & ~has).sum())
    neg = probs[~has]
    auc = float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())
    return t, {"answers_flagged": float(flagged[has].mean()),
               "not_found_precision": caught / int(flagged.sum()) if flagged.any() else None,  # None: never said
               "not_found_recall": caught / int((~has).sum()),
               "balanced_accuracy": 0.5 * (float((~flagged[has]).mean()) + caught / int((~has).sum())),
               "auc": auc, "n_found": int(has.sum()), "n_not_found": int((~has).sum())}
