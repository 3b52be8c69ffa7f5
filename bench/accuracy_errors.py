"""What the demo model's wrong answers are: which event of the synthetic archive the top hit lands on.

    .venv/bin/python -m groundzero.synthetic.build --out OUT     # or any build with index-val
    .venv/bin/python bench/accuracy_errors.py --index OUT/index-val --archive OUT/archive \\
        --split val --head OUT/head

For every query of ``SPLIT`` whose answer is wrong (top-1 IoU < 0.5), within its own video and
corpus-wide, finds the event of the archive's ``SPLIT_events.jsonl`` that the wrong span
overlaps most and prints how it differs from the sentence's event (kind, shape, colour,
motion, title word), or "nothing" when the span covers no event. Counts by the target's kind
come first (right / total). Run it on val: the test split is for ``bench/accuracy.py``.
The index must hold the head's context tokens (``groundzero reindex --head HEAD``).
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np

from groundzero.data.spans import temporal_iou

ATTRS = ("kind", "shape", "colour", "motion", "word")


def _best_iou(span: tuple[float, float], spans) -> np.ndarray:
    """IoU of ``span`` with each of ``spans`` (M, 2): (M,)."""
    return temporal_iou(np.array([span]), np.array(spans, np.float64).reshape(-1, 2))[0]


def _landing(events: list[dict], span: tuple[float, float]) -> dict | None:
    """The event ``span`` overlaps most (IoU >= 0.1), else None."""
    if not events:
        return None
    ious = _best_iou(span, [(e["start_sec"], e["end_sec"]) for e in events])
    return events[int(ious.argmax())] if ious.max() >= 0.1 else None


def _differs(hit: dict, target: dict) -> str:
    return "+".join(a for a in ATTRS if hit.get(a) != target.get(a)) or "nothing (same caption)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--archive", type=Path, required=True, help="the synthetic archive (holds SPLIT.jsonl)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--head", default=None, help="the grounding head (default: the index's)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    from groundzero.data.annotations import read_annotations
    from groundzero.search.evaluate import evaluate
    from groundzero.search.searcher import Searcher

    queries = read_annotations(args.archive / f"{args.split}.jsonl")
    events = {r["vid"]: r["events"] for r in map(json.loads, (args.archive / f"{args.split}_events.jsonl")
                                                   .read_text().splitlines())}
    ev = evaluate(Searcher(args.index, device=args.device, head=args.head), queries)
    by_caption = {(vid, e["caption"]): e for vid, evs in events.items() for e in evs}
    kinds, right = collections.Counter(), collections.Counter()
    within, corpus = collections.Counter(), collections.Counter()
    for q, pred in zip((q for q in queries if q.vid in events), ev.predictions):
        target = by_caption.get((q.vid, q.query))
        if not q.windows or target is None:
            continue
        kind = target["kind"] + (f"-{target['motion']}" if target["kind"] == "object" else "")
        kinds[kind] += 1
        s, e, _ = pred["pred_relevant_windows"][0] if pred["pred_relevant_windows"] else (0.0, 0.0, 0.0)
        iou = float(_best_iou((s, e), q.windows).max())
        if iou >= 0.5:
            right[kind] += 1
            continue
        if iou > 0.1:
            within["overlaps the true moment, IoU < 0.5"] += 1
            continue
        hit = _landing(events[q.vid], (s, e))
        within["nothing" if hit is None else f"an event differing in {_differs(hit, target)}"] += 1
    for row in ev.per_query:
        target = by_caption.get((row["vid"], row["query"]))
        if not row["corpus_truth"] or row["iou"] >= 0.5 or target is None:
            continue
        h = row["hit"]
        if h is None:
            corpus["no hit"] += 1
            continue
        hit = _landing(events.get(h["vid"], []), (h["start_sec"], h["end_sec"]))
        where = "same video" if h["vid"] == row["vid"] else "other video"
        corpus[f"{where}: nothing" if hit is None else f"{where}: an event differing in {_differs(hit, target)}"] += 1
    m = ev.metrics
    print(f"{args.split}: {ev.n_queries} queries; within R1@0.5 {m['within-R1@0.5']:.3f}, "
          f"corpus R1@0.5 {m['corpus-R1@0.5']:.3f}")
    print("within-video right / total by the sentence's kind:",
          ", ".join(f"{k} {right[k]}/{n}" for k, n in sorted(kinds.items())))
    for title, counts in (("within-video errors", within), ("corpus-wide errors", corpus)):
        print(f"{title} ({sum(counts.values())}): the wrong top-1 lands on")
        for what, n in counts.most_common():
            print(f"  {n:4d}  {what}")


if __name__ == "__main__":
    main()
