"""Nightly-run cost: re-indexing an archive where 1% of the videos changed vs indexing it whole.

    .venv/bin/python bench/nightly.py --videos 100 --seconds 60 --workdir WORKDIR

(``.venv/bin/python`` after ``scripts/setup.sh``.) It writes a synthetic archive with ffmpeg
(``--videos`` H.264 files of ``--seconds`` each, 320x240 at 10 fps: ffmpeg's ``testsrc2``
pattern with a per-video hue, so no two videos are alike), then runs the real CLI,
``groundzero index`` — each run a fresh process, as a nightly job is: Python start, model
load, local Ray start, listing, planning, decode + embed, commit — and times it:

1. **full**: the whole archive into an empty index;
2. **nothing changed**: the same archive again (the fixed cost of a night: start-up,
   listing, planning, no decoding);
3. **1% changed**: ``max(1, videos // 100)`` videos re-encoded with new content (different
   bytes, size and mtime) — they are decoded and embedded again, their old vectors removed
   from FAISS, the rest untouched.

It prints the wall times, the ratio nightly / full, and the index size per hour of video:
measured with the model used (default: the tiny random bench SigLIP, 64-d embeddings,
64x64 frames) and projected to SigLIP 2 So400m (1152-d): frames Parquet is ~3600 x D x 4
bytes per hour (zstd barely compresses float32 embeddings), proposals and FAISS each
``3600 / stride`` x ``tokens_per_proposal`` x D x 4 (Flat; IVF-Flat the same, IVF-PQ far less).
The archive is cached under ``--workdir`` (``archive/``); indexes are rebuilt every time.
Timings are wall-clock on a shared machine; the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_video(path: Path, seconds: float, seed: int) -> None:
    """A 320x240 10 fps H.264 file: testsrc2 with hue ``seed * 37`` degrees (cheap to encode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size=320x240:rate=10:duration={seconds}",
                    "-vf", f"hue=h={(seed * 37) % 360}", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-threads", "1", str(tmp)], check=True)
    tmp.replace(path)


def make_archive(root: Path, n: int, seconds: float) -> list[Path]:
    marker = root / ".complete.json"
    paths = [root / f"cam{i // 10:02d}" / f"video_{i:04d}.mp4" for i in range(n)]
    if marker.is_file() and json.loads(marker.read_text()) == {"n": n, "seconds": seconds}:
        return paths
    shutil.rmtree(root, ignore_errors=True)
    t = time.perf_counter()
    for i, p in enumerate(paths):
        make_video(p, seconds, i)
    marker.write_text(json.dumps({"n": n, "seconds": seconds}))
    print(f"  wrote {n} videos in {time.perf_counter() - t:.0f} s", flush=True)
    return paths


def index_run(archive: Path, index: Path, model: str, extra: list[str]) -> tuple[float, dict]:
    """One ``groundzero index`` process; returns (wall seconds, its JSON run record)."""
    cmd = [sys.executable, "-m", "groundzero.cli.main", "index", str(archive), "--index", str(index), "--model", model,
           "--device", "cpu", "--json", *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("RAY_ADDRESS", None)
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t
    if r.returncode not in (0, 3):
        raise SystemExit(f"groundzero index failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return wall, json.loads(r.stdout)["run"]


def du(path: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in path.rglob(pattern) if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--changed-pct", type=float, default=1.0, help="percent of videos changed for the nightly run")
    ap.add_argument("--model", default=None, help="checkpoint (default: the tiny random bench SigLIP, "
                    "groundzero.model.tiny.bench_siglip, built in WORKDIR)")
    ap.add_argument("--workdir", required=True, help="where the archive and index go")
    ap.add_argument("--index-args", nargs=argparse.REMAINDER, default=[],
                    help="extra `groundzero index` flags, e.g. --workers 2 (put last)")
    a = ap.parse_args()
    work = Path(a.workdir)
    if a.model is None:
        from groundzero.model.tiny import bench_siglip

        a.model = str(bench_siglip(work))
    print(f"nightly bench: {a.videos} videos x {a.seconds:g} s, {a.changed_pct:g}% changed; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    archive = work / "archive"
    paths = make_archive(archive, a.videos, a.seconds)
    index = work / "index"
    shutil.rmtree(index, ignore_errors=True)

    full_s, full = index_run(archive, index, a.model, a.index_args)
    print(f"  full:            {full_s:7.1f} s  (indexed {full['n_indexed']}, "
          f"{full['video_seconds_indexed'] / 3600:.2f} h of video)", flush=True)
    same_s, same = index_run(archive, index, a.model, a.index_args)
    print(f"  nothing changed: {same_s:7.1f} s  (unchanged {same['n_unchanged']}, indexed {same['n_indexed']})",
          flush=True)
    n_changed = max(1, round(a.videos * a.changed_pct / 100))
    # new content every time the bench runs (the cached archive keeps the last run's edits)
    edits = work / "edits.json"
    n_edits = json.loads(edits.read_text())["n"] + 1 if edits.is_file() else 1
    edits.write_text(json.dumps({"n": n_edits}))
    for i, p in enumerate(paths[:: max(1, a.videos // n_changed)][:n_changed]):
        make_video(p, a.seconds, 1000 * n_edits + i)  # new bytes, size and mtime
    night_s, night = index_run(archive, index, a.model, a.index_args)
    if night["n_changed"] != n_changed:
        raise SystemExit(f"expected {n_changed} changed videos, the run saw {night['n_changed']}")
    print(f"  {a.changed_pct:g}% changed:      {night_s:7.1f} s  (changed {night['n_changed']}, "
          f"indexed {night['n_indexed']}, unchanged {night['n_unchanged']})", flush=True)

    from groundzero.store.layout import IndexLayout
    from groundzero.store.manifest import read_manifest

    m = read_manifest(IndexLayout(index))
    hours = full["video_seconds_indexed"] / 3600
    layout = IndexLayout(index)
    live = {"frames": sum(p.stat().st_size for p in layout.videos_dir.glob("*.frames.parquet")),
            "proposals": sum(p.stat().st_size for p in layout.videos_dir.glob("*.proposals.parquet")),
            "faiss": layout.path(m.faiss_file).stat().st_size,
            "catalog": layout.path(m.catalog_file).stat().st_size}
    D, K, stride = m.model.embed_dim, m.params.proposals.tokens_per_proposal, m.params.proposals.stride_sec
    print(f"\nnightly / full wall time: {night_s / full_s:.3f}  ({night_s:.1f} s / {full_s:.1f} s); "
          f"fixed cost of a night with nothing to do: {same_s:.1f} s")
    # full = F + S + N v and nightly = F + S + c v, with F the nothing-changed run (no Ray started),
    # S the start-up of Ray and the embed actors, v the cost of one video
    c = night["n_changed"] + night["n_new"]
    v = (full_s - night_s) / max(1, a.videos - c)
    startup = night_s - same_s - c * v
    print(f"  derived: {v:.2f} s per video of {a.seconds:g} s; Ray + embed-actor start-up {startup:.1f} s; "
          "at 1% of 10,000 such videos a night: ratio "
          f"{(same_s + startup + 100 * v) / (same_s + startup + 10_000 * v):.3f}")
    print(f"index on disk: {du(index) / 1e6:.1f} MB for {hours:.2f} h of video "
          f"(after 3 runs, old snapshots kept by retention: {du(index) / 1e6 / hours:.1f} MB per video hour)")
    print(f"  current snapshot per video hour, {D}-d model, K={K}, stride {stride:g} s:  " + ", ".join(
        f"{k} {v / 1e6 / hours:.2f} MB" for k, v in live.items()) + f"  = {sum(live.values()) / 1e6 / hours:.2f} MB")
    fps = m.params.fps
    proj = {"frames": 3600 * fps * 1152 * 4, "proposals": 3600 / stride * K * 1152 * 4,
            "faiss (Flat / IVF-Flat)": 3600 / stride * K * (1152 * 4 + 8)}
    print("  projected for SigLIP 2 So400m (1152-d) at the same settings: " + ", ".join(
        f"{k} {v / 1e6:.1f} MB" for k, v in proj.items()) + f"  = {sum(proj.values()) / 1e6:.1f} MB per video hour")


if __name__ == "__main__":
    main()
