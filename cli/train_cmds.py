"""``groundzero train``, ``eval`` and ``synth``: a grounding head, its metrics, a test archive."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from groundzero.cli import render
from groundzero.cli.common import Device, Verbose, json_flag, opt_str, reported, setup_logging
from groundzero.errors import ConfigError

#: HeadJob / TrainConfig / LoRA loader field -> flag of `train`
TRAIN_FLAGS = {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr", "seed": "--seed",
               "resume": "--resume", "archive": "--archive"}
#: the losses the progress bar shows
SHOWN_LOSSES = ("loss_total", "loss_span", "loss_label", "loss_contrastive", "loss_confidence")


def train(
    index_dir: Annotated[Path, typer.Option("--index", help="Index whose frame embeddings to train on.")],
    annotations: Annotated[Path, typer.Option(
        help="QVHighlights jsonl, Charades-STA txt, Ego4D-NLQ or MAD json; video ids = indexed "
        "file names.")],
    out: Annotated[Path, typer.Option(help="Checkpoint folder (config.json + model.safetensors).")],
    fmt: Annotated[str | None, typer.Option(
        "--format", help="qvhighlights | charades | ego4d | mad (default: sniffed).")] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs (LR x0.1 at 80 %).")] = 100,
    batch_size: Annotated[int, typer.Option(help="Queries per batch.")] = 32,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 1e-4,
    size: Annotated[str, typer.Option(
        help="Head size: full (RGNet's) | small (small backbones, CPU) | tiny (tests).")] = "full",
    device: Device = "auto",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 2020,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run saved in --out.")] = False,
    lora: Annotated[bool, typer.Option(
        "--lora", help="Also fine-tune the image tower (LoRA); reads frames from --archive.")] = False,
    archive: Annotated[Path | None, typer.Option(
        help="With --lora: the folder of the indexed videos.")] = None,
    json_out: Annotated[bool, json_flag("the loss history")] = False,
    verbose: Verbose = False,
) -> None:
    """Train a grounding head (RGNet) on an index's frame embeddings.

    With --lora the fine-tuned image tower is saved to OUT/backbone, a new model:
    index the archive again with --model OUT/backbone before using the head.
    """
    setup_logging(verbose)
    from groundzero.training.job import HeadJob, train_head
    from groundzero.training.loop import TrainConfig
    from groundzero.training.lora_data import lora_frames_loader

    with reported(TRAIN_FLAGS):
        job = HeadJob(index_dir=str(index_dir), annotations=str(annotations), out=str(out), fmt=fmt,
                      size=size, device=device, resume=resume,
                      train=TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                                        lr_drop=(max(1, int(epochs * 0.8)),)))
        loader = lora_frames_loader(archive) if lora else None
        with render.LazyProgress("training", disable=json_out) as bar:
            result = train_head(job, lora_frames=loader, on_epoch=lambda epoch, record: bar.update(
                epoch, epochs, "  ".join(f"{k.removeprefix('loss_')} {v:.3f}"
                                         for k, v in record.items() if k in SHOWN_LOSSES)))
    err = render.stderr()
    if result.missing_videos:
        err.print(f"{len(result.missing_videos)} annotated videos are not in the index; "
                  f"trained on {result.n_queries} queries")
    if result.backbone_dir:
        err.print(f"fine-tuned backbone saved to {result.backbone_dir}: index the archive with "
                  f"--model {result.backbone_dir} before searching with this head")
    if json_out:
        render.print_json(result.history)
    else:
        last = result.history[-1] if result.history else {}
        render.stdout().print(f"trained {len(result.history)} epochs on {result.n_queries} queries; "
                              f"final loss {last.get('loss_total', float('nan')):.4f} -> {out}")


def eval_(
    gt: Annotated[Path, typer.Option(
        "--gt", "--annotations", help="Ground truth: QVHighlights, Charades-STA, Ego4D-NLQ or MAD.")],
    predictions: Annotated[Path | None, typer.Argument(
        help="QVHighlights submission jsonl (qid, query, vid, pred_relevant_windows); or leave "
        "out and pass --index to evaluate search itself.")] = None,
    index_dir: Annotated[Path | None, typer.Option("--index", help="Evaluate search on this index.")] = None,
    head: Annotated[Path | None, typer.Option(
        help="With --index: the trained head (default: the index's, else zero-shot).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="With --index: write within-video predictions as a QVHighlights submission.")] = None,
    device: Device = "auto",
    per_query: Annotated[bool, typer.Option(
        "--per-query", help="With --index: each query's top result beside its truth, with the IoU.")] = False,
    json_out: Annotated[bool, json_flag("the metrics")] = False,
) -> None:
    """Moment-retrieval metrics, as the official QVHighlights script."""
    setup_logging(False)
    from groundzero.data.annotations import read_annotations
    from groundzero.data.submission import evaluate_submission, write_submission

    with reported():
        if index_dir is None and predictions is None:
            raise ConfigError("pass a predictions file, or --index to evaluate search on an index")
        queries = read_annotations(gt)
        rows: list[dict] = []
        if index_dir is not None:
            from groundzero.search.evaluate import evaluate
            from groundzero.search.searcher import Searcher

            ev = evaluate(Searcher(index_dir, device=device, head=opt_str(head)), queries)
            if ev.n_queries == 0:
                raise ConfigError(f"none of the videos named in {gt} is in {index_dir}")
            if out is not None:
                write_submission(out, ev.predictions)
            values, rows = ev.metrics, ev.per_query
            title = f"{index_dir} vs {gt.name} ({ev.n_queries} queries)"
        else:
            values = evaluate_submission(predictions, queries)
            title = f"{predictions.name} vs {gt.name} ({sum(1 for q in queries if q.windows)} queries)"
    render.metrics(title, values, rows if per_query else None, json_out)


def synth(
    out: Annotated[Path, typer.Argument(
        help="Folder to write the archive into ({train,val,test}/*.mp4 + *.jsonl).")],
    train_videos: Annotated[int, typer.Option(help="Videos in the train split.")] = 8,
    val_videos: Annotated[int, typer.Option(help="Videos in the val split.")] = 2,
    test_videos: Annotated[int, typer.Option(
        help="Videos in the test split (held-out attribute pairs).")] = 2,
    minutes: Annotated[float, typer.Option(help="Length of every video, minutes.")] = 10.0,
    queries_per_video: Annotated[int, typer.Option(
        help="Queries written per video (about 20 % not found).")] = 6,
    seed: Annotated[int, typer.Option(help="Everything follows from it.")] = 0,
    json_out: Annotated[bool, json_flag("what was written")] = False,
) -> None:
    """Generate a synthetic archive with known answers.

    Videos of moving shapes under OUT/{train,val,test}/, their queries in OUT/*.jsonl.
    """
    setup_logging(False)
    from groundzero.synthetic.archive import SynthConfig, make_archive

    with reported():
        cfg = SynthConfig(n_train_videos=train_videos, n_val_videos=val_videos, n_test_videos=test_videos,
                          video_minutes=minutes, queries_per_video=queries_per_video, seed=seed)
        splits = make_archive(out, cfg)
    rows = [(name, len(sp.videos), len(sp.queries), str(sp.annotations)) for name, sp in splits.items()]
    if json_out:
        render.print_json([dict(zip(("split", "videos", "queries", "annotations"), r)) for r in rows])
    else:
        render.stdout().print(render.rows_table(f"synthetic archive in {out}",
                                                ["split", "videos", "queries", "annotations"], rows))
