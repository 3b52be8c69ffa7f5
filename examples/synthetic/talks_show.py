"""Show what each channel finds in the talks archive: one query per kind beside its true span.

    python -m groundzero.synthetic.talks_show --archive OUT/talks --index OUT/talks-index

For the first query of each kind (speech, slide, multi, picture, not_found) of ``queries.jsonl``
(:mod:`groundzero.synthetic.talks`), searches the index with all channels fused and prints the
top hit beside the truth: its span, the IoU, the channels that support it and their evidence.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from groundzero.cli.common import setup_logging
from groundzero.cli.render import evidence_text
from groundzero.data.spans import format_timestamp, temporal_iou
from groundzero.search.searcher import Searcher

KINDS = ("speech", "slide", "multi", "picture", "not_found")


def _span(vid: str, s: float, e: float) -> str:
    return f"{vid} {format_timestamp(s)}–{format_timestamp(e)}"


def show(archive: Path, index: Path) -> Table:
    queries = [json.loads(line) for line in (archive / "queries.jsonl").read_text().splitlines()]
    searcher = Searcher(index)
    t = Table(title="one query per kind: top hit (all channels fused) vs truth", show_lines=True)
    t.add_column("kind / query / truth / top hit", overflow="fold", ratio=2)
    t.add_column("IoU", justify="right")
    t.add_column("evidence", overflow="fold", ratio=2)
    for kind in KINDS:
        q = next((q for q in queries if q["kind"] == kind), None)
        if q is None:
            continue
        res = searcher.search(q["query"], top_k=1)
        truth = ", ".join(_span(q["vid"], s, e) for s, e in q["relevant_windows"]) or "(not in the archive)"
        h = res.hits[0] if res.hits else None
        top = "nothing" if h is None else _span(Path(h.rel_path).stem, h.start_sec, h.end_sec)
        if not res.found:
            top = f"not found{'' if h is None else ' (best guess ' + top + ')'}"
        iou = "-"
        if h is not None and q["relevant_windows"] and Path(h.rel_path).stem == q["vid"]:
            iou = f"{temporal_iou([[h.start_sec, h.end_sec]], q['relevant_windows']).max():.2f}"
        t.add_row(f"[bold]{kind}[/]: {q['query']}\ntruth: {truth}\ntop:   {top}", iou,
                  evidence_text(h) if h is not None else "")
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archive", type=Path, required=True, help="a talks archive (python -m groundzero.synthetic.talks)")
    ap.add_argument("--index", type=Path, required=True, help="its index (groundzero index ... --ocr)")
    args = ap.parse_args()
    setup_logging(False)
    Console(width=120).print(show(args.archive, args.index))


if __name__ == "__main__":
    main()
