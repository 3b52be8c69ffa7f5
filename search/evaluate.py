"""Evaluate search on an index against an annotation file: within-video and corpus-wide.

For every annotated query whose video is in the index:

* **within-video** (the benchmarks' protocol): ground the query in its own video —
  with a head, RGNet's procedure over all of the video's proposals
  (:func:`core.model.inference.ground`); zero-shot, the similarity-curve grounder over
  the whole video — giving a ranked span list (QVHighlights metrics, R@k@IoU) and,
  with a head, the proposal ranking (RGNet's proposal R@k, §4.2);
* **corpus-wide**: :meth:`Searcher.search` over the whole index; a hit needs a right
  video *and* span. The truth is every moment of the indexed videos the sentence
  describes (:meth:`MomentQuery.corpus_truth`: the annotation's ``corpus_windows``
  where it has them, as ``groundzero synth`` writes; else the query's own windows);
* **not found**: queries with no moment anywhere in the indexed videos measure the
  precision/recall of the corpus-wide "not found" answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import ConfigError
from core.model.annotations import MomentQuery
from core.model.metrics import (
    corpus_recall_at_k,
    not_found_precision_recall,
    proposal_recall_at_k,
    qvhighlights_metrics,
    recall_at_k,
)
from core.proposals import make_windows
from core.spans import temporal_iou
from search.ground_zeroshot import ground_region
from search.searcher import Searcher
from search.verify import clip_match, span_frames, verified_scores


@dataclass
class Evaluation:
    metrics: dict[str, float]
    predictions: list[dict]  #: QVHighlights submission rows (within-video)
    n_queries: int
    missing_videos: list[str]
    #: per query, corpus-wide: the top hit beside the truth (see :func:`per_query_row`)
    per_query: list[dict] = field(default_factory=list)


def evaluate(searcher: Searcher, queries: list[MomentQuery], corpus_top_k: int = 10) -> Evaluation:
    stems = {Path(r["rel_path"]).stem: seq for seq, r in searcher.videos.items()}
    used = [q for q in queries if q.vid in stems]
    fps, props = searcher.manifest.params.fps, searcher.manifest.params.proposals
    preds, within, gts, prop_rank, prop_gt, corpus, corpus_gt, found, has = [], [], [], [], [], [], [], [], []
    rows = []
    for q in used:
        seq = stems[q.vid]
        ts, emb, _ = searcher.video_data(seq)
        windows = make_windows(len(ts), fps, props)
        spans, scores, found_prob = _within_video(searcher, q.query, emb, windows, fps)
        preds.append({"qid": q.qid, "query": q.query, "vid": q.vid,
                      "pred_relevant_windows": [[float(s), float(e), float(c)] for (s, e), c in zip(spans, scores)]})
        within.append([tuple(s) for s in spans])
        gts.append(list(q.windows))
        if searcher.head is not None and q.windows:
            prop_rank.append(found_prob[1].tolist())
            prop_gt.append({w for w, (a, b) in enumerate(windows) for s, e in q.windows
                            if a / fps < e and b / fps > s})
        res = searcher.search(q.query, top_k=corpus_top_k)
        truth = indexed_truth(q, stems)
        corpus.append([(Path(h.rel_path).stem, h.start_sec, h.end_sec) for h in res.hits])
        corpus_gt.append(truth)
        found.append(res.found)
        has.append(bool(truth))
        rows.append(per_query_row(q, res, truth))
    metrics: dict[str, float] = {}
    with_gt = [(p, g) for p, g in zip(preds, gts) if g]
    if with_gt:
        metrics.update(qvhighlights_metrics([p for p, _ in with_gt],
                                            [{"qid": p["qid"], "relevant_windows": [list(w) for w in g]}
                                             for p, g in with_gt]))
    metrics.update({f"within-{k}": v for k, v in recall_at_k(within, gts, ks=(1, 5)).items()})
    metrics.update({f"corpus-{k}": v for k, v in corpus_recall_at_k(corpus, corpus_gt, ks=(1, 5, 10)).items()})
    if prop_rank:
        metrics.update({f"proposal-{k}": v for k, v in proposal_recall_at_k(prop_rank, prop_gt).items()})
    if not all(has):
        metrics.update({f"not_found-{k}": v for k, v in not_found_precision_recall(found, has).items()})
    return Evaluation(metrics, preds, len(used), sorted({q.vid for q in queries if q.vid not in stems}), rows)


def indexed_truth(q: MomentQuery, stems) -> list[tuple[str, float, float]]:
    """The query's archive-wide truth (:meth:`MomentQuery.corpus_truth`) within the indexed videos."""
    return [w for w in q.corpus_truth() if w[0] in stems]


