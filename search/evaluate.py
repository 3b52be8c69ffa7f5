"""Evaluate search on an index against an annotation file: within-video and corpus-wide.

For every annotated query whose video is in the index:

* **within-video** (the benchmarks' protocol): ground the query in its own video —
  with a head, RGNet's procedure over all of the video's proposals
  (:func:`core.model.inference.ground`); zero-shot, the similarity-curve grounder over
  the whole video — giving a ranked span list (QVHighlights metrics, R@k@IoU) and,
  with a head, the proposal ranking (RGNet's proposal R@k, §4.2);
* **corpus-wide**: :meth:`Searcher.search` over the whole index; a hit needs the right
  video *and* span;
* **not found**: queries with no ground-truth moment measure the precision/recall of
  the "not found" answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.model.annotations import MomentQuery
from core.model.metrics import (
    corpus_recall_at_k,
    not_found_precision_recall,
    proposal_recall_at_k,
    qvhighlights_metrics,
    recall_at_k,
)
from core.proposals import make_windows
from search.ground_zeroshot import ground_region
from search.searcher import Searcher


@dataclass
class Evaluation:
    metrics: dict[str, float]
    predictions: list[dict]  #: QVHighlights submission rows (within-video)
    n_queries: int
    missing_videos: list[str]


def evaluate(searcher: Searcher, queries: list[MomentQuery], corpus_top_k: int = 10) -> Evaluation:
    stems = {Path(r["rel_path"]).stem: seq for seq, r in searcher.videos.items()}
    used = [q for q in queries if q.vid in stems]
    fps, props = searcher.manifest.params.fps, searcher.manifest.params.proposals
    preds, within, gts, prop_rank, prop_gt, corpus, corpus_gt, found, has = [], [], [], [], [], [], [], [], []
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
        corpus.append([(Path(h.rel_path).stem, h.start_sec, h.end_sec) for h in res.hits])
        corpus_gt.append([(q.vid, s, e) for s, e in q.windows])
        found.append(res.found)
        has.append(bool(q.windows))
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
    return Evaluation(metrics, preds, len(used), sorted({q.vid for q in queries if q.vid not in stems}))


def _within_video(searcher: Searcher, query: str, emb: np.ndarray, windows: np.ndarray, fps: float):
    """Ranked spans in seconds, their scores, and (found_prob, proposal ranking) for one video."""
    if searcher.head is not None:
        from core.model.inference import ground

        states, masks = searcher.backbone.encode_text_tokens([query])
        words = states[0][masks[0]]
        g = ground(searcher.head, emb, windows, words, np.ones(len(words), bool), fps,
                   top_windows=searcher.cfg.rerank_windows, nms_iou=searcher.cfg.nms_iou)
        return g.spans, g.scores, (g.found_prob, g.window_rank)
    qv = searcher.backbone.embed_texts([query])[0]
    cands = ground_region(emb, qv, 0, searcher.cfg.smooth_frames, 10)
    cands.sort(key=lambda c: -c.mean_cos)
    spans = np.array([[c.first_frame / fps, (c.last_frame + 1) / fps] for c in cands]).reshape(-1, 2)
    return spans, np.array([c.mean_cos for c in cands]), (0.0, np.zeros(0, np.int64))
