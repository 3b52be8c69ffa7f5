"""``groundzero``: index a video archive, search inside it, inspect the catalog."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from cli import render
from core.errors import ConfigError, GroundZeroError

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


def _int_list(value: str, flag: str) -> tuple[int, ...]:
    """"0,-1" -> (0, -1); anything else is a one-line error naming ``flag``."""
    try:
        return tuple(int(x) for x in value.split(","))
    except ValueError:
        raise ConfigError(f"{flag} takes comma-separated integers such as 0,-1; got {value!r}") from None


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    # transformers' own progress bars and warnings are noise on the command line
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@app.command()
def index(
    archive: str = typer.Argument(..., help="Folder of videos (searched recursively), or s3://bucket/prefix."),
    index_dir: str = typer.Option(..., "--index", help="Index directory (created if missing), or "
                                  "s3://bucket/prefix (published there, worked on in --cache-dir)."),
    model: Optional[str] = typer.Option(None, help="SigLIP checkpoint directory or hub id "
                                        "(default: the bundled demo model, trained on the synthetic archive; real archives: "
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
    head: Optional[Path] = typer.Option(None, "--head", help="Grounding head whose learned context tokens "
                                        "this index uses (default: the one recorded by reindex, else zero-shot)."),
    endpoint_url: Optional[str] = typer.Option(None, "--endpoint-url", help="S3-compatible endpoint "
                                               "(MinIO, Ceph, R2...); default: AWS_ENDPOINT_URL, else AWS."),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Local working copy of an s3:// "
                                            "index (default: ~/.cache/groundzero/s3/...)."),
    tmp_dir: Optional[str] = typer.Option(None, "--tmp-dir", help="Where decode tasks download S3 videos "
                                          "(default: the system temp dir; needs room for one video per task)."),
    json_out: bool = typer.Option(False, "--json", help="Print the run report as JSON."),
    verbose: bool = typer.Option(False, "-v", "--verbose"),
) -> None:
    """Index every video under ARCHIVE into --index (incremental: unchanged files are skipped).

    ARCHIVE and --index may each be local or s3://bucket/prefix; S3 credentials come from the
    standard AWS chain (environment, profile, instance role).
    """
    _setup_logging(verbose)
    from core.proposals import ProposalConfig
    from core.store.s3 import S3Config
    from indexer.config import IndexConfig
    from indexer.pipeline import plan_index, run_index

    kwargs = dict(archive=archive, index_dir=index_dir, device=device, fps=fps,
                  proposals=ProposalConfig(window, stride, tokens_per_proposal), embed_batch_size=batch_size,
                  embed_actors=workers, exclude=tuple(exclude), retry_failed=retry_failed, dry_run=dry_run,
                  head=str(head) if head else None, s3=S3Config(endpoint_url=endpoint_url), cache_dir=cache_dir,
                  tmp_dir=tmp_dir)
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
    """The dry run: every file by action (JSON: all of them; table: all but the unchanged ones)."""
    groups = {"new": plan.new, "changed": plan.changed, "retry": plan.retry, "unchanged": plan.unchanged}
    counts = plan.counts()
    if json_out:
        d = {k: [e.rel_path for e in v] for k, v in groups.items()}
        d["removed"] = plan.removed  # uris: the files are gone from the archive
        d["counts"] = counts
        render.print_json(d)
        return
    rows = [(k, e.rel_path) for k, v in groups.items() if k != "unchanged" for e in v]
    rows += [("removed", u) for u in plan.removed]
    out = render.stdout()
    out.print(render.rows_table("plan (dry run)", ["action", "file"], rows))
    out.print(f"{len(plan.todo)} to index ({counts['new']} new, {counts['changed']} changed, "
              f"{counts['retry']} retry), {counts['unchanged']} unchanged, {counts['removed']} to remove")


def _run_with_progress(cfg, run_index, quiet: bool):
    with render.LazyProgress("indexing", disable=quiet) as bar:
        return run_index(cfg, lambda p: bar.update(
            p.indexed + p.failed, p.total, f"{p.frames} frames embedded, {p.failed} failed  {p.last}"))


@app.command()
def search(
    query: str = typer.Argument(..., help="A sentence describing the moment."),
    index_dir: str = typer.Option(..., "--index", help="Index directory built by `groundzero index`, or "
                                  "s3://bucket/prefix (pulled into a local cache; endpoint from AWS_ENDPOINT_URL)."),
    top: int = typer.Option(5, "--top", help="Number of moments to return."),
    model: Optional[str] = typer.Option(None, help="Query model; default: the one that built the index."),
    device: str = typer.Option("auto", help="auto | cpu | cuda[:n]."),
    head: Optional[Path] = typer.Option(None, "--head", help="Trained grounding head (groundzero train); "
                                        "default: the one the index's context tokens were made with "
                                        "(groundzero reindex), else zero-shot grounding."),
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
        searcher = Searcher(index_dir, model=model, device=device, cfg=SearchConfig(top_k=top),
                            head=str(head) if head else None)
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
    index_dir: str = typer.Option(..., "--index", help="Index directory, or s3://bucket/prefix."),
    sql: Optional[str] = typer.Option(None, "--sql", help="Ad-hoc DuckDB SQL over the views "
                                      "videos, runs, run_failures, frames, proposals."),
    failed: bool = typer.Option(False, "--failed", help="List only the videos that failed."),
    summary: bool = typer.Option(False, "--summary", help="Hours indexed, videos, and the last run: "
                                 "counts and what failed, with the reason."),
    endpoint_url: Optional[str] = typer.Option(None, "--endpoint-url", help="S3-compatible endpoint "
                                               "for an s3:// index; default: AWS_ENDPOINT_URL, else AWS."),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Local copy of an s3:// index."),
    verify: bool = typer.Option(False, "--verify", help="Check that manifest, catalog, Parquet files and "
                                "FAISS agree (core/store/check.py); exit 1 on an error."),
    json_out: bool = typer.Option(False, "--json", help="Print rows as JSON."),
) -> None:
    """What was indexed, what failed and why; or any SQL over the store (DuckDB)."""
    _setup_logging(False)
    import re

    import duckdb

    from core.store.catalog import connect
    from core.store.manifest import require_manifest
    from core.store.s3 import S3Config
    from core.store.s3_index import resolve_index_dir

    # an s3:// index is pulled first; per-video files only when the query reads them
    level = "all" if verify or sql and re.search(r"\b(frames|proposals)\b", sql, re.I) else "catalog"
    try:
        root = resolve_index_dir(index_dir, S3Config(endpoint_url=endpoint_url), cache_dir, level)
        layout, manifest = require_manifest(root)
        con = connect(layout, manifest)
    except GroundZeroError as e:
        raise _fail(e)
    if summary:
        _print_summary(index_dir, manifest, con, json_out)
        return
    if verify:
        _print_problems(layout.root, manifest.version, json_out)
        return
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


def _print_summary(index_dir: str, manifest, con, json_out: bool) -> None:
    """How many hours are indexed, and what the last run did, failed on, and why."""
    v = con.execute("SELECT count(*) FILTER (status='indexed'), count(*) FILTER (status='failed'), "
                    "coalesce(sum(duration_sec) FILTER (status='indexed'), 0) FROM videos").fetchone()
    cur = con.execute("SELECT * FROM runs ORDER BY started_at DESC, run_id DESC LIMIT 1")
    last = dict(zip([c[0] for c in cur.description], cur.fetchone() or ()))
    if last:
        last["failures_by_reason"] = dict(last.get("failures_by_reason") or {})
    failed = con.execute("SELECT rel_path, reason, error FROM videos WHERE status='failed' AND run_id = ? "
                         "ORDER BY rel_path", [last.get("run_id", "")]).fetchall()
    d = {"index": index_dir, "snapshot": manifest.version, "model": manifest.model.name,
         "videos_indexed": v[0], "videos_failed": v[1], "hours_indexed": round(v[2] / 3600, 4),
         "last_run": last or None,
         "last_run_failures": [dict(zip(("rel_path", "reason", "error"), f)) for f in failed]}
    if json_out:
        render.print_json(d)
        return
    out = render.stdout()
    out.print(f"{index_dir} (snapshot {manifest.version}, model {manifest.model.name}): {v[0]} videos "
              f"indexed, {v[2] / 3600:.2f} h; {v[1]} failed", highlight=False)
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
        out.print("  failures by reason: " + ", ".join(f"{k} {n}" for k, n in
                                                       sorted(last["failures_by_reason"].items())), highlight=False)
    if failed:
        out.print(render.rows_table("failed in the last run", ["file", "reason", "error"], failed))


@app.command()
def synth(
    out: Path = typer.Argument(..., help="Folder to write the archive into ({train,val,test}/*.mp4 + *.jsonl)."),
    train_videos: int = typer.Option(8, help="Videos in the train split."),
    val_videos: int = typer.Option(2, help="Videos in the val split."),
    test_videos: int = typer.Option(2, help="Videos in the test split (held-out attribute pairs)."),
    minutes: float = typer.Option(10.0, help="Length of every video, minutes."),
    queries_per_video: int = typer.Option(6, help="Queries written per video (about 20 % not found)."),
    seed: int = typer.Option(0, help="Everything follows from it."),
    json_out: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Generate a synthetic archive with known answers (QVHighlights-format annotations)."""
    _setup_logging(False)
    from core.synth.archive import SynthConfig, make_archive

    try:
        cfg = SynthConfig(n_train_videos=train_videos, n_val_videos=val_videos, n_test_videos=test_videos,
                          video_minutes=minutes, queries_per_video=queries_per_video, seed=seed)
        splits = make_archive(out, cfg)
    except GroundZeroError as e:
        raise _fail(e)
    rows = [(name, len(sp.videos), len(sp.queries), str(sp.annotations)) for name, sp in splits.items()]
    if json_out:
        render.print_json([dict(zip(("split", "videos", "queries", "annotations"), r)) for r in rows])
    else:
        render.stdout().print(render.rows_table(f"synthetic archive in {out}", ["split", "videos", "queries",
                                                                             "annotations"], rows))


