"""Rendering for humans (rich tables on stdout) and scripts (``--json`` on stdout).

Progress and log lines go to stderr, so ``--json`` output is always clean.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from core.spans import format_timestamp


def stdout() -> Console:
    return Console(file=sys.stdout, soft_wrap=True)


def stderr() -> Console:
    return Console(file=sys.stderr, soft_wrap=True)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def hits_table(result) -> Table:
    t = Table(title=f"“{result.query}”", title_justify="left")
    t.add_column("#", justify="right")
    longest = max((len(h.rel_path) for h in result.hits), default=5)
    t.add_column("video", overflow="fold", min_width=min(48, longest))  # never truncate a file name
    t.add_column("span", no_wrap=True)
    t.add_column("seconds", justify="right", no_wrap=True)
    t.add_column("score", justify="right", no_wrap=True)
    t.add_column("found", justify="right", no_wrap=True)
    for i, h in enumerate(result.hits, 1):
        t.add_row(str(i), h.rel_path, f"{format_timestamp(h.start_sec)}–{format_timestamp(h.end_sec)}",
                  f"{h.start_sec:.1f}–{h.end_sec:.1f}", f"{h.score:.4f}", f"{h.found_prob:.2f}")
    return t


def per_query_table(rows: list[dict]) -> Table:
    """Each query's top corpus-wide result beside its true span (rows of ``search.evaluate.per_query_row``).

    One row per query, the sentence, its truth and the top result stacked in the first cell, so
    the IoU, found-probability and verdict columns stay readable in an 80-column terminal.
    """
    from rich.markup import escape

    def span(vid: str, s: float, e: float) -> str:
        return f"{vid} {format_timestamp(s)}–{format_timestamp(e)}"

    t = Table(title="each query: top result vs truth", title_justify="left", show_lines=True)
    t.add_column("query / truth / top result", ratio=1, overflow="fold")
    t.add_column("IoU", justify="right", no_wrap=True, min_width=4)
    t.add_column("found p", justify="right", no_wrap=True, min_width=7)
    t.add_column("", no_wrap=True, min_width=1)
    for r in rows:
        corpus = r.get("corpus_truth", [[r["vid"], s, e] for s, e in r["truth"]])
        truth = ", ".join(span(r["vid"], s, e) for s, e in r["truth"])
        elsewhere = sum(1 for v, _, _ in corpus if v != r["vid"])
        if elsewhere:
            truth = f"{truth or 'none in ' + r['vid']} (+{elsewhere} in other videos)"
        truth = truth or "(not in the archive)"
        hit = r["hit"]
        shown = "not found" if not r["found"] else (span(hit["vid"], hit["start_sec"], hit["end_sec"]) if hit else "-")
        if not r["found"] and hit is not None:
            shown += f" (best guess {span(hit['vid'], hit['start_sec'], hit['end_sec'])})"
        iou = f"{r['iou']:.2f}" if corpus else ""
        cell = f"[bold]{escape(r['query'])}[/]\n  truth: {escape(truth)}\n  top:   {escape(shown)}"
        t.add_row(cell, iou, f"{r['found_prob']:.2f}", "[green]✓[/]" if r["correct"] else "[red]✗[/]")
    return t


def rows_table(title: str, columns: list[str], rows: list[tuple]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*("" if v is None else (f"{v:.1f}" if isinstance(v, float) else str(v)) for v in r))
    return t


class LazyProgress:
    """A progress bar on stderr that appears at its first update.

    Commands validate flags, models and paths before their first progress
    callback, so an error found up to then stays a single line on stderr.
    Use as a context manager; ``disable`` (for ``--json``) draws nothing.
    """

    def __init__(self, label: str, disable: bool = False):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._bar = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=stderr(),
                             disable=disable)
        self._task = None

    def update(self, completed: int, total: int | None, info: str = "") -> None:
        if self._task is None:
            self._bar.start()
            self._task = self._bar.add_task("", total=total, info="")
        self._bar.update(self._task, completed=completed, total=total, info=info)

    def __enter__(self) -> "LazyProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self._task is not None:
            self._bar.stop()
