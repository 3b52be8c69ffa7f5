"""``groundzero``: index a video archive, search inside it, inspect the catalog."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from cli import render
from core.errors import GroundZeroError

app = typer.Typer(
    name="groundzero",
    help="Natural-language search inside video archives: exact (video, start, end) spans.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_SOME_FAILED = 3


def _fail(e: GroundZeroError) -> typer.Exit:
    render.stderr().print(f"[bold red]error:[/] {e}", highlight=False)
    return typer.Exit(e.exit_code)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    # transformers' own progress bars and warnings are noise on the command line
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@app.command()
def index(
    archive: Path = typer.Argument(..., help="Folder of videos (searched recursively)."),
    index_dir: Path = typer.Option(..., "--index", help="Index directory (created if missing)."),
    model: Optional[str] = typer.Option(None, help="SigLIP checkpoint directory or hub id "
                                        "(default: the bundled tiny model; real archives: "
                                        "google/siglip2-so400m-patch14-384)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda[:n] for the image tower."),
    fps: float = typer.Option(1.0, help="Frames sampled per second of video."),
    window: float = typer.Option(48.0, help="Proposal window length, seconds."),
    stride: float = typer.Option(24.0, help="Hop between proposal windows, seconds."),
    tokens_per_proposal: int = typer.Option(6, help="Context tokens per proposal."),
    batch_size: int = typer.Option(32, help="Frames per image-tower batch."),
    workers: int = typer.Option(1, help="Embedding actors (one GPU each when on CUDA)."),
    exclude: list[str] = typer.Option([], help="Glob of files to leave out (repeatable), e.g. '*.json'."),
    retry_failed: bool = typer.Option(False, help="Retry unchanged files that failed before."),
    dry_run: bool = typer.Option(False, help="Only print what the run would do."),
    json_out: bool = typer.Option(False, "--json", help="Print the run report as JSON."),
    verbose: bool = typer.Option(False, "-v", "--verbose"),
) -> None:
    """Index every video under ARCHIVE into --index (incremental: unchanged files are skipped)."""
    _setup_logging(verbose)
    from core.proposals import ProposalConfig
    from indexer.config import IndexConfig
    from indexer.pipeline import plan_index, run_index

    kwargs = dict(archive=str(archive), index_dir=str(index_dir), device=device, fps=fps,
                  proposals=ProposalConfig(window, stride, tokens_per_proposal), embed_batch_size=batch_size,
                  embed_actors=workers, exclude=tuple(exclude), retry_failed=retry_failed, dry_run=dry_run)
    if model:
        kwargs["model"] = model
    try:
        cfg = IndexConfig(**kwargs)
        if dry_run:
            plan = plan_index(cfg)
            _print_plan(plan, json_out)
            return
        report = _run_with_progress(cfg, run_index, quiet=json_out)
    except GroundZeroError as e:
        raise _fail(e)
    rec = report.record
    if json_out:
        render.print_json({"run": rec.__dict__, "failures": [
            {k: f[k] for k in ("rel_path", "uri", "reason", "error")} for f in report.failures]})
    else:
        out = render.stdout()
        out.print(f"indexed {rec.n_indexed}, failed {rec.n_failed}, unchanged {rec.n_unchanged}, "
                  f"removed {rec.n_removed} ({rec.video_seconds_indexed / 3600:.2f} h of video) -> {index_dir}")
        if report.failures:
            out.print(render.rows_table("failed", ["file", "reason", "error"],
                                        [(f["rel_path"], f["reason"], f["error"]) for f in report.failures]))
    if rec.n_failed:
        raise typer.Exit(EXIT_SOME_FAILED)


def _print_plan(plan, json_out: bool) -> None:
    groups = {"new": plan.new, "changed": plan.changed, "retry": plan.retry, "unchanged": plan.unchanged}
    if json_out:
        d = {k: [e.rel_path for e in v] for k, v in groups.items()}
        d["removed"] = plan.removed
        render.print_json(d)
        return
    rows = [(k, e.rel_path) for k, v in groups.items() if k != "unchanged" for e in v]
    rows += [("removed", u) for u in plan.removed]
    out = render.stdout()
    out.print(render.rows_table("plan (dry run)", ["action", "file"], rows))
    out.print(f"{len(plan.todo)} to index, {len(plan.unchanged)} unchanged, {len(plan.removed)} to remove")


def _run_with_progress(cfg, run_index, quiet: bool):
    """Run with a progress bar on stderr; the bar appears once the run is planned, so
    errors found before that (bad flags, missing model or archive) stay one line."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("[bold]indexing"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                   TimeElapsedColumn(), console=render.stderr(), disable=quiet)
    task = None

    def on_progress(p) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task("index", total=p.total, info="")
        bar.update(task, total=p.total, completed=p.indexed + p.failed,
                   info=f"{p.frames} frames embedded, {p.failed} failed  {p.last}")

    try:
        return run_index(cfg, on_progress)
    finally:
        if task is not None:
            bar.stop()


