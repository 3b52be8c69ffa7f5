"""Evaluate search on an index against an annotation file: within-video and corpus-wide.

For every annotated query whose video is in the index:

* **within-video** (the benchmarks' protocol): ground the query in its own video, over all
  of its proposal windows, with :meth:`Searcher.ground` — the same code search runs on the
  shortlisted windows — giving a ranked span list (QVHighlights metrics, R@k@IoU) and,
  with a head, the proposal ranking (RGNet's proposal R@k, §4.2);
* **corpus-wide**: :meth:`Searcher.search` over the whole index; a hit needs a right
  video *and* span. The truth is every moment of the indexed videos the sentence
  describes (:meth:`MomentQuery.corpus_truth`: the annotation's ``corpus_windows``
  where it has them, as ``groundzero synth`` writes; else the query's own windows);
* **not found**: queries with no moment anywhere in the indexed videos measure the
  precision/recall of the corpus-wide "not found" answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from groundzero.data.annotations import MomentQuery
from groundzero.data.metrics import qvhighlights_metrics
from groundzero.data.recall import (
    corpus_recall_at_k,
    not_found_precision_recall,
    proposal_recall_at_k,
    recall_at_k,
)
from groundzero.data.spans import temporal_iou
from groundzero.search.searcher import Searcher, normalize_query


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
    fps = searcher.manifest.params.fps
    preds, within, gts, prop_rank, prop_gt, corpus, corpus_gt, found, has = [], [], [], [], [], [], [], [], []
    rows = []
    for q in used:
        seq = stems[q.vid]
        windows = searcher.proposal_ranges(seq)
        qv = searcher.backbone.embed_texts([normalize_query(q.query)])[0]  # (D,), once for both steps
        g = searcher.ground(q.query, {seq: windows}, qv)[0]
        if searcher.cfg.refine:  # the same coarse-to-fine step as search, on the video's top hits
            g = replace(g, hits=searcher.refine(g.hits, qv))
        preds.append({"qid": q.qid, "query": q.query, "vid": q.vid,
                      "pred_relevant_windows": [[h.start_sec, h.end_sec, h.score] for h in g.hits]})
        within.append([(h.start_sec, h.end_sec) for h in g.hits])
        gts.append(list(q.windows))
        if searcher.head is not None and q.windows:
            prop_rank.append(g.window_rank.tolist())
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
