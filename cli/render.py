"""Rendering for humans (rich tables on stdout) and scripts (``--json`` on stdout).

Progress and log lines go to stderr, so ``--json`` output is always clean.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from groundzero.data.spans import format_timestamp


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
    t.add_column("score", justify="right", no_wrap=True)
    t.add_column("found", justify="right", no_wrap=True)
    t.add_column("evidence", overflow="fold", min_width=24, ratio=1)
    for i, h in enumerate(result.hits, 1):
        t.add_row(str(i), h.rel_path, f"{format_timestamp(h.start_sec)}\n–{format_timestamp(h.end_sec)}",
                  f"{h.score:.4f}", f"{h.found_prob:.2f}", evidence_text(h))
    return t


def evidence_text(hit) -> Text:
    """One line per supporting channel: "seen", or the matched snippet with its words in bold."""
    out = Text()
    for e in hit.evidence:
        if out:
            out.append("\n")
        if e.channel == "frames":
            out.append("seen", style="dim")
            continue
        who = f"{e.speaker}: " if e.speaker else ""
        out.append(f"{'said' if e.channel == 'speech' else 'shown'} ({e.source}) ", style="dim")
        out.append(who)
        pos = 0
        for a, b in e.marks:
            out.append(e.snippet[pos:a])
            out.append(e.snippet[a:b], style="bold yellow")
            pos = b
        out.append(e.snippet[pos:])
    return out


def per_query_table(rows: list[dict]) -> Table:
    """Each query's top corpus-wide result beside its true span (rows of ``groundzero.search.evaluate.per_query_row``).

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

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self._task is not None:
            self._bar.stop()


# -- one renderer per command result (tables for people, ``--json`` for scripts) -------------


def index_plan(plan, json_out: bool) -> None:
    """The dry run: every file by action (JSON: all of them; table: all but the unchanged ones)."""
    groups = {"new": plan.new, "changed": plan.changed, "retry": plan.retry, "unchanged": plan.unchanged}
    counts = plan.counts()
    if json_out:
        d = {k: [e.rel_path for e in v] for k, v in groups.items()}
        d["removed"] = plan.removed  # uris: the files are gone from the archive
        d["counts"] = counts
        print_json(d)
        return
    rows = [(k, e.rel_path) for k, v in groups.items() if k != "unchanged" for e in v]
    rows += [("removed", u) for u in plan.removed]
    out = stdout()
    out.print(rows_table("plan (dry run)", ["action", "file"], rows))
    out.print(f"{len(plan.todo)} to index ({counts['new']} new, {counts['changed']} changed, "
              f"{counts['retry']} retry), {counts['unchanged']} unchanged, {counts['removed']} to remove")


def index_report(report, index_dir: str, json_out: bool) -> None:
    """What an index run did, and every file that failed with its reason."""
    rec = report.record
    if json_out:
        print_json({"run": rec.__dict__, "failures": [
            {k: f[k] for k in ("rel_path", "uri", "reason", "error")} for f in report.failures]})
        return
    out = stdout()
    out.print(f"indexed {rec.n_indexed}, failed {rec.n_failed}, unchanged {rec.n_unchanged}, "
              f"removed {rec.n_removed} ({rec.video_seconds_indexed / 3600:.2f} h of video) -> {index_dir}")
    if report.failures:
        out.print(rows_table("failed", ["file", "reason", "error"],
                             [(f["rel_path"], f["reason"], f["error"]) for f in report.failures]))


def query_rows(title: str, result, json_out: bool) -> None:
    """Rows of a catalog query (``groundzero.store.catalog.Rows``) as a table, or JSON objects."""
    if json_out:
        print_json(result.dicts())
    else:
        stdout().print(rows_table(title, result.columns, result.rows))


def video_list(title: str, result, counts: dict, model: str, json_out: bool) -> None:
    """``catalog list``: every video, then the totals (``groundzero.store.catalog.video_counts``)."""
    query_rows(title, result, json_out)
    if not json_out:
        stdout().print(f"{counts['videos_indexed']} indexed ({counts['hours_indexed']:.2f} h), "
                       f"{counts['videos_failed']} failed; model {model}")


def catalog_summary(d: dict, json_out: bool) -> None:
    """``groundzero.store.queries.summary``: hours indexed, the last run, what failed and why."""
    if json_out:
        print_json(d)
        return
    out = stdout()
    out.print(f"{d['index']} (snapshot {d['snapshot']}, model {d['model']}): {d['videos_indexed']} videos "
              f"indexed, {d['hours_indexed']:.2f} h; {d['videos_failed']} failed", highlight=False)
    last = d["last_run"]
    if not last:
        out.print("no index run recorded")
        return
    out.print(f"last run {last['run_id']}: {last['status']}, {last['started_at']} -> "
              f"{last['finished_at'] or '(not finished)'}", highlight=False)
    out.print(f"  listed {last['n_listed']}: {last['n_new']} new, {last['n_changed']} changed, "
              f"{last['n_retry']} retried, {last['n_unchanged']} unchanged, {last['n_removed']} removed; "
              f"{last['n_indexed']} indexed ({last['video_seconds_indexed'] / 3600:.2f} h), "
              f"{last['n_failed']} failed", highlight=False)
    if last["message"]:
        out.print(f"  stopped: {last['message']}", highlight=False)
    if last["failures_by_reason"]:
        out.print("  failures by reason: " + ", ".join(
            f"{k} {n}" for k, n in sorted(last["failures_by_reason"].items())), highlight=False)
    if d["last_run_failures"]:
        out.print(rows_table("failed in the last run", ["file", "reason", "error"],
                             [tuple(f.values()) for f in d["last_run_failures"]]))


def check_report(report, json_out: bool) -> None:
    """``groundzero.store.queries.check_index``: each problem, then the counts."""
    if json_out:
        print_json([p.__dict__ for p in report.problems])
        return
    out = stdout()
    for p in report.problems:
        out.print(str(p), highlight=False)
    out.print(f"snapshot {report.snapshot}: {report.n_errors} errors, {report.n_warnings} warnings")


#: the moment-retrieval figures a table shows (JSON has all of them)
SHOWN_MR = ("MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "MR-full-mAP@0.5", "MR-full-mAP@0.75",
            "MR-long-mAP", "MR-middle-mAP", "MR-short-mAP")


def metrics(title: str, values: dict, per_query: list[dict] | None, json_out: bool) -> None:
    """Evaluation metrics (and, when given, each query's top result beside its truth)."""
    if json_out:
        print_json(values if per_query is None else {**values, "per_query": per_query})
        return
    out = stdout()
    if per_query:
        out.print(per_query_table(per_query))
    keys = [k for k in values if not k.startswith("MR-") or k in SHOWN_MR]
    out.print(rows_table(title, ["metric", "value"], [(k, f"{values[k]:.4g}") for k in keys]))
