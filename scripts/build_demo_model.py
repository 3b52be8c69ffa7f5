"""Build the demo model from scratch: a small SigLIP backbone and a grounding head.

    .venv/bin/python scripts/build_demo_model.py --out /tmp/gz-demo-model            # full size
    .venv/bin/python scripts/build_demo_model.py --out /tmp/gz-demo-quick --quick    # minutes, smoke run

Steps (each logged with its wall time):

1. render ``--frames`` synthetic frames with captions (``core.synth``) and train a SigLIP
   (``core.model.siglip_train``, real ``SiglipModel`` architecture, sigmoid loss) ->
   ``OUT/backbone``;
2. generate a synthetic archive (``core.synth.make_archive``) -> ``OUT/archive``;
3. index its train split with that backbone (the real Ray Data pipeline) -> ``OUT/index-train``;
4. train the grounding head on the train split's annotations (``core.training``) -> ``OUT/head``.

Uses the GPU when there is one. Status: the pipeline runs end to end (``--quick``);
the full-size run, its accuracy and shipping the result as the default model are
still to do (issue #4).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

log = logging.getLogger("build_demo_model")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks the steps, not the accuracy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--backbone-epochs", type=int, default=10)
    ap.add_argument("--train-videos", type=int, default=8)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--head-epochs", type=int, default=60)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch

    from core.model.siglip_train import SiglipTrainConfig, train_siglip
    from core.model.train import TrainConfig
    from core.synth.archive import SynthConfig, frames_and_captions, make_archive
    from core.training import HeadJob, train_head
    from indexer.config import IndexConfig
    from indexer.pipeline import run_index

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

    synth = SynthConfig(n_train_videos=args.train_videos, n_val_videos=max(1, args.train_videos // 4),
                        n_test_videos=max(1, args.train_videos // 4), video_minutes=args.minutes, seed=args.seed)
    scfg = SiglipTrainConfig(epochs=args.backbone_epochs, seed=args.seed, device="auto")
    if args.quick:
        scfg = SiglipTrainConfig(epochs=args.backbone_epochs, hidden_size=32, num_layers=2, num_heads=2,
                                 intermediate_size=64, batch_size=64, warmup_steps=10, seed=args.seed)
    images, captions = step("render frames", lambda: frames_and_captions(synth, args.frames, args.seed,
                                                                         image_size=scfg.image_size))
    history = step("train backbone", lambda: train_siglip(images, captions, out / "backbone", scfg))
    report["backbone_val_accuracy"] = history["val_accuracy"][-1] if history["val_accuracy"] else None
    splits = step("make archive", lambda: make_archive(out / "archive", synth))
    step("index train split", lambda: run_index(IndexConfig(archive=str(out / "archive" / "train"),
                                                            index_dir=str(out / "index-train"),
                                                            model=str(out / "backbone"), device=device)))
    job = HeadJob(index_dir=str(out / "index-train"), annotations=str(splits["train"].annotations),
                  out=str(out / "head"), tiny=args.quick, device=device,
                  train=TrainConfig(epochs=args.head_epochs, batch_size=32, lr=1e-4, seed=args.seed,
                                    lr_drop=(max(1, int(args.head_epochs * 0.8)),), save_every=10))
    result = step("train head", lambda: train_head(job))
    report["head_final_loss"] = result.history[-1]["loss_total"]
    report["total_s"] = round(sum(report["steps"].values()), 1)
    (out / "build_report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
