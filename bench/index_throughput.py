"""Indexing throughput: raw ffmpeg decode at 1 fps vs the whole indexing pipeline.

    .venv/bin/python bench/index_throughput.py [--minutes 60] [--workdir WORKDIR]
        [--model base] [--embed-threads 1 2] [--precision fp32 bf16]

Generates (once, cached in --workdir) an H.264 720p30 video of --minutes
minutes (ffmpeg's testsrc2 pattern), then times

1. ``ffmpeg -i VIDEO -vf fps=1 -f null -`` — the floor: decode only;
2. ``groundzero index`` on a folder holding just that video — list, decode
   (Ray CPU task), embed (Ray actor, the tiny random bench SigLIP or --model, CPU unless
   CUDA is present), write Parquet + FAISS + catalog, commit;

and prints video-seconds per wall-second for both and their ratio, (1) timed again after each
run of (2) and averaged with the one before it (the machine may be shared: each ratio compares
neighbouring runs). Ray's start-up is excluded from (2) by starting Ray before the clock. Each run
also says how busy each stage was: the decode tasks' and embed calls' wall and CPU seconds.

With several ``--embed-threads`` (torch threads per embed actor; "auto": sized to the machine)
or ``--precision`` values, (2) runs once per combination, in this process and on one Ray, and
each line gives its speed relative to the first. ``--model base`` / ``so400m``: random weights in
the real SigLIP 2 architectures (built in WORKDIR), whose embedding costs what the real one does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def make_video(path: Path, minutes: float) -> None:
    if path.exists() and path.stat().st_size > 0:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", f"testsrc2=size=1280x720:rate=30:duration={minutes * 60}",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(tmp)],
        check=True,
    )
    tmp.replace(path)


def time_raw_decode(video: Path, threads: int) -> float:
    t0 = time.perf_counter()
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-threads", str(threads), "-i", str(video),
                    "-vf", "fps=1", "-f", "null", "-"], check=True)
    return time.perf_counter() - t0


def time_pipeline(video: Path, model: str | None, threads: int, embed_threads: int | None = None,
                  precision: str = "auto") -> tuple[float, int, object]:
    """(wall seconds, video seconds indexed, the run's last Progress: how busy each stage was)."""
    from groundzero.indexer.config import IndexConfig
    from groundzero.indexer.pipeline import run_index
    from groundzero.indexer.ray_runtime import init_ray

    init_ray()
    with tempfile.TemporaryDirectory() as d:
        archive = Path(d) / "archive"
        archive.mkdir()
        (archive / video.name).symlink_to(video.resolve())
        kw = {"model": model} if model else {}
        cfg = IndexConfig(archive=str(archive), index_dir=str(Path(d) / "index"), decode_threads=threads,
                          embed_threads=embed_threads, precision=precision, **kw)
        last = []
        t0 = time.perf_counter()
        report = run_index(cfg, on_progress=last.append)  # the same Progress, updated as the run goes
        wall = time.perf_counter() - t0
    if report.record.n_indexed != 1:
        raise SystemExit(f"pipeline did not index the video: {report.failures}")
    return wall, int(report.record.video_seconds_indexed), last[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "gz-bench")
    ap.add_argument("--model", default=None, help="checkpoint (default: the tiny random bench SigLIP, "
                    "groundzero.model.tiny.bench_siglip, built in WORKDIR)")
    ap.add_argument("--threads", type=int, default=2, help="ffmpeg decode threads (both measurements)")
    ap.add_argument("--embed-threads", nargs="+", default=["auto"],
                    help="torch threads per embed actor, one run each: N or auto")
    ap.add_argument("--precision", nargs="+", default=["auto"], choices=("auto", "fp32", "bf16", "int8"),
                    help="image tower precision, one run each")
    args = ap.parse_args()
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg not found; run scripts/setup.sh")
    video = args.workdir / f"testsrc2_720p30_{args.minutes:g}min.mp4"
    t0 = time.perf_counter()
    make_video(video, args.minutes)
    print(f"video: {video} ({video.stat().st_size / 1e6:.0f} MB, made/cached in {time.perf_counter() - t0:.0f} s)")
    seconds = args.minutes * 60
    raw = before = time_raw_decode(video, args.threads)
    args.model = bench_model(args.model, args.workdir)
    print(f"raw ffmpeg -vf fps=1 decode : {raw:8.1f} s wall  {seconds / raw:8.1f} video-s per wall-s")
    first = None
    for embed_threads in args.embed_threads:
        for precision in args.precision:
            n = None if embed_threads == "auto" else int(embed_threads)
            pipe, indexed, p = time_pipeline(video, args.model, args.threads, n, precision)
            first = first or pipe
            after = time_raw_decode(video, args.threads)  # the floor again, next to this run
            raw, before = (before + after) / 2, after
            print(f"raw decode around it: {raw:8.1f} s wall (mean of the runs just before and after)")
            print(f"groundzero index (embed threads {embed_threads}, {precision}): {pipe:8.1f} s wall  "
                  f"{seconds / pipe:8.1f} video-s per wall-s ({indexed} frames indexed)  "
                  f"pipeline / raw decode speed {raw / pipe:5.2f}  speed vs first {first / pipe:5.2f}", flush=True)
            cores = os.cpu_count() or 1
            print(f"    busy: decode tasks {p.decode_s:6.1f} s wall, {p.decode_cpu_s:6.1f} s CPU "
                  f"({p.decode_cpu_s / (pipe * cores):4.0%} of {cores} cores over the run); embed calls "
                  f"{p.embed_s:6.1f} s wall ({p.embed_s / pipe:4.0%} of the run), {p.embed_cpu_s:6.1f} s CPU "
                  f"({p.embed_cpu_s / (pipe * cores):4.0%} of the cores)", flush=True)


def bench_model(model: str | None, workdir: Path) -> str:
    """``--model``: a checkpoint as given; base / so400m: random weights in that SigLIP 2 architecture;
    None: the tiny random bench SigLIP. The last two are built in ``workdir`` on first use."""
    from groundzero.model.tiny import TinySiglipConfig, bench_siglip, build_tiny_siglip

    if model is None:
        return str(bench_siglip(workdir))
    if model not in ("base", "so400m"):
        return model
    out = workdir / f"siglip-{model}-random"  # the same folder bench/embed_cost.py builds
    if not (out / "model.safetensors").is_file():
        build_tiny_siglip(out, TinySiglipConfig.siglip2_base() if model == "base" else TinySiglipConfig.so400m())
    return str(out)


if __name__ == "__main__":
    main()
