"""Build the demo model from scratch: a small SigLIP backbone and a grounding head.

    python -m groundzero.synthetic.build --out OUT --install               # rebuild the shipped model
    python -m groundzero.synthetic.build --out OUT-quick --quick           # minutes, smoke run
    python -m groundzero.synthetic.build --out OUT --recalibrate --install # step 5's calibrations (and 6)

Steps (each logged with its wall time):

1. render ``--frames`` training items with captions (``groundzero.synthetic``): single frames with what they
   show, and two-frame clips of an event with its sentence, also time-reversed (``--clip-fraction``,
   ``--reverse-fraction``), at the archive's
   160x120, through its H.264 encoder and back through the indexer's decoder (so the backbone
   trains on exactly the pixels an index gives it; ``--direct-frames``: rendered straight at
   64x64), and train a SigLIP
   (``groundzero.synthetic.siglip_train``, real ``SiglipModel`` architecture, sigmoid loss) ->
   ``OUT/backbone``;
2. generate a synthetic archive (``groundzero.synthetic.make_archive``: train and val splits; the
   held-out test split is bench/accuracy.py's) -> ``OUT/archive``;
3. index its train split with that backbone (the real Ray Data pipeline) -> ``OUT/index-train``;
4. train the grounding head ("small" preset) on the train split's annotations
   (``groundzero.training.job``) -> ``OUT/head``;
5. index the val split with both, and calibrate on it the weight of the clip check
   (:func:`~groundzero.synthetic.calibrate.calibrate_clip_weight`; declared in the head's
   config.json as its re-scorer, :mod:`groundzero.synthetic.clip_check`) and the head's "not found"
   threshold (:func:`~groundzero.synthetic.calibrate.calibrate_found_threshold`);
6. with ``--install``: copy the shipped files (no optimizer state) into the bundled demo model
   (:data:`groundzero.synthetic.model.BUNDLED`).

Uses the GPU when there is one. The test split is never touched here:
``bench/accuracy.py`` measures it. Wall time of each step goes to ``OUT/build_report.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

log = logging.getLogger("groundzero.synthetic.build")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks the steps, not the accuracy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--backbone-epochs", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=64, help="the backbone's input side, pixels")
    ap.add_argument("--vision-pos-init", choices=("sincos-2d", "random"), default="sincos-2d",
                    help="the backbone's initial vision position embeddings (SiglipTrainConfig.vision_pos_init)")
    ap.add_argument("--state-fraction", type=float, default=0.5,
                    help="share of the backbone's captions that say what the frame shows (position, size) "
                         "rather than the event's sentence (frames_and_captions)")
    ap.add_argument("--train-videos", type=int, default=64)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--head-epochs", type=int, default=12)
    ap.add_argument("--queries-per-video", type=int, default=16)
    ap.add_argument("--head-lr", type=float, default=4e-4)
    ap.add_argument("--retrieval-group", type=int, default=8,
                    help="positives per retrieval-contrastive group (see TrainConfig.retrieval_group)")
    ap.add_argument("--install", action="store_true",
                    help="copy the result into the bundled demo model (groundzero.synthetic, model name 'demo'), replacing it")
    ap.add_argument("--recalibrate", action="store_true",
                    help="only step 5's calibration, on an existing build in --out (OUT/index-val, OUT/head)")
    ap.add_argument("--direct-frames", action="store_true",
                    help="render the backbone's frames straight at its input size instead of through the "
                         "archive's H.264 encode and the indexer's decode")
    ap.add_argument("--contrast-fraction", type=float, default=0.0,
                    help="share of the state captions that get a contrast partner in the same batch "
                         "(frames_and_captions, train_siglip groups)")
    ap.add_argument("--clip-fraction", type=float, default=1.0,
                    help="share of the backbone's sentence captions shown a two-frame clip (first and last "
                         "third of the event) instead of one frame (frames_and_captions, train_siglip items; "
                         "0: single frames only)")
    ap.add_argument("--reverse-fraction", type=float, default=1.0,
                    help="share of those clips also shown time-reversed with the reversed sentence "
                         "(moving left <-> right, appears <-> disappears), in the same batch")
    ap.add_argument("--backbone", type=Path, default=None,
                    help="reuse this trained backbone (skips step 1)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch

    from groundzero.data.annotations import read_annotations
    from groundzero.indexer.config import IndexConfig
    from groundzero.indexer.decode import DecodeConfig, decode_frames
    from groundzero.indexer.pipeline import run_index
    from groundzero.model.checkpoint import update_config
    from groundzero.search.searcher import Searcher
    from groundzero.synthetic.archive import SynthConfig, make_archive
    from groundzero.synthetic.calibrate import calibrate_clip_weight, calibrate_found_threshold
    from groundzero.synthetic.captions import frames_and_captions
    from groundzero.synthetic.clip_check import load_clip_adapter
    from groundzero.synthetic.model import BUNDLED
    from groundzero.synthetic.siglip_config import SiglipTrainConfig
    from groundzero.synthetic.siglip_train import train_siglip
    from groundzero.training.job import HeadJob, train_head
    from groundzero.training.loop import TrainConfig

    if args.quick:
        args.frames, args.backbone_epochs, args.train_videos, args.minutes, args.head_epochs = 1500, 3, 2, 2.0, 3
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "device": device, "steps": {}}

    def step(name: str, fn):
        t0 = time.perf_counter()
        result = fn()
        report["steps"][name] = round(time.perf_counter() - t0, 1)
        log.info("%s done in %.1f s", name, report["steps"][name])
        return result

    def calibrate() -> None:
        searcher = Searcher(out / "index-val", device=device)
        threshold, stats = calibrate_found_threshold(searcher, read_annotations(out / "archive" / "val.jsonl"))
        update_config(out / "head", {"found_threshold": threshold, "found_calibration": stats})
        report["found_threshold"], report["found_calibration"] = threshold, stats

    def calibrate_check() -> None:
        update_config(out / "head", {"rescorer": None})  # calibrate the head's own spans
        searcher = Searcher(out / "index-val", device=device)
        if load_clip_adapter(searcher.backbone.model_dir, searcher.backbone.embed_dim) is None:
            report["rescorer"] = None  # a backbone trained without clips: no check
            return
        weight, stats = calibrate_clip_weight(searcher, read_annotations(out / "archive" / "val.jsonl"))
        update_config(out / "head", {"rescorer": {"name": "clip-check", "weight": weight},
                                     "rescorer_calibration": stats})
        report["rescorer"], report["rescorer_calibration"] = {"name": "clip-check", "weight": weight}, stats

    def finish() -> None:
        if args.install:
            step("install", lambda: install(out / "backbone" if args.backbone is None else args.backbone,
                                            out / "head", BUNDLED))
        report["total_s"] = round(sum(report["steps"].values()), 1)
        name = "recalibrate_report.json" if args.recalibrate else "build_report.json"
        (out / name).write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))

    if args.recalibrate:
        step("calibrate clip check", calibrate_check)
        step("calibrate not-found threshold", calibrate)
        return finish()
    synth = SynthConfig(n_train_videos=args.train_videos, n_val_videos=max(1, args.train_videos // 4),
                        n_test_videos=0, video_minutes=args.minutes, seed=args.seed,  # test: bench/accuracy.py
                        queries_per_video=args.queries_per_video)
    scfg = SiglipTrainConfig(epochs=args.backbone_epochs, image_size=args.image_size, seed=args.seed, device="auto",
                             vision_pos_init=args.vision_pos_init)
    if args.quick:
        scfg = replace(scfg, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, batch_size=64,
                       warmup_steps=10)
    backbone = out / "backbone"
    if args.backbone is None:
        as_indexed = DecodeConfig(fps=1.0, size=scfg.image_size)  # what indexing feeds the backbone
        decode = None if args.direct_frames else (lambda clip: decode_frames(clip, as_indexed))
        data = step("render frames", lambda: frames_and_captions(
            synth, args.frames, args.seed, image_size=scfg.image_size, decode=decode,
            state_fraction=args.state_fraction, contrast_fraction=args.contrast_fraction,
            clip_fraction=args.clip_fraction, reverse_fraction=args.reverse_fraction))
        history = step("train backbone", lambda: train_siglip(data.images, data.captions, backbone, scfg,
                                                              groups=data.groups, items=data.items))
        report["backbone_frames"], report["backbone_clips"] = len(data.images), history["n_clips"]
        report["backbone_val_reverse_accuracy"] = history["val_reverse_accuracy"][-1]
        report["backbone_val_accuracy"] = history["val_accuracy"][-1] if history["val_accuracy"] else None
    else:
        backbone = args.backbone
    splits = step("make archive", lambda: make_archive(out / "archive", synth))
    step("index train split", lambda: run_index(IndexConfig(archive=str(out / "archive" / "train"),
                                                            index_dir=str(out / "index-train"),
                                                            model=str(backbone), device=device)))
    import ray

    ray.shutdown()  # its idle workers would take CPU from the head's training; the val index restarts it
    job = HeadJob(index_dir=str(out / "index-train"), annotations=str(splits["train"].annotations),
                  out=str(out / "head"), size="tiny" if args.quick else "small", device=device,
                  train=TrainConfig(epochs=args.head_epochs, batch_size=32, lr=args.head_lr, seed=args.seed,
                                    retrieval_group=args.retrieval_group,
                                    lr_drop=(max(1, int(args.head_epochs * 0.8)),), save_every=10))
    def log_epoch(epoch: int, record: dict) -> None:
        if record:
            log.info("head epoch %d/%d: loss %.3f (contrastive %.3f, confidence %.3f)", epoch, args.head_epochs,
                     record["loss_total"], record.get("loss_contrastive", float("nan")),
                     record.get("loss_confidence", float("nan")))

    result = step("train head", lambda: train_head(job, on_epoch=log_epoch))
    report["head_final_loss"] = result.history[-1]["loss_total"]
    step("index val split", lambda: run_index(IndexConfig(archive=str(out / "archive" / "val"),
                                                          index_dir=str(out / "index-val"), model=str(backbone),
                                                          head=str(out / "head"), device=device)))

    step("calibrate clip check", calibrate_check)
    step("calibrate not-found threshold", calibrate)
    finish()


#: the files that make up a shipped model (no optimizer state, no training history)
BACKBONE_FILES = ("config.json", "model.safetensors", "clip_adapter.safetensors", "preprocessor_config.json",
                  "siglip_train.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
HEAD_FILES = ("config.json", "model.safetensors")


def install(backbone: Path, head: Path, dest: Path) -> None:
    """Replace ``dest/backbone`` and ``dest/head`` with the shipped files of a build."""
    import shutil

    for src, name, files in ((backbone, "backbone", BACKBONE_FILES), (head, "head", HEAD_FILES)):
        tmp = dest / f".{name}.new"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for f in files:
            if (src / f).is_file():
                shutil.copy2(src / f, tmp / f)
        shutil.rmtree(dest / name, ignore_errors=True)
        tmp.rename(dest / name)
    log.info("installed %s and %s into %s", backbone, head, dest)


if __name__ == "__main__":
    main()
