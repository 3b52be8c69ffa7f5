"""GPU check: So400m-shaped random SigLIP through the real pipeline, search, a head's training, CPU = GPU.

    .venv/bin/python bench/gpu_check.py --workdir WORKDIR                # on a CUDA machine
    .venv/bin/python bench/gpu_check.py --workdir WORKDIR --size tiny --minutes 1 --device cpu   # smoke run

Steps (each timed; a JSON report is printed and written to ``WORKDIR/gpu_check.json``):

1. build a SigLIP with So400m's shapes and random weights (:meth:`TinySiglipConfig.so400m`);
2. generate a ``--minutes`` 720p30 video (ffmpeg ``testsrc2``);
3. index it (the real Ray Data pipeline; bf16 embed actors on CUDA, ``--batch-size`` frames a
   batch) and report frames/s of the run and the image tower's model FLOPs utilisation (MFU):
   frames/s × FLOPs per frame (counted from the config: patch embedding, attention, MLP; about
   0.67 TFLOP per 384² frame for So400m) / the GPU's peak bf16 dense FLOP/s (``--peak-tflops``,
   default from the device name);
4. search zero-shot, train a grounding head for a few steps (bf16 autocast on CUDA), reindex
   with it and search again;
5. search the same index on the CPU and on the GPU and compare the spans.

Random weights: the figures are speed and agreement, not accuracy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

#: peak dense bf16 tensor FLOP/s by device-name fragment (vendor data sheets)
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}
QUERIES = ["a red circle moving left", "the witness is handed exhibit", "a slide title appears",
           "the lecturer writes the chain rule", "a person walks to the door"]


def vision_flops_per_frame(cfg) -> float:
    """Forward FLOPs of the vision tower for one image (2 per multiply-add; the pooling head left out)."""
    v = cfg.vision_config
    n = (v.image_size // v.patch_size) ** 2
    d, ff = v.hidden_size, v.intermediate_size
    per_layer = 4 * n * d * d + 2 * n * n * d + 2 * n * d * ff  # q, k, v, o; scores and mix; MLP
    return 2.0 * (n * d * 3 * v.patch_size ** 2 + v.num_hidden_layers * per_layer)


def make_video(path: Path, minutes: float, size: str) -> Path:
    if not path.is_file():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s={size}:r=30:d={minutes * 60}",
                        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--size", choices=("so400m", "tiny"), default="so400m")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--resolution", default="1280x720")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch-size", type=int, default=256, help="frames per embed batch (GPU: large)")
    ap.add_argument("--head-epochs", type=int, default=2)
    ap.add_argument("--peak-tflops", type=float, default=None)
    args = ap.parse_args()

    import torch
    from transformers import AutoConfig

    from groundzero.indexer.config import IndexConfig
    from groundzero.indexer.pipeline import run_index
    from groundzero.indexer.reindex import reindex
    from groundzero.model.tiny import TinySiglipConfig, build_tiny_siglip
    from groundzero.search.searcher import Searcher
    from groundzero.training.job import HeadJob, train_head
    from groundzero.training.loop import TrainConfig

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"device": args.device, "size": args.size, "steps_s": {}}
    cuda = args.device.startswith("cuda")
    if cuda:
        report["gpu"] = torch.cuda.get_device_name(torch.device(args.device))

    def step(name, fn):
        t0 = time.perf_counter()
        out = fn()
        report["steps_s"][name] = round(time.perf_counter() - t0, 2)
        return out

    model = work / f"siglip-{args.size}-random"
    if not (model / "model.safetensors").is_file():
        shape = TinySiglipConfig.so400m() if args.size == "so400m" else TinySiglipConfig.bench()
        step("build model", lambda: build_tiny_siglip(model, shape))
    archive = work / "archive"
    archive.mkdir(exist_ok=True)
    video = step("make video", lambda: make_video(archive / "clip.mp4", args.minutes, args.resolution))
    index = work / "index"
    rec = step("index", lambda: run_index(IndexConfig(archive=str(archive), index_dir=str(index), model=str(model),
                                                       device=args.device, embed_batch_size=args.batch_size))).record
    frames = rec.video_seconds_indexed  # 1 fps: one frame a second
    fps = frames / report["steps_s"]["index"]
    flops = vision_flops_per_frame(AutoConfig.from_pretrained(model))
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in report.get("gpu", "")), None)
    report.update(frames=frames, frames_per_s=round(fps, 2), tflop_per_frame=round(flops / 1e12, 4),
                  mfu=round(fps * flops / (peak * 1e12), 4) if peak else None, peak_tflops=peak,
                  n_indexed=rec.n_indexed, n_failed=rec.n_failed)

    zs = Searcher(index, device=args.device)
    report["zero_shot_top"] = [h.to_dict() for h in zs.search(QUERIES[0]).hits[:1]]
    dur = float(frames)
    ann = work / "train.jsonl"
    ann.write_text("\n".join(json.dumps({"qid": i, "query": q, "vid": video.stem, "duration": dur,
                                         "relevant_windows": [[dur * i / 8, dur * i / 8 + min(30.0, dur / 8)]]})
                             for i, q in enumerate(QUERIES)) + "\n")
    head = work / "head"
    job = HeadJob(index_dir=str(index), annotations=str(ann), out=str(head), size="small", device=args.device,
                  train=TrainConfig(epochs=args.head_epochs, batch_size=4, lr=1e-4, lr_drop=(), seed=0))
    hist = step("train head", lambda: train_head(job)).history
    report["head_loss"] = [round(h["loss_total"], 4) for h in hist]
    step("reindex", lambda: reindex(index, str(head)))

    def spans(device):
        s = Searcher(index, device=device)
        return [[(h.video_id, round(h.start_sec, 2), round(h.end_sec, 2)) for h in s.search(q).hits[:3]]
                for q in QUERIES]

    on_dev = step("search (device)", lambda: spans(args.device))
    if cuda:
        on_cpu = step("search (cpu)", lambda: spans("cpu"))
        report["cpu_gpu_top1_equal"] = sum(a[:1] == b[:1] for a, b in zip(on_cpu, on_dev)) / len(QUERIES)
        report["cpu_gpu_top3_equal"] = sum(a == b for a, b in zip(on_cpu, on_dev)) / len(QUERIES)
    else:
        report["cpu_gpu_top1_equal"] = None  # no GPU: nothing to compare
    report["top_spans"] = on_dev
    (work / "gpu_check.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
