"""What each channel finds, and what their fusion finds, on the known-answer talks archive.

    .venv/bin/python bench/channels.py --workdir WORKDIR            # make, index, evaluate
    .venv/bin/python bench/channels.py --workdir WORKDIR --reuse    # evaluate the existing index
    .venv/bin/python bench/channels.py --workdir VAL --seed 1 --unsure-weights 1 0.5 0.25 0.1 0   # fit

Makes the lecture and deposition archive (``python -m groundzero.synthetic.talks``: espeak-ng speech
with captions as sidecar files or subtitle streams, one video with none; slides with rendered
text; exhibit cards; cutaways to the demo's coloured shapes), indexes it with the demo model,
captions and OCR (the real Ray Data pipeline; no speech recognition: no model can be downloaded
here, so the uncaptioned video's speech is not searchable), and searches every query with each
single channel and with all of them fused.

Per query kind (speech, slide, picture, multi, not_found) and over the mixed set of answerable
queries it reports:

* **within R1@0.5**: the best hit in the query's own video overlaps its window with IoU >= 0.5;
* **corpus R1@0.5**: the top hit across the archive overlaps one of the query's ``corpus_windows``
  with IoU >= 0.5;
* for not_found queries, the share answered "not found" (no channel found the moment), and for
  answerable ones the share answered "found".

Prints a table; ``--json`` for the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

SETS = {"frames": ("frames",), "speech": ("speech",), "text": ("text",), "fused": ("frames", "speech", "text")}
KINDS = ("speech", "slide", "picture", "multi", "not_found")


def _iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def build(workdir: Path, videos: int, seed: int) -> Path:
    from groundzero.indexer.channels import ChannelsConfig
    from groundzero.indexer.config import IndexConfig
    from groundzero.indexer.ocr import OcrConfig
    from groundzero.indexer.pipeline import run_index
    from groundzero.synthetic.talks import TalksConfig, make_talks_archive

    t = time.perf_counter()
    make_talks_archive(workdir / "talks", TalksConfig(n_videos=videos, seed=seed))
    print(f"archive: {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    run_index(IndexConfig(archive=str(workdir / "talks" / "videos"), index_dir=str(workdir / "index"), model="demo",
                          channels=ChannelsConfig(ocr=OcrConfig())))
    print(f"index (decode, embed, captions, OCR): {time.perf_counter() - t:.0f} s")
    return workdir / "index"


def evaluate(searcher, queries: list[dict]) -> dict:
    stem = {r["video_id"]: Path(r["rel_path"]).stem for r in searcher.videos.values()}
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    ms: dict[str, list[float]] = defaultdict(list)
    for q in queries:
        truth = [tuple(w) for w in q["relevant_windows"]]
        corpus = [(v, (s, e)) for v, s, e in q["corpus_windows"]]
        for name, channels in SETS.items():
            t = time.perf_counter()
            res = searcher.search(q["query"], channels=channels)
            ms[name].append((time.perf_counter() - t) * 1000)
            key = f"{name}/{q['kind']}"
            if q["kind"] == "not_found":
                scores[key]["not_found_correct"].append(float(not res.found))
                continue
            own = next((h for h in res.hits if stem[h.video_id] == q["vid"]), None)
            within = own is not None and max(_iou((own.start_sec, own.end_sec), w) for w in truth) >= 0.5
            top = res.hits[0] if res.hits else None
            anywhere = top is not None and any(
                stem[top.video_id] == v and _iou((top.start_sec, top.end_sec), w) >= 0.5 for v, w in corpus)
            for k in (key, f"{name}/mixed"):
                scores[k]["within_R1@0.5"].append(float(within))
                scores[k]["corpus_R1@0.5"].append(float(anywhere))
                scores[k]["found"].append(float(res.found))
    out = {k: {m: round(float(np.mean(v)), 3) for m, v in d.items()} | {"n": len(next(iter(d.values())))}
           for k, d in scores.items()}
    out["latency_ms_p50"] = {k: round(float(np.median(v)), 1) for k, v in ms.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True, help="where the archive and index go")
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse", action="store_true", help="reuse WORKDIR's archive and index")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--unsure-weights", type=float, nargs="*", default=None,
                    help="only sweep SearchConfig.fusion_unsure_weight over these values (mixed set)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    index = args.workdir / "index" if args.reuse else build(args.workdir, args.videos, args.seed)
    queries = [json.loads(line) for line in (args.workdir / "talks" / "queries.jsonl").read_text().splitlines()]
    from groundzero.search.config import SearchConfig
    from groundzero.search.searcher import Searcher

    searcher = Searcher(index, cfg=SearchConfig(top_k=50))
    if args.unsure_weights:  # the fusion's one fitted parameter: fit it on a validation seed, not the test one
        for w in args.unsure_weights:
            searcher.cfg = replace(searcher.cfg, fusion_unsure_weight=w)
            f = evaluate(searcher, queries)["fused/mixed"]
            print(f"fusion_unsure_weight {w:<5}: mixed within R1@0.5 {f['within_R1@0.5']:.3f}, "
                  f"corpus R1@0.5 {f['corpus_R1@0.5']:.3f}")
        return
    figures = evaluate(searcher, queries)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{'kind':<10} {'n':>3}  " + "  ".join(f"{name:>15}" for name in SETS))
    print(f"{'':<10} {'':>3}  " + "  ".join(f"{'within/corpus':>15}" for _ in SETS))
    for kind in (*KINDS, "mixed"):
        cells, n = [], 0
        for name in SETS:
            f = figures.get(f"{name}/{kind}", {})
            n = f.get("n", n)
            cells.append(f"{f['not_found_correct']:>15.3f}" if kind == "not_found"
                         else f"{f.get('within_R1@0.5', 0):>7.3f}/{f.get('corpus_R1@0.5', 0):<7.3f}")
        print(f"{kind:<10} {n:>3}  " + "  ".join(cells))
    found = "  ".join(f"{figures.get(f'{name}/mixed', {}).get('found', 0):>15.3f}" for name in SETS)
    print(f"{'found':<10} {'':>3}  {found}   (answerable queries answered 'found')")
    print("not_found row: share of not-found queries answered 'not found'")
    print("search p50 ms: " + ", ".join(f"{k} {v}" for k, v in figures["latency_ms_p50"].items()))


if __name__ == "__main__":
    main()