@app.command()
def search(
    query: str = typer.Argument(..., help="A sentence describing the moment."),
    index_dir: Path = typer.Option(..., "--index", help="Index directory built by `groundzero index`."),
    top: int = typer.Option(5, "--top", help="Number of moments to return."),
    model: Optional[str] = typer.Option(None, help="Query model; default: the one that built the index."),
    device: str = typer.Option("auto", help="auto | cpu | cuda[:n]."),
    json_out: bool = typer.Option(False, "--json", help="Print results as JSON."),
    verbose: bool = typer.Option(False, "-v", "--verbose"),
) -> None:
    """Find the moments that match QUERY across the whole archive."""
    _setup_logging(verbose)
    from search.config import SearchConfig
    from search.searcher import Searcher

    try:
        if not query.strip():
            from core.errors import EmptyQueryError

            raise EmptyQueryError("the query is empty; describe the moment in a sentence")
        searcher = Searcher(index_dir, model=model, device=device, cfg=SearchConfig(top_k=top))
        result = searcher.search(query, top_k=top)
    except GroundZeroError as e:
        raise _fail(e)
    if json_out:
        render.print_json(result.to_dict())
        return
    out = render.stdout()
    if not result.hits:
        out.print(f"no moments found for “{result.query}” (the index holds no videos)")
        return
    out.print(render.hits_table(result))
    if not result.found:
        out.print("[yellow]not found:[/] no span is a confident match; the best guesses are listed above")


@app.command()
def catalog(
    index_dir: Path = typer.Option(..., "--index", help="Index directory."),
    sql: Optional[str] = typer.Option(None, "--sql", help="Ad-hoc DuckDB SQL over the views "
                                      "videos, runs, frames, proposals."),
    failed: bool = typer.Option(False, "--failed", help="List only the videos that failed."),
    json_out: bool = typer.Option(False, "--json", help="Print rows as JSON."),
) -> None:
    """What was indexed, what failed and why; or any SQL over the store (DuckDB)."""
    _setup_logging(False)
    import duckdb

    from core.store.catalog import connect
    from core.store.manifest import require_manifest

    try:
        layout, manifest = require_manifest(index_dir)
        con = connect(layout, manifest)
    except GroundZeroError as e:
        raise _fail(e)
    default_view = sql is None
    if failed:
        sql = "SELECT rel_path, reason, error FROM videos WHERE status = 'failed' ORDER BY rel_path"
    elif sql is None:
        sql = ("SELECT rel_path AS video, status, round(duration_sec, 1) AS seconds, n_frames AS frames, "
               "reason FROM videos ORDER BY status DESC, rel_path")
    try:
        rel = con.sql(sql)
        if rel is None:  # a statement without a result (e.g. SET)
            return
        columns, rows = rel.columns, rel.fetchall()
    except duckdb.Error as e:
        render.stderr().print(f"[bold red]error:[/] SQL failed: {str(e).splitlines()[0]}", highlight=False)
        raise typer.Exit(2)
    if json_out:
        render.print_json([dict(zip(columns, r)) for r in rows])
        return
    out = render.stdout()
    out.print(render.rows_table(f"{index_dir} (snapshot {manifest.version})", columns, rows))
    if default_view:
        s = con.execute("SELECT count(*) FILTER (status='indexed'), count(*) FILTER (status='failed'), "
                        "coalesce(sum(duration_sec) FILTER (status='indexed'), 0) FROM videos").fetchone()
        out.print(f"{s[0]} indexed ({s[2] / 3600:.2f} h), {s[1]} failed; model {manifest.model.name}")


@app.command("eval")
def eval_(
    predictions: Path = typer.Argument(..., help="Predictions in the QVHighlights submission format (jsonl: "
                                       "qid, query, vid, pred_relevant_windows [[start, end, score], ...])."),
    gt: Path = typer.Option(..., "--gt", help="Ground truth in the QVHighlights jsonl format."),
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Moment-retrieval metrics exactly as the official QVHighlights evaluation computes them."""
    _setup_logging(False)
    from core.model.metrics import qvhighlights_metrics, read_submission

    try:
        if not predictions.is_file():
            from core.errors import ConfigError

            raise ConfigError(f"predictions file {predictions} does not exist")
        preds = read_submission(predictions)
        gts = [{"qid": q.qid, "relevant_windows": [list(w) for w in q.windows]}
               for q in _read_gt(gt) if q.windows]
        metrics = qvhighlights_metrics([p for p in preds if str(p["qid"]) in {str(g["qid"]) for g in gts}], gts)
    except GroundZeroError as e:
        raise _fail(e)
    if json_out:
        render.print_json(metrics)
        return
    keys = ["MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "MR-full-mAP@0.5", "MR-full-mAP@0.75",
            "MR-long-mAP", "MR-middle-mAP", "MR-short-mAP"]
    render.stdout().print(render.rows_table(f"{predictions.name} vs {gt.name} ({len(gts)} queries)",
                                            ["metric", "value"], [(k, f"{metrics[k]:.2f}") for k in keys]))


def _read_gt(path: Path):
    from core.errors import ConfigError
    from core.model.annotations import read_annotations

    if not path.is_file():
        raise ConfigError(f"ground-truth file {path} does not exist")
    return read_annotations(path)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