@app.command()
def reindex(
    index_dir: Path = typer.Option(..., "--index", help="Index to update."),
    head: Optional[Path] = typer.Option(None, "--head", help="Grounding head whose learned context tokens to use."),
    zero_shot: bool = typer.Option(False, "--zero-shot", help="Go back to zero-shot context tokens."),
    device: str = typer.Option("cpu", help="cpu | cuda[:n]."),
    json_out: bool = typer.Option(False, "--json", help="Print the new snapshot's manifest as JSON."),
) -> None:
    """Recompute the context tokens of every proposal from stored embeddings (no decoding)."""
    _setup_logging(False)
    from core.errors import ConfigError
    from indexer.reindex import reindex as run_reindex

    try:
        if (head is None) == (not zero_shot):
            raise ConfigError("pass exactly one of --head HEAD or --zero-shot")
        m = run_reindex(index_dir, str(head) if head else None, device)
    except GroundZeroError as e:
        raise _fail(e)
    if json_out:
        render.print_json(m.to_dict())
    else:
        render.stdout().print(f"snapshot {m.version}: {m.n_videos} videos, {m.n_tokens} {m.params.token_kind} "
                              f"context tokens -> {index_dir}")


@app.command()
def train(
    index_dir: Path = typer.Option(..., "--index", help="Index whose frame embeddings to train on."),
    annotations: Path = typer.Option(..., "--annotations", help="QVHighlights jsonl, Charades-STA txt, "
                                     "Ego4D-NLQ json or MAD json; video ids match indexed file names."),
    out: Path = typer.Option(..., "--out", help="Checkpoint folder (config.json + model.safetensors)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="qvhighlights | charades | ego4d | mad "
                                      "(default: sniffed)."),
    epochs: int = typer.Option(100, help="Training epochs."),
    batch_size: int = typer.Option(32, help="Queries per batch."),
    lr: float = typer.Option(1e-4, help="AdamW learning rate."),
    size: str = typer.Option("full", help="Head size: full (RGNet's) | small (small backbones, CPU) | tiny."),
    tiny: bool = typer.Option(False, help="Same as --size tiny (tests, smoke runs)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda[:n]."),
    seed: int = typer.Option(2020, help="Random seed."),
    hard_negatives: Optional[float] = typer.Option(None, "--hard-negatives",
                                                   help="Share (0..1) of negative windows mined as hard: the "
                                                   "moment-free windows most like the sentence (default: "
                                                   "TrainConfig's)."),
    text_layers: str = typer.Option("-1", "--text-layers",
                                    help="Text-tower states the head reads per word, comma-separated: -1 = "
                                    "its output (RGNet), 0 = the input embeddings, k = block k. A backbone "
                                    "trained on single frames merges the words a frame cannot show "
                                    "(\"left\" / \"right\"); 0,-1 did not help the demo head (README)."),
    retrieval_group: Optional[int] = typer.Option(None, "--retrieval-group",
                                                  help="Positives per retrieval-contrastive group "
                                                  "(default: all positives of a batch)."),
    lookalike_groups: float = typer.Option(0.0, "--lookalike-groups",
                                           help="Share (0..1) of retrieval groups gathering look-alike "
                                           "sentences (needs --retrieval-group)."),
    motion_offsets: str = typer.Option("", "--motion-offsets",
                                       help="Frame offsets k, comma-separated, of a motion input: each frame's "
                                       "embedding k frames ahead minus k behind (e.g. 2,4,8); empty = none."),
    context_motion_offsets: str = typer.Option("", "--context-motion-offsets",
                                               help="Frame offsets k, comma-separated, of a motion term in the "
                                               "shortlist's context tokens (frame differences, so a token can "
                                               "tell which way something moved); empty = none."),
    sentence_negatives: int = typer.Option(0, "--sentence-negatives",
                                           help="Negative sentences per positive window: other sentences of the "
                                           "same video known not to be in it, the most alike first."),
    resume: bool = typer.Option(False, help="Continue the run saved in --out."),
    lora: bool = typer.Option(False, "--lora", help="Also fine-tune the image tower with LoRA (last 4 blocks); "
                              "reads frames from --archive instead of cached embeddings."),
    archive: Optional[Path] = typer.Option(None, "--archive", help="With --lora: the folder of the videos."),
    json_out: bool = typer.Option(False, "--json", help="Print the loss history as JSON."),
    verbose: bool = typer.Option(False, "-v", "--verbose"),
) -> None:
    """Train the grounding head (RGNet retriever + span/confidence heads) on an index's embeddings.

    With --lora the image tower is fine-tuned too and saved, merged, to OUT/backbone: a new
    model, so index the archive again with --model OUT/backbone before searching with the head.
    """
    _setup_logging(verbose)
    from core.model.train import TrainConfig
    from core.training import HeadJob, train_head

    try:
        job = HeadJob(index_dir=str(index_dir), annotations=str(annotations), out=str(out), fmt=fmt,
                      size="tiny" if tiny else size, device=device, resume=resume,
                      text_layers=_int_list(text_layers, "--text-layers"),
                      motion_offsets=_int_list(motion_offsets, "--motion-offsets") if motion_offsets else (),
                      context_motion_offsets=(_int_list(context_motion_offsets, "--context-motion-offsets")
                                              if context_motion_offsets else ()),
                      train=TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                                        lr_drop=(max(1, int(epochs * 0.8)),), retrieval_group=retrieval_group,
                                        lookalike_groups=lookalike_groups,
                                        sentence_negatives=sentence_negatives,
                                        **({} if hard_negatives is None else {"hard_negatives": hard_negatives})))
        loader = (lambda bb, vids, fps: _lora_frames(bb, archive, vids, fps)) if lora else None
        result = _train_with_progress(lambda cb: train_head(job, on_epoch=cb, lora_frames=loader), epochs,
                                      quiet=json_out)
    except GroundZeroError as e:
        raise _fail(e)
    if result.missing_videos:
        render.stderr().print(f"{len(result.missing_videos)} annotated videos are not in the index; "
                              f"trained on {result.n_queries} queries")
    if result.backbone_dir:
        render.stderr().print(f"fine-tuned backbone saved to {result.backbone_dir}: index the archive with "
                              f"--model {result.backbone_dir} before searching with this head")
    if json_out:
        render.print_json(result.history)
    else:
        last = result.history[-1] if result.history else {}
        render.stdout().print(f"trained {len(result.history)} epochs on {result.n_queries} queries; final loss "
                              f"{last.get('loss_total', float('nan')):.4f} -> {out}")


