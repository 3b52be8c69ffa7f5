"""``groundzero index`` and ``groundzero reindex``: build an index, renew its context tokens."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from groundzero.cli import render
from groundzero.cli.common import (
    EXIT_SOME_FAILED,
    S3_FLAGS,
    CacheDir,
    EndpointUrl,
    Verbose,
    error,
    json_flag,
    opt_str,
    reported,
    setup_logging,
)
from groundzero.errors import ConfigError

#: IndexConfig / ProposalConfig / S3Config field -> flag of `index`
INDEX_FLAGS = {"fps": "--fps", "window_sec": "--window", "stride_sec": "--stride",
               "tokens_per_proposal": "--tokens-per-proposal", "embed_batch_size": "--batch-size",
               "embed_actors": "--workers", "embed_threads": "--threads", "precision": "--precision",
               "commit_every": "--commit-every",
               "commit_every_sec": "--commit-every-sec", "asr_model": "--asr-model",
               "asr_language": "--asr-language", "reuse_still": "--reuse-still", "max_patches": "--max-patches",
               **S3_FLAGS}


def index(
    archive: Annotated[str, typer.Argument(
        help="Folder of videos (searched recursively), or s3://bucket/prefix.")],
    index_dir: Annotated[str, typer.Option(
        "--index", help="Index directory (created if missing), or s3://bucket/prefix.")],
    model: Annotated[str | None, typer.Option(
        help="SigLIP checkpoint dir, hub id, or 'demo' (the synthetic demo model). Default: the "
        "index's model; for a new index google/siglip2-so400m-patch14-384 on a GPU, "
        "google/siglip2-base-patch16-224 on a CPU.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda[:n], for the image tower.")] = "auto",
    fps: Annotated[float, typer.Option(help="Frames sampled per second of video.")] = 1.0,
    window: Annotated[float, typer.Option(help="Proposal window length, seconds.")] = 48.0,
    stride: Annotated[float, typer.Option(help="Hop between proposal windows, seconds.")] = 24.0,
    tokens_per_proposal: Annotated[int, typer.Option(
        "--tokens-per-proposal", help="Context tokens per proposal.")] = 6,
    batch_size: Annotated[int, typer.Option(help="Frames per image-tower batch.")] = 32,
    workers: Annotated[int | None, typer.Option(
        help="Embedding actors. Default: one per GPU on CUDA; on CPUs sized to the cores, a quarter "
        "(at least one) kept for decoding.", show_default=False)] = None,
    threads: Annotated[int | None, typer.Option(
        "--threads", help="Torch threads (and Ray CPUs) per embedding actor. Default: sized with "
        "--workers.", show_default=False)] = None,
    precision: Annotated[str, typer.Option(
        help="auto | fp32 | bf16 | int8, for the image tower. auto: the index's own precision; for a new "
        "index bf16 on a GPU and on CPUs with native bf16 (avx512_bf16 / amx_bf16), else fp32. int8: "
        "ONNX Runtime with int8 weights, CPUs only, built once per model and cached. Recorded in "
        "the index; a later run with another precision is refused.")] = "auto",
    max_patches: Annotated[int | None, typer.Option(
        "--max-patches", help="NaFlex models (siglip2-*-naflex) only: patches per frame, the aspect "
        "ratio kept. Default: the index's own, else the checkpoint's (256). Recorded in the index.",
        show_default=False)] = None,
    captions: Annotated[bool, typer.Option(
        "--captions/--no-captions", help="Index what is said from subtitle files beside each video "
        "(same name, .srt / .vtt) or subtitle streams inside it.")] = True,
    asr: Annotated[bool, typer.Option(
        "--asr", help="Transcribe videos without captions (speech recognition, faster-whisper; the "
        "model: --asr-model).")] = False,
    asr_model: Annotated[str | None, typer.Option(
        "--asr-model", help="The speech recognition model (implies --asr): a faster-whisper hub id or "
        "local CTranslate2 directory. Default: Systran/faster-whisper-small.")] = None,
    asr_language: Annotated[str | None, typer.Option(
        "--asr-language", help="Language of the speech, e.g. 'en' (default: detected per video).")] = None,
    ocr: Annotated[bool, typer.Option(
        "--ocr/--no-ocr", help="Index the text shown on screen (slides, titles, exhibits), read where "
        "the picture changes (about 2 CPU-minutes per video hour of slides).")] = False,
    reuse_still: Annotated[bool, typer.Option(
        "--reuse-still/--no-reuse-still", help="A frame whose picture barely changed from the last "
        "embedded frame (a slide, a still shot) reuses its embedding instead of being embedded again; "
        "every frame is still stored.")] = True,
    exclude: Annotated[list[str] | None, typer.Option(
        metavar="GLOB", help="Leave out matching files (repeatable), e.g. '*.json'.")] = None,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="Retry unchanged files that failed before.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print what the run would do.")] = False,
    head: Annotated[Path | None, typer.Option(
        help="Grounding head whose context tokens the index uses (default: the one reindex "
        "recorded, else zero-shot).")] = None,
    endpoint_url: EndpointUrl = None,
    cache_dir: CacheDir = None,
    tmp_dir: Annotated[str | None, typer.Option(
        help="Where decode tasks download S3 videos (default: the system temp dir).")] = None,
    commit_every: Annotated[int, typer.Option(
        "--commit-every", help="Publish a snapshot after this many finished videos...")] = 50,
    commit_every_sec: Annotated[float, typer.Option(
        "--commit-every-sec", help="...or this many seconds, whichever comes first.")] = 600.0,
    json_out: Annotated[bool, json_flag("the run report")] = False,
    verbose: Verbose = False,
) -> None:
    """Index the videos under ARCHIVE into --index, incrementally.

    ARCHIVE and --index may be local or s3://bucket/prefix (AWS credential chain).
    Exit status 3: finished, but some files failed (`groundzero catalog failed`); 1: the run
    failed (e.g. the disk is full); 130 / 143: stopped by Ctrl-C / SIGTERM. Whatever stops a
    run, what it committed is kept and the next run carries on.
    """
    setup_logging(verbose)
    from groundzero.data.proposals import ProposalConfig
    from groundzero.indexer.asr import SUGGESTED_MODEL
    from groundzero.indexer.channels import ChannelsConfig
    from groundzero.indexer.config import IndexConfig
    from groundzero.indexer.ocr import OcrConfig
    from groundzero.indexer.pipeline import run_index
    from groundzero.indexer.plan import plan_index
    from groundzero.indexer.stops import RunStopped, stop_on_signals
    from groundzero.indexer.transcripts import TranscriptConfig
    from groundzero.store.s3 import S3Config

    try:
        with stop_on_signals(), reported(INDEX_FLAGS):
            cfg = IndexConfig(
                archive=archive, index_dir=index_dir, device=device, fps=fps,
                proposals=ProposalConfig(window, stride, tokens_per_proposal), embed_batch_size=batch_size,
                embed_actors=workers, embed_threads=threads, precision=precision,
                exclude=tuple(exclude or ()), retry_failed=retry_failed,
                dry_run=dry_run, head=opt_str(head), s3=S3Config(endpoint_url=endpoint_url),
                cache_dir=cache_dir, tmp_dir=tmp_dir, commit_every=commit_every,
                commit_every_sec=commit_every_sec, reuse_still=reuse_still, max_patches=max_patches,
                **({"model": model} if model else {}),
                channels=ChannelsConfig(
                    TranscriptConfig(asr_model=asr_model or (SUGGESTED_MODEL if asr else None),
                                     asr_language=asr_language, asr_device=device, captions=captions),
                    OcrConfig() if ocr else None))
            if dry_run:
                render.index_plan(plan_index(cfg), json_out)
                return
            with render.LazyProgress("indexing", disable=json_out) as bar:
                report = run_index(cfg, lambda p: bar.update(
                    p.indexed + p.failed, p.total, f"{p.frames} frames embedded, {p.failed} failed  {p.last}"))
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (RunStopped): Ray shuts down as the process exits
        signum = e.signum if isinstance(e, RunStopped) else signal.SIGINT
        error(f"the run was stopped by {signal.Signals(signum).name}; the videos it committed are kept, "
              "run it again to index the rest")
        raise typer.Exit(128 + signum) from None
    render.index_report(report, index_dir, json_out)
    if report.record.n_failed:
        raise typer.Exit(EXIT_SOME_FAILED)


def reindex(
    index_dir: Annotated[Path, typer.Option("--index", help="Index to update.")],
    head: Annotated[Path | None, typer.Option(
        help="Grounding head whose learned context tokens to use.")] = None,
    zero_shot: Annotated[bool, typer.Option(
        "--zero-shot", help="Go back to zero-shot context tokens.")] = False,
    device: Annotated[str, typer.Option(help="cpu | cuda[:n].")] = "cpu",
    json_out: Annotated[bool, json_flag("the new snapshot's manifest")] = False,
) -> None:
    """Recompute context tokens from stored embeddings (no decoding)."""
    setup_logging(False)
    from groundzero.indexer.reindex import reindex as run_reindex

    with reported():
        if (head is None) == (not zero_shot):
            raise ConfigError("pass exactly one of --head HEAD or --zero-shot")
        m = run_reindex(index_dir, opt_str(head), device)
    if json_out:
        render.print_json(m.to_dict())
    else:
        render.stdout().print(f"snapshot {m.version}: {m.n_videos} videos, {m.n_tokens} "
                              f"{m.params.token_kind} context tokens -> {index_dir}")