def per_query_row(q: MomentQuery, res, truth: list[tuple[str, float, float]] | None = None) -> dict:
    """The archivist's view of one query: the top corpus-wide hit beside the true span.

    ``truth``: the archive-wide truth (default: :meth:`MomentQuery.corpus_truth`). ``iou`` is
    the top hit's best temporal IoU with a true window of the hit's video (0 when that video
    holds none); ``correct``: a query with a moment somewhere is answered "found" with
    IoU >= 0.5, one with none anywhere is answered "not found".
    """
    truth = list(q.corpus_truth()) if truth is None else truth
    top = res.hits[0] if res.hits else None
    hit_vid = Path(top.rel_path).stem if top else None
    same = [(s, e) for v, s, e in truth if v == hit_vid]
    iou = 0.0
    if top is not None and same:
        iou = float(temporal_iou(np.array([[top.start_sec, top.end_sec]]), np.array(same, float)).max())
    correct = (res.found and iou >= 0.5) if truth else not res.found
    return {"qid": q.qid, "query": q.query, "vid": q.vid, "truth": [list(w) for w in q.windows],
            "corpus_truth": [list(w) for w in truth],
            "hit": None if top is None else {"vid": hit_vid, "start_sec": top.start_sec, "end_sec": top.end_sec,
                                              "score": top.score},
            "found": res.found, "found_prob": res.found_prob, "iou": iou, "correct": bool(correct)}


def _within_video(searcher: Searcher, query: str, emb: np.ndarray, windows: np.ndarray, fps: float):
    """Ranked spans in seconds, their scores, and (found_prob, proposal ranking) for one video."""
    if searcher.head is not None:
        spans, scores, g = _head_spans(searcher, query, emb, windows, fps)
        scores = searcher.verify(searcher.backbone.embed_texts([query])[0], emb, spans, scores)
        order = np.argsort(-scores, kind="stable")
        return spans[order], scores[order], (g.found_prob, g.window_rank)
    qv = searcher.backbone.embed_texts([query])[0]
    cands = ground_region(emb, qv, 0, searcher.cfg.smooth_frames, 10)
    cands.sort(key=lambda c: -c.mean_cos)
    spans = np.array([[c.first_frame / fps, (c.last_frame + 1) / fps] for c in cands]).reshape(-1, 2)
    return spans, np.array([c.mean_cos for c in cands]), (0.0, np.zeros(0, np.int64))


def _head_spans(searcher: Searcher, query: str, emb: np.ndarray, windows: np.ndarray, fps: float):
    """The head's spans (S, 2) in seconds and scores (S,) in one video, before the clip check, and its grounding."""
    from core.model.inference import ground

    states, masks = searcher.backbone.encode_text_tokens([query], searcher.head.cfg.text_layers)
    words = states[0][masks[0]]
    g = ground(searcher.head, emb, windows, words, np.ones(len(words), bool), fps,
               top_windows=searcher.cfg.rerank_windows, nms_iou=searcher.cfg.nms_iou,
               window_score=searcher.cfg.window_score)
    return np.asarray(g.spans, np.float64).reshape(-1, 2), np.asarray(g.scores, np.float64), g


def calibrate_verify_weight(searcher: Searcher, queries: list[MomentQuery],
                            weights: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
                            ) -> tuple[float, dict[str, float]]:
    """The clip check's weight w (``search.verify``), from a validation split.

    Grounds every query that has a moment in its own indexed video with the head once,
    rescores its candidates with each w in ``weights`` (score · p_clip^w), and returns the w
    with the best within-video R1@0.5 (the smallest on a tie, so 0 unless the check helps).
    Needs a head and a backbone with a clip term (``Backbone.embed_clips``).

    Returns ``(w, stats)``; stats maps ``"R1@0.5 w=..."`` to that weight's within-video
    R1@0.5 on these queries, plus ``n_queries``.
    """
    if searcher.head is None or searcher.backbone.clip_adapter is None:
        raise ConfigError("calibrating the clip check needs a grounding head and a backbone trained on clips")
    stems = {Path(r["rel_path"]).stem: seq for seq, r in searcher.videos.items()}
    fps, props = searcher.manifest.params.fps, searcher.manifest.params.proposals
    rows = []
    for q in (q for q in queries if q.vid in stems and q.windows):
        ts, emb, _ = searcher.video_data(stems[q.vid])
        spans, scores, _ = _head_spans(searcher, q.query, emb, make_windows(len(ts), fps, props), fps)
        if len(spans) == 0:
            rows.append((scores, scores, np.zeros(0)))
            continue
        match = clip_match(searcher.backbone, searcher.backbone.embed_texts([q.query])[0], emb,
                           span_frames(spans, fps, len(emb)))
        rows.append((scores, match, temporal_iou(spans, np.array(q.windows, np.float64)).max(axis=1)))
    if not rows:
        raise ConfigError("no query of the split has a moment in an indexed video: nothing to calibrate on")
    r1 = {w: float(np.mean([len(iou) > 0 and iou[np.argmax(verified_scores(sc, m, w))] >= 0.5
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
    queries as possible are caught. (Maximising balanced accuracy instead puts the demo head's
    threshold at 0.983 and flags 52% of the val split's real answers: its found-probability
    barely separates the two kinds, AUC 0.51 there.)
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