def _lora_frames(backbone, archive: Optional[Path], vids: set[str], fps: float):
    """Decode the annotated videos' frames (LoRA mode trains on pixels, not cached embeddings)."""
    from core.errors import ConfigError
    from core.model.lora import LoraImageEncoder
    from indexer.decode import DecodeConfig, iter_frames
    from indexer.sources import list_local

    if archive is None:
        raise ConfigError("--lora reads video frames: pass --archive with the folder of the indexed videos")
    files = {Path(e.rel_path).stem: e.uri for e in list_local(archive)}
    frames = {}
    for vid in sorted(vids):
        if vid not in files:
            raise ConfigError(f"--lora: video {vid} is in the index but not under {archive}")
        chunks = list(iter_frames(files[vid], DecodeConfig(fps=fps, size=backbone.image_size)))
        frames[vid] = np.concatenate([c.frames for c in chunks])  # (T, S, S, 3) uint8
    return LoraImageEncoder(backbone), frames


def _train_with_progress(run, epochs: int, quiet: bool):
    shown = ("loss_total", "loss_span", "loss_label", "loss_contrastive", "loss_confidence")
    with render.LazyProgress("training", disable=quiet) as bar:
        return run(lambda epoch, record: bar.update(epoch, epochs, "  ".join(
            f"{k.removeprefix('loss_')} {v:.3f}" for k, v in record.items() if k in shown)))


