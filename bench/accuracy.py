"""Accuracy of the demo model on the synthetic archive's held-out test split.

    .venv/bin/python bench/accuracy.py --workdir WORKDIR                      # the bundled demo model
    .venv/bin/python bench/accuracy.py --model OUT/backbone --head OUT/head     # a fresh build

Generates the test split of the synthetic archive (``groundzero.synthetic``; its (shape, colour)
pairs held out from training lead every video), indexes it with the backbone (the real
Ray Data pipeline), and evaluates two paths on the same index:

* **zero-shot**: the vertical slice's path (SigLIP similarity, no head);
* **head**: the trained grounding head (``groundzero reindex --head`` tokens, RGNet re-rank,
  span and confidence heads).

For each: within-video and corpus-wide R1@0.5, R1@0.7, R5@0.5 and mAP@avg (QVHighlights'
``MR-full-mAP``, within-video), plus the precision / recall of the "not found" answer.
Within-video metrics ground each query in its own video; corpus-wide ones search all
videos, where every moment of the split that the sentence describes is a right answer
(the archive's ``corpus_windows``), and "not found" is right only for a sentence that
describes nothing in any video of the split.
Prints a table (``--json`` for the figures as JSON).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

ROWS = (
    ("within R1@0.5", "within-R1@0.5"),
    ("within R1@0.7", "within-R1@0.7"),
    ("within R5@0.5", "within-R5@0.5"),
    ("within mAP@avg", "MR-full-mAP"),
    ("corpus R1@0.5", "corpus-R1@0.5"),
    ("corpus R1@0.7", "corpus-R1@0.7"),
    ("corpus R5@0.5", "corpus-R5@0.5"),
    ("not-found precision", "not_found-precision"),
    ("not-found recall", "not_found-recall"),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True, help="where the archive and index go")
    ap.add_argument("--model", default=None, help="backbone checkpoint (default: the demo model, 'demo')")
    ap.add_argument("--head", default=None, help="grounding head (default: the bundled demo head)")
    ap.add_argument("--videos", type=int, default=16, help="test videos (the first of the build's held-out test split)")
    ap.add_argument("--minutes", type=float, default=10.0, help="minutes per video")
    ap.add_argument("--queries-per-video", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0, help="synthetic archive seed (the build's)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", help="the image tower's at index time: auto | fp32 | bf16 | int8")
    ap.add_argument("--window-score", default=None, choices=("retrieval", "retrieval_confidence"),
                    help="how the head ranks proposals (default: SearchConfig's)")
    ap.add_argument("--refine", action="store_true",
                    help="also evaluate the head with coarse-to-fine refinement (SearchConfig.refine) and "
                         "report its latency cost per search")
    ap.add_argument("--reuse", action="store_true", help="reuse WORKDIR's archive and index")
    ap.add_argument("--no-reuse-still", action="store_true",
                    help="embed every frame (index option reuse_still=False), e.g. to measure what reuse costs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from groundzero.data.annotations import read_annotations
    from groundzero.indexer.config import IndexConfig
    from groundzero.indexer.pipeline import run_index
    from groundzero.indexer.reindex import reindex
    from groundzero.plugins import named_model
    from groundzero.search.config import SearchConfig
    from groundzero.search.evaluate import evaluate
    from groundzero.search.searcher import Searcher
    from groundzero.synthetic.archive import SynthConfig, make_archive

    model = args.model or "demo"
    head = args.head or (str(named_model("demo").head_dir) if args.model is None else None)
    if head is None:
        ap.error("--head is required with --model")
    work = args.workdir
    t0 = time.perf_counter()
    synth = SynthConfig(n_train_videos=0, n_val_videos=0, n_test_videos=args.videos, video_minutes=args.minutes,
                        seed=args.seed, queries_per_video=args.queries_per_video)
    index = work / "index"
    if not (args.reuse and (work / "archive" / "test.jsonl").is_file() and index.is_dir()):
        make_archive(work / "archive", synth)
        run_index(IndexConfig(archive=str(work / "archive" / "test"), index_dir=str(index), model=model,
                              head=head, device=args.device, reuse_still=not args.no_reuse_still,
                              precision=args.precision))
    queries = read_annotations(work / "archive" / "test.jsonl")
    cfg = SearchConfig() if args.window_score is None else SearchConfig(window_score=args.window_score)
    t_index = time.perf_counter() - t0
    results = {}
    fine = replace(cfg, refine=True)
    runs = [("zero-shot", None, cfg), ("head", head, cfg)]  # the last run leaves the head's tokens in the index
    if args.refine:
        runs = [("zero-shot", None, cfg), ("zero-shot+refine", None, fine), ("head", head, cfg),
                ("head+refine", head, fine)]
    for name, h, c in runs:
        t = time.perf_counter()
        reindex(index, h)
        searcher = Searcher(index, device=args.device, head=h, cfg=c)
        ev = evaluate(searcher, queries)
        t_search = time.perf_counter()
        for q in queries:
            searcher.search(q.query)
        results[name] = {**ev.metrics, "n_queries": ev.n_queries, "eval_s": round(t_search - t, 1),
                         "search_ms_per_query": round((time.perf_counter() - t_search) * 1000 / len(queries), 1)}
    n_pos = sum(1 for q in queries if q.windows)  # with a moment in their own video (within-video metrics)
    n_nowhere = sum(1 for q in queries if not q.corpus_truth())  # with none in any video: "not found" is right
    report = {"model": model, "head": head, "precision": args.precision, "window_score": cfg.window_score, "videos": args.videos, "minutes": args.minutes,
              "queries": len(queries), "queries_with_moment": n_pos, "queries_not_in_archive": n_nowhere,
              "index_s": round(t_index, 1),
              "results": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"test split: {args.videos} videos x {args.minutes:g} min, {len(queries)} queries ({n_pos} with a "
          f"moment in their own video, {n_nowhere} with none anywhere in the split); model {model}; head {head}")
    names = list(results)
    print(f"{'metric':<22}" + "".join(f"{n:>14}" for n in names))
    for label, key in (*ROWS, ("search ms / query", "search_ms_per_query")):
        scale = 0.01 if key.startswith("MR-") else 1.0  # the official QVHighlights figures are percents
        vals = [results[n].get(key, float("nan")) * scale for n in names]
        print(f"{label:<22}" + "".join(f"{v:>14.3f}" for v in vals))


if __name__ == "__main__":
    main()
