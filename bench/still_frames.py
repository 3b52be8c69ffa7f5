"""Still frames are not embedded twice: frames embedded and wall time, with and without reuse.

    .venv/bin/python bench/still_frames.py --workdir WORKDIR [--minutes 10] [--seed 0] [--model base]

Makes (once, cached in WORKDIR) the lecture-like video of ``bench/ocr_cost.py`` (1280x720 H.264
at 5 fps, slides of 20-60 s, a ``testsrc2`` inset of 1/9 of the frame drifting slowly), then
indexes it with the whole pipeline (``run_index``, one local Ray started before the clocks)
twice: ``reuse_still=False`` (every frame embedded) and ``reuse_still=True`` (the default).
Prints one JSON line: frames, frames embedded and their share, wall seconds of each run and the
share of wall time saved, and how close a still frame's stored embedding is to what embedding
it would have given (cosine with the embedding the run without reuse stored, over the frames
that reused one: min and mean).

``--model``: a checkpoint, ``demo``, or ``base`` / ``so400m`` (random weights in the real SigLIP 2
architecture, built in WORKDIR: costs what the real one does; the cosines then say little).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.media (make_lecture)
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the other bench scripts


def index_once(video: Path, model: str, reuse_still: bool, work: Path) -> tuple[float, int, Path]:
    """(wall seconds, frames embedded, index dir) of one run over a folder holding ``video``."""
    from groundzero.indexer.config import IndexConfig
    from groundzero.indexer.pipeline import Progress, run_index

    d = Path(tempfile.mkdtemp(dir=work))
    archive = d / "archive"
    archive.mkdir()
    (archive / video.name).symlink_to(video.resolve())
    seen = Progress()

    def keep(p: Progress) -> None:
        seen.frames = p.frames

    cfg = IndexConfig(archive=str(archive), index_dir=str(d / "index"), model=model, reuse_still=reuse_still)
    t0 = time.perf_counter()
    report = run_index(cfg, keep)
    wall = time.perf_counter() - t0
    if report.record.n_indexed != 1:
        raise SystemExit(f"the pipeline did not index the video: {report.failures}")
    return wall, seen.frames, d / "index"


def stored_embeddings(index: Path):
    from groundzero.store.catalog import connect
    from groundzero.store.manifest import require_manifest
    from groundzero.store.tables import read_frames

    layout, m = require_manifest(index)
    f = connect(layout, m).execute("SELECT frames_file FROM videos").fetchone()[0]
    return read_frames(layout.path(f))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the generated lecture")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="base", help="checkpoint, demo, or base / so400m (random weights)")
    args = ap.parse_args()

    import numpy as np
    from index_throughput import bench_model
    from ocr_cost import lecture_slides

    from groundzero.indexer.ray_runtime import init_ray
    from tests.media import make_lecture

    seconds, fps = int(args.minutes * 60), 5
    args.workdir.mkdir(parents=True, exist_ok=True)
    video = args.workdir / f"lecture_{seconds}s_{fps}fps_seed{args.seed}.mp4"  # the name ocr_cost.py uses
    slides = lecture_slides(seconds, args.seed)
    if not video.is_file():
        make_lecture(video, slides, fps=fps)
    model = bench_model(args.model, args.workdir) if args.model != "demo" else "demo"
    init_ray()
    wall_all, n_all, idx_all = index_once(video, model, False, args.workdir)
    wall_still, n_still, idx_still = index_once(video, model, True, args.workdir)
    ts_all, emb_all = stored_embeddings(idx_all)
    ts_still, emb_still = stored_embeddings(idx_still)
    if not np.array_equal(ts_all, ts_still):
        raise SystemExit("the two runs stored different timelines")
    cos = (emb_all * emb_still).sum(1)  # L2-normalised rows
    # a still frame holds an exact copy of its reference's embedding, as do the stills after it
    reused = np.r_[False, (emb_still[1:] == emb_still[:-1]).all(1)]
    print(json.dumps({
        "model": args.model, "video_sec": seconds, "slides": len(slides), "frames": len(ts_all),
        "embedded_all": n_all, "embedded_reuse": n_still, "embedded_share": round(n_still / max(1, n_all), 4),
        "wall_all_sec": round(wall_all, 1), "wall_reuse_sec": round(wall_still, 1),
        "wall_saved_share": round(1 - wall_still / wall_all, 3),
        "reused_cos_min": round(float(cos[reused].min()), 4) if reused.any() else 1.0,
        "reused_cos_mean": round(float(cos[reused].mean()), 4) if reused.any() else 1.0,
    }), flush=True)


if __name__ == "__main__":
    main()
