"""Throughput and latency of the search API under concurrent load, on a 1,000-hour synthetic index.

    .venv/bin/python bench/serve_load.py --hours 1000 --concurrency 1 4 16 --requests 200 \\
        --seconds 60 --workdir WORKDIR

(``.venv/bin/python`` after ``scripts/setup.sh``.) It

1. builds once, and caches under ``--workdir`` (keyed by size, seed and the model's weights),
   the planted index of ``bench/search_latency.py`` (its ``build_corpus``: 1-hour videos of
   frame embeddings written through the real ``IndexWriter`` with the FAISS policy ``groundzero
   index`` uses, "auto": IVF-PQ with re-scoring at 1,000 hours; nothing is decoded);
2. starts ``groundzero serve`` on it in a child process, on a free loopback port;
3. per ``--concurrency`` level, keeps that many ``GET /api/search`` requests in flight (asyncio +
   httpx, one connection each) until ``--requests`` have completed or ``--seconds`` have passed,
   and prints requests/s, client-side latency p50/p95/p99 (ms), the server's own search time
   (``timings_ms`` summed) p50, and errors.

Every request's sentence is distinct (a planted query plus a running number), so none is
answered from the service's result cache: each one embeds the text, queries FAISS, reads the
shortlisted videos' frame Parquet and grounds. The service runs up to ``--search-threads``
searches at once (``groundzero serve --search-threads``; default one per CPU), each on its own
thread: FAISS, torch and the Parquet reads release the GIL, so N requests in flight use up to N
cores and throughput grows with concurrency until the cores (or the GIL-held Python parts of
the searches) are used up; beyond that, requests wait in line. The server shares
the CPUs out among the searches at once for torch's intra-op threads unless ``--torch-threads``
sets them (``OMP_NUM_THREADS``). Client and server share the machine: on a busy or small one the
figures include that contention; the 1-minute load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def build_index(workdir: Path, model: str, hours: float, video_minutes: float, queries: int, seed: int) -> Path:
    sys.path.insert(0, str(ROOT / "bench"))
    from search_latency import SENTENCES, build_corpus

    from groundzero.model.backbone import Backbone
    from groundzero.model.identity import read_identity

    _, identity = read_identity(model)
    qs = list(SENTENCES[:queries])
    q_emb = Backbone(model, device="cpu").embed_texts(qs)
    root = workdir / f"corpus-{hours:g}h-{video_minutes:g}min-{queries}q-seed{seed}-auto-{identity.fingerprint[:10]}"
    cached = (root / "bench.json").is_file()
    corpus = build_corpus(root, hours, video_minutes, qs, q_emb, identity, seed, faiss_factory="auto")
    print(f"index: {corpus.n_videos} videos, {corpus.n_proposals} proposals, {corpus.disk_mb:.0f} MB, "
          f"{'cached' if cached else 'built'} in {corpus.build_s:.0f} s: {corpus.index}", flush=True)
    return corpus.index


def start_server(index: Path, model: str, device: str, threads: int,
                 search_threads: int = 0) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GROUNDZERO_TOKEN": ""}
    env.pop("OMP_NUM_THREADS", None)
    if threads > 0:
        env["OMP_NUM_THREADS"] = str(threads)
    p = subprocess.Popen([sys.executable, "-m", "groundzero.cli.main", "serve", "--index", str(index), "--port", "0",
                          "--model", model, "--device", device, "--reload-every", "-1",
                          "--search-threads", str(search_threads)],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    m = re.search(r"at (http://\S+?)/?[;\s]", line)
    if m is None:
        p.kill()
        raise SystemExit(f"groundzero serve did not start: {line!r}")
    url = m.group(1)
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/api/health", timeout=30).status_code == 200:
                return p, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or p.poll() is not None:
            p.kill()
            raise SystemExit("groundzero serve did not answer /api/health")
        time.sleep(0.2)


async def load(url: str, sentences: list[str], concurrency: int, n_requests: int, seconds: float,
               k: int, first: int) -> dict:
    latencies, server_ms, errors = [], [], {}
    counter = iter(range(first, first + n_requests))
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        for i in counter:
            if time.perf_counter() > deadline:
                return
            q = f"{sentences[i % len(sentences)]} {i}"
            t = time.perf_counter()
            try:
                r = await client.get("/api/search", params={"q": q, "k": k, "limit": 10})
            except httpx.HTTPError as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                continue
            latencies.append((time.perf_counter() - t) * 1000)
            if r.status_code != 200:
                errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
            else:
                server_ms.append(sum(r.json()["timings_ms"].values()))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    pct = (lambda xs, p: float(np.percentile(xs, p)) if xs else math.nan)
    return {"concurrency": concurrency, "done": len(latencies), "wall_s": wall,
            "rps": len(latencies) / wall if wall else math.nan, "p50": pct(latencies, 50),
            "p95": pct(latencies, 95), "p99": pct(latencies, 99), "server_p50": pct(server_ms, 50),
            "errors": errors}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=1000.0, help="archive size, hours of video")
    ap.add_argument("--video-minutes", type=float, default=60.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16], help="requests in flight (levels)")
    ap.add_argument("--requests", type=int, default=200, help="per level: stop after this many requests")
    ap.add_argument("--seconds", type=float, default=60.0, help="per level: stop after this long")
    ap.add_argument("--warmup", type=int, default=10, help="requests before the first level (not counted)")
    ap.add_argument("--k", type=int, default=50, help="moments ranked per search (the page's default)")
    ap.add_argument("--queries", type=int, default=20, help="planted queries (the corpus cache key of "
                    "bench/search_latency.py)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "gz-bench-serve")
    ap.add_argument("--model", default=None, help="backbone (default: the tiny random bench SigLIP, "
                    "groundzero.model.tiny.bench_siglip, built in WORKDIR)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--torch-threads", type=int, default=0, help="server's OMP threads per search (0: the server's "
                    "default, CPUs // search threads)")
    ap.add_argument("--search-threads", type=int, default=0, help="searches the server runs at once (0: its "
                    "default, one per CPU)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if any(c < 1 for c in args.concurrency) or args.requests < 1 or args.seconds <= 0:
        raise SystemExit("--concurrency and --requests must be >= 1, --seconds > 0")

    sys.path.insert(0, str(ROOT / "bench"))
    from search_latency import SENTENCES

    if args.model is None:
        from groundzero.model.tiny import bench_siglip

        args.model = str(bench_siglip(args.workdir))
    model = args.model
    index = build_index(args.workdir, model, args.hours, args.video_minutes, args.queries, args.seed)
    t0 = time.perf_counter()
    server, url = start_server(index, model, args.device, args.torch_threads, args.search_threads)
    print(f"server up in {time.perf_counter() - t0:.1f} s (model and index loaded)", flush=True)
    try:
        print(f"server {url} (model {Path(model).name}, {args.device}); {os.cpu_count()} CPUs; search threads "
              f"{args.search_threads or 'one per CPU'}, torch threads {args.torch_threads or 'CPUs // search threads'}; "
              f"client asyncio+httpx in another process; k={args.k}", flush=True)
        asyncio.run(load(url, list(SENTENCES), 1, args.warmup, 600, args.k, 10**6))
        rows = []
        for c in args.concurrency:
            load0 = os.getloadavg()[0]
            r = asyncio.run(load(url, list(SENTENCES), c, args.requests, args.seconds, args.k, len(rows) * 10**5))
            r["load"] = (load0, os.getloadavg()[0])
            rows.append(r)
            print_row(r, header=len(rows) == 1)
    finally:
        server.terminate()
        server.wait(30)


def print_row(r: dict, header: bool) -> None:
    if header:
        print(f"\n{args_line()}\nconcurrency  requests  wall s   req/s   p50 ms   p95 ms   p99 ms  server p50 ms  "
              "errors  load avg")
    err = ",".join(f"{k}:{v}" for k, v in r["errors"].items()) or "0"
    print(f"{r['concurrency']:>11d} {r['done']:>9d} {r['wall_s']:>7.1f} {r['rps']:>7.2f} {r['p50']:>8.1f} "
          f"{r['p95']:>8.1f} {r['p99']:>8.1f} {r['server_p50']:>14.1f} {err:>7}  "
          f"{r['load'][0]:.1f}->{r['load'][1]:.1f}", flush=True)


def args_line() -> str:
    return "GET /api/search, distinct sentences (no result-cache hits); latency measured by the client"


if __name__ == "__main__":
    main()