@app.command("eval")
def eval_(
    predictions: Optional[Path] = typer.Argument(None, help="Predictions in the QVHighlights submission format "
                                                 "(jsonl: qid, query, vid, pred_relevant_windows [[s, e, score]...]); "
                                                 "or leave out and pass --index to evaluate search itself."),
    gt: Path = typer.Option(..., "--gt", "--annotations", help="Ground truth: QVHighlights jsonl, Charades-STA, "
                            "Ego4D-NLQ or MAD."),
    index_dir: Optional[Path] = typer.Option(None, "--index", help="Evaluate search on this index."),
    head: Optional[Path] = typer.Option(None, "--head", help="With --index: the trained head (default: the "
                                        "index's, else zero-shot)."),
    out: Optional[Path] = typer.Option(None, "--out", help="With --index: write within-video predictions "
                                       "in the QVHighlights submission format."),
    device: str = typer.Option("auto", help="auto | cpu | cuda[:n]."),
    per_query: bool = typer.Option(False, "--per-query", help="With --index: also show every query's top "
                                   "corpus-wide result beside its true span, with the IoU."),
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Moment-retrieval metrics, exactly as the official QVHighlights evaluation computes them."""
    _setup_logging(False)
    from core.errors import ConfigError
    from core.model.metrics import qvhighlights_metrics, read_submission, write_submission

    try:
        queries = _read_gt(gt)
        if index_dir is not None:
            from search.evaluate import evaluate
            from search.searcher import Searcher

            ev = evaluate(Searcher(index_dir, device=device, head=str(head) if head else None), queries)
            if ev.n_queries == 0:
                raise ConfigError(f"none of the videos named in {gt} is in {index_dir}")
            metrics, title = ev.metrics, f"{index_dir} vs {gt.name} ({ev.n_queries} queries)"
            rows = ev.per_query
            if out is not None:
                write_submission(out, ev.predictions)
        elif predictions is not None:
            rows = []
            if not predictions.is_file():
                raise ConfigError(f"predictions file {predictions} does not exist")
            preds = read_submission(predictions)
            gts = [{"qid": q.qid, "relevant_windows": [list(w) for w in q.windows]} for q in queries if q.windows]
            qids = {str(g["qid"]) for g in gts}
            metrics = qvhighlights_metrics([p for p in preds if str(p["qid"]) in qids], gts)
            title = f"{predictions.name} vs {gt.name} ({len(gts)} queries)"
        else:
            raise ConfigError("pass a predictions file, or --index to evaluate search on an index")
    except GroundZeroError as e:
        raise _fail(e)
    if json_out:
        render.print_json({**metrics, "per_query": rows} if per_query else metrics)
        return
    if per_query and rows:
        render.stdout().print(render.per_query_table(rows))
    keys = [k for k in metrics if not k.startswith("MR-") or k in (
        "MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "MR-full-mAP@0.5", "MR-full-mAP@0.75",
        "MR-long-mAP", "MR-middle-mAP", "MR-short-mAP")]
    render.stdout().print(render.rows_table(title, ["metric", "value"], [(k, f"{metrics[k]:.4g}") for k in keys]))


def _read_gt(path: Path):
    from core.errors import ConfigError
    from core.model.annotations import read_annotations

    if not path.is_file():
        raise ConfigError(f"ground-truth file {path} does not exist")
    return read_annotations(path)


@app.command()
def serve(
    index_dir: str = typer.Option(..., "--index", help="Index directory built by `groundzero index`."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; anything but loopback needs --token."),
    port: int = typer.Option(8000, help="TCP port (0: any free port)."),
    token: Optional[str] = typer.Option(None, envvar="GROUNDZERO_TOKEN", show_envvar=True,
                                        help="Access token; API requests then need 'Authorization: Bearer TOKEN'."),
    model: Optional[str] = typer.Option(None, help="Query model; default: the one that built the index."),
    head: Optional[Path] = typer.Option(None, "--head", help="Trained grounding head; default: the one the index's "
                                        "context tokens were made with, else zero-shot."),
    device: str = typer.Option("auto", help="auto | cpu | cuda[:n]."),
    reload_every: float = typer.Option(5.0, help="Seconds between checks for a newer index snapshot "
                                       "(negative: never reload)."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Log every request."),
) -> None:
    """Serve the search page and the JSON API over --index (loopback only, unless a token is set)."""
    _setup_logging(verbose)
    from search.service.app import create_app
    from search.service.config import ServeConfig
    from search.service.server import serve_forever

    try:
        cfg = ServeConfig(index_dir=index_dir, host=host, port=port, token=token or None, model=model,
                          head=str(head) if head else None, device=device, reload_every_sec=reload_every).validate()
        application = create_app(cfg)
    except GroundZeroError as e:
        raise _fail(e)

    def ready(url: str) -> None:
        note = " (API requests need the token; open the page as /?token=...)" if cfg.token else ""
        render.stdout().print(f"serving {index_dir} at {url}{note}; Ctrl-C to stop", highlight=False)
        sys.stdout.flush()

    try:
        serve_forever(application, host, port, ready, log_level="info" if verbose else "warning")
    except OSError as e:
        render.stderr().print(f"[bold red]error:[/] cannot listen on {host}:{port}: {e.strerror or e}; "
                              "pick another --port", highlight=False)
        raise typer.Exit(1)


def _print_problems(root: Path, version: int, json_out: bool) -> None:
    from core.store.check import errors, verify_index

    problems = verify_index(root, deep=True)
    if json_out:
        render.print_json([p.__dict__ for p in problems])
    else:
        for p in problems:
            render.stdout().print(str(p), highlight=False)
        render.stdout().print(f"snapshot {version}: {len(errors(problems))} errors, "
                              f"{len(problems) - len(errors(problems))} warnings")
    if errors(problems):
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
