"""What search reads per shortlisted video: one proposal window's row groups vs the whole frame file.

    .venv/bin/python bench/frame_reads.py --videos 20 --minutes 60 --dim 1152 --workdir WORKDIR

Writes ``--videos`` frame files through :func:`groundzero.store.tables.write_frames` (the indexer's
writer: row groups of ``FRAME_ROW_GROUP`` frames, zstd) with random unit embeddings of
``--dim`` (SigLIP 2 So400m: 1152) at 1 fps, then per video, in a fresh reader each time (a
search whose frame cache missed), times

* ``window``: :class:`groundzero.store.tables.FrameReader` — open, read the timestamps and the row
  groups of one 48-frame proposal window at a random place (what ``Searcher.search`` does);
* ``whole``: :func:`groundzero.store.tables.read_frames` — every frame (what search did before the
  frames were written in row groups, and what an index written before then still costs).

It prints per-video p50/p95 in ms and the MB decoded. The OS page cache is warm (files just
written): the figures are decode and copy cost, not disk seeks; on S3-backed or cold storage
the bytes saved matter more.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from groundzero.store import tables

WINDOW = 48


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=20)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--dim", type=int, default=1152)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "gz-bench-frames")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    T = int(args.minutes * 60)
    args.workdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for v in range(args.videos):
        path = args.workdir / f"v{v:03d}-{T}x{args.dim}.frames.parquet"
        if not path.is_file():
            emb = rng.normal(size=(T, args.dim)).astype(np.float32)
            emb /= np.linalg.norm(emb, axis=1, keepdims=True)
            tables.write_frames(path, f"v{v}", np.arange(T, dtype=np.float64), emb)
        paths.append(path)
    mb = sum(p.stat().st_size for p in paths) / len(paths) / 1e6
    window_ms, whole_ms, groups = [], [], []
    for path in paths:
        a = int(rng.integers(0, max(T - WINDOW, 1)))
        t0 = time.perf_counter()
        r = tables.FrameReader(path)
        r.frames(np.array([[a, min(a + WINDOW, T)]]))
        window_ms.append((time.perf_counter() - t0) * 1000)
        groups.append(r.groups_read)
        t0 = time.perf_counter()
        tables.read_frames(path)
        whole_ms.append((time.perf_counter() - t0) * 1000)
    row_mb = T * args.dim * 4 / 1e6
    grp_mb = np.mean(groups) * tables.FRAME_ROW_GROUP * args.dim * 4 / 1e6
    print(f"{args.videos} videos x {T} frames x {args.dim}-d ({row_mb:.1f} MB float32, {mb:.1f} MB on disk each), "
          f"row groups of {tables.FRAME_ROW_GROUP} frames")
    print(f"  window ({WINDOW} frames): p50 {np.percentile(window_ms, 50):7.1f} ms  p95 {np.percentile(window_ms, 95):7.1f} ms"
          f"  ({np.mean(groups):.1f} row groups, {grp_mb:.1f} MB decoded)")
    print(f"  whole file:          p50 {np.percentile(whole_ms, 50):7.1f} ms  p95 {np.percentile(whole_ms, 95):7.1f} ms"
          f"  ({row_mb:.1f} MB decoded)")


if __name__ == "__main__":
    main()
