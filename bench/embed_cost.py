"""What embedding frames costs on this machine, per model size: images/s and minutes per video hour.

    .venv/bin/python bench/embed_cost.py --workdir WORKDIR [--sizes base so400m] [--batch 16] [--seconds 30]

Random weights in the real SigLIP architectures (:class:`TinySiglipConfig` presets: SigLIP 2
base-224, So400m-384, and their NaFlex twins ``base-naflex`` / ``so400m-naflex``: 16 px patches,
256 a frame, fed 16:9 frames at their NaFlex size, 192x336), through :meth:`Backbone.embed_images`
as the embed actors call it, in float32, bfloat16 and int8 (ONNX Runtime, fixed resolution only; its
build is cached in GROUNDZERO_CACHE_DIR and not timed). One video hour at 1 fps is 3,600 frames.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--sizes", nargs="+", default=["base"], choices=("base", "so400m", "base-naflex", "so400m-naflex"))
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "int8"], choices=("fp32", "bf16", "int8"))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=30.0, help="time spent per measurement")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import numpy as np
    import torch

    from groundzero.model.backbone import Backbone
    from groundzero.model.naflex import naflex_size
    from groundzero.model.precision import torch_dtype
    from groundzero.model.tiny import TinySiglipConfig, build_tiny_siglip

    report = {"threads": torch.get_num_threads(), "batch": args.batch, "device": args.device, "rows": []}
    for size in args.sizes:
        shape = TinySiglipConfig.siglip2_base() if size.startswith("base") else TinySiglipConfig.so400m()
        hw = (shape.image_size, shape.image_size)
        if size.endswith("naflex"):  # Google's NaFlex releases: 16 px patches on a 16 x 16 position grid
            shape = replace(shape, image_size=256, patch_size=16, naflex_patches=256)
            hw = naflex_size(720, 1280, 16, 256)
        model = args.workdir / f"siglip-{size}-random"
        if not (model / "model.safetensors").is_file():
            build_tiny_siglip(model, shape)
        frames = np.random.default_rng(0).integers(0, 256, (args.batch, *hw, 3), dtype=np.uint8)
        for precision in args.precisions:
            if precision == "int8" and size.endswith("naflex"):
                continue  # fixed-resolution checkpoints only
            kw = {"int8_images": True, "threads": torch.get_num_threads()} if precision == "int8" else \
                {"dtype": torch_dtype(precision)}
            b = Backbone(str(model), device=args.device, **kw)
            b.embed_images(frames)  # warm-up
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < args.seconds:
                b.embed_images(frames)
                n += len(frames)
            ips = n / (time.perf_counter() - t0)
            report["rows"].append({"size": size, "precision": precision,
                                   "images_per_s": round(ips, 2),
                                   "minutes_per_video_hour": round(3600 / ips / 60, 1)})
            print(json.dumps(report["rows"][-1]), flush=True)
    (args.workdir / "embed_cost.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
