"""FAISS search latency and recall against exact search at 1e5, 1e6 and 1e7 context tokens.

    .venv/bin/python bench/faiss_scale.py --sizes 1e5 1e6 --dim 1152
    .venv/bin/python bench/faiss_scale.py --sizes 1e7 --dim 64

(``.venv/bin/python`` after ``scripts/setup.sh``.) For each corpus size N it builds, through
:class:`groundzero.store.vectors.ContextIndex`, the structure the growth policy (``"auto"``,
:class:`~groundzero.store.vectors.GrowthPolicy`) picks for N — exact ``Flat`` up to 100k vectors,
``IVF{nlist},Flat`` up to 2M, ``IVF{nlist},PQ{m}`` above — plus an exact ``Flat`` baseline
while it fits in ``--max-flat-gb``, and prints per structure:

* build: training (k-means on ``--train-per-list`` x nlist sampled vectors) + adding all N;
  "add 1%": adding another N/100 vectors to the trained index, what a nightly run costs
  instead of a rebuild;
* size: the index's in-memory bytes (codes + ids; what ``faiss.write_index`` stores);
* latency: one query at a time (the searcher's case), p50/p95 in ms, on ``--threads`` threads
  (default 1; building uses ``--build-threads``, default all cores);
* recall@10: share of the exact top-10 in the index's top-10; recall 10@512: share of the exact
  top-10 in its top-512 (the shortlist's ``shortlist_tokens``: what search needs), at several
  ``nprobe`` values (the policy's own first).

Data (stated plainly): synthetic, not real embeddings. ``clustered`` (default): ``N / 1000``
random unit "scene" centres (at least 100), each vector ``unit(centre + noise)`` with noise of
norm 0.6 (cosine ~0.86 to its centre, like the frames of one scene); queries are drawn the same
way around random centres. ``random``: i.i.d. unit vectors (the worst case for IVF). Vectors are
generated in seeded chunks of 65,536, so the exact ground truth of a corpus larger than
``--max-flat-gb`` is computed by streaming the same chunks through numpy (a top-k scan, not
FAISS) and never holding all N vectors; that scan's time per query is printed as "exact scan".

Exact search at 1e7 x 1152 needs 46 GB of float32: with ``--max-flat-gb`` below that there is no
Flat baseline there, only the streamed ground truth. On a 2-core machine, training an IVF over
1152-d vectors at 1e7 (16,384 lists) takes hours; run 1e7 with ``--dim 64`` (or 128) there and
read the figures as what they are. Timings are wall-clock on a shared machine (the load
average is printed).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import faiss
import numpy as np

from groundzero.store.vectors import ContextIndex, GrowthPolicy, training_size

CHUNK = 65_536


@dataclass(frozen=True)
class Corpus:
    n: int
    dim: int
    kind: str  #: clustered | random
    seed: int = 0

    @property
    def n_centres(self) -> int:
        return max(100, self.n // 1000)

    def centres(self) -> np.ndarray:
        return _unit(np.random.default_rng(self.seed).standard_normal((self.n_centres, self.dim), np.float32))

    def chunk(self, i: int, centres: np.ndarray, n: int | None = None) -> np.ndarray:
        """float32 (n, dim): chunk ``i`` (seeded by i, so it can be regenerated identically)."""
        n = n or min(CHUNK, self.n - i * CHUNK)
        rng = np.random.default_rng((self.seed, i))
        noise = rng.standard_normal((n, self.dim), np.float32)
        if self.kind == "random":
            return _unit(noise)
        c = centres[rng.integers(0, len(centres), n)]
        return _unit(c + noise * np.float32(0.6 / np.sqrt(self.dim)))

    def chunks(self, centres: np.ndarray):
        for i in range(-(-self.n // CHUNK)):
            yield i, self.chunk(i, centres)

    def queries(self, q: int, centres: np.ndarray) -> np.ndarray:
        return self.chunk(10**6, centres, q)  # a chunk index no corpus reaches

    def extra(self, centres: np.ndarray) -> np.ndarray:
        """The nightly 1%: vectors drawn like the corpus but not in it."""
        return self.chunk(10**6 + 1, centres, max(1, self.n // 100))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_topk(corpus: Corpus, centres: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Exact top-k ids by streaming every chunk through numpy; returns (ids (Q, k), scan ms per query)."""
    best_s = np.full((len(q), k), -np.inf, np.float32)
    best_i = np.zeros((len(q), k), np.int64)
    scan = 0.0
    for i, x in corpus.chunks(centres):
        t = time.perf_counter()
        s = q @ x.T  # (Q, chunk)
        top = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], 1)
        cand_i = np.concatenate([best_i, top + i * CHUNK], 1)
        keep = np.argsort(-cand_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, keep, 1), np.take_along_axis(cand_i, keep, 1)
        scan += time.perf_counter() - t
    return best_i, scan / len(q) * 1000


def build(corpus: Corpus, centres: np.ndarray, factory: str, train_per_list: int) -> tuple[ContextIndex, float, float]:
    """Returns (index, train seconds, add seconds); ids are the vectors' positions."""
    idx = ContextIndex.create(corpus.dim, factory)
    t0 = time.perf_counter()
    if not idx.is_trained:
        nlist = idx.ivf.nlist
        want = min(corpus.n, max(39 * nlist, train_per_list * nlist, 256 * 39 if "PQ" in factory else 0))
        parts, got = [], 0
        for i, x in corpus.chunks(centres):  # a sample spread over the whole corpus
            take = int(np.ceil(want * len(x) / corpus.n))
            parts.append(x[np.random.default_rng(i).choice(len(x), min(take, len(x)), replace=False)])
            got += len(parts[-1])
        idx.train(np.concatenate(parts)[:want])
    t1 = time.perf_counter()
    for i, x in corpus.chunks(centres):
        idx.add(np.arange(i * CHUNK, i * CHUNK + len(x), dtype=np.int64), x)
    return idx, t1 - t0, time.perf_counter() - t1


def index_bytes(idx: ContextIndex) -> int:
    return int(faiss.serialize_index(idx.index).nbytes)


def latency_ms(idx: ContextIndex, q: np.ndarray, k: int, n: int) -> tuple[float, float]:
    times = []
    for i in range(min(n, len(q))):
        t = time.perf_counter()
        idx.search(q[i : i + 1], k)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def recall(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got.tolist(), want.tolist())]))


def measure(corpus: Corpus, args: argparse.Namespace) -> list[dict]:
    centres = corpus.centres()
    q = corpus.queries(args.queries, centres)
    rows = []
    policy = GrowthPolicy(train_per_list=args.train_per_list)
    structures = []
    flat_gb = corpus.n * corpus.dim * 4 / 1e9
    if flat_gb <= args.max_flat_gb:
        structures.append("Flat")
    auto = "Flat" if corpus.n <= policy.flat_max_tokens else policy.ivf_factory(corpus.n, corpus.dim)
    if auto != "Flat":
        structures.append(auto)
    for extra in args.also:
        structures.append(extra.format(nlist=int(auto.split(",")[0][3:]) if auto != "Flat" else 1024))
    t = time.perf_counter()
    truth, scan_ms = exact_topk(corpus, centres, q, 10)
    print(f"  exact ground truth: {time.perf_counter() - t:.0f} s; exact scan {scan_ms:.1f} ms/query "
          f"(numpy, all {len(q)} queries per chunk at once: a batch figure, not one query)", flush=True)
    for factory in structures:
        faiss.omp_set_num_threads(args.build_threads or os.cpu_count())
        idx, train_s, add_s = build(corpus, centres, factory, args.train_per_list)
        nightly = corpus.extra(centres)
        t_add = time.perf_counter()
        idx.add(np.arange(corpus.n, corpus.n + len(nightly), dtype=np.int64), nightly)
        add1_s = time.perf_counter() - t_add
        idx.remove_ids(np.arange(corpus.n, corpus.n + len(nightly), dtype=np.int64))  # back to the corpus
        size = index_bytes(idx)
        faiss.omp_set_num_threads(args.threads or os.cpu_count())
        probes = [0] if idx.ivf is None else sorted({policy.nprobe_for(factory), *args.nprobe}, key=lambda p: (
            p != policy.nprobe_for(factory), p))
        for nprobe in probes:
            if nprobe:
                if nprobe > idx.ivf.nlist:
                    continue
                idx.nprobe = nprobe
            p50, p95 = latency_ms(idx, q, 10, args.latency_queries)
            _, top10 = idx.search(q, 10)
            _, top512 = idx.search(q, 512)
            rows.append({"n": corpus.n, "dim": corpus.dim, "factory": factory, "nprobe": nprobe,
                         "default": nprobe == probes[0], "train_s": train_s, "add_s": add_s, "add1_s": add1_s,
                         "mb": size / 1e6, "p50": p50, "p95": p95, "r10": recall(top10, truth),
                         "r10_512": recall(top512, truth), "scan_ms": scan_ms})
            r = rows[-1]
            print(f"  {factory:>16} nprobe {nprobe or '-':>4}: {r['p50']:7.2f} / {r['p95']:7.2f} ms  "
                  f"recall@10 {r['r10']:.3f}  10@512 {r['r10_512']:.3f}  ({r['mb']:.0f} MB, train "
                  f"{train_s:.0f} s, add {add_s:.0f} s, add 1% {add1_s:.1f} s)", flush=True)
        del idx
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=float, default=[1e5, 1e6, 1e7])
    ap.add_argument("--dim", type=int, default=1152, help="vector dimension (SigLIP 2 So400m: 1152)")
    ap.add_argument("--data", choices=["clustered", "random"], default="clustered")
    ap.add_argument("--queries", type=int, default=200, help="queries for recall")
    ap.add_argument("--latency-queries", type=int, default=50, help="queries timed one at a time")
    ap.add_argument("--nprobe", type=int, nargs="*", default=[16, 64], help="nprobe values besides the policy's")
    ap.add_argument("--also", nargs="*", default=[],
                    help="extra factory strings to measure, {nlist} = the policy's, e.g. 'IVF{nlist},PQ96'")
    ap.add_argument("--train-per-list", type=int, default=64, help="k-means sample per list (policy default 64)")
    ap.add_argument("--max-flat-gb", type=float, default=8.0, help="largest corpus (GB float32) to hold whole")
    ap.add_argument("--build-threads", type=int, default=0, help="threads for training and adding (0: all cores)")
    ap.add_argument("--threads", type=int, default=1, help="FAISS/OpenMP threads (0: all cores); one query at a "
                    "time on one thread is a serving worker's case, and OpenMP spin-waits on a busy machine")
    args = ap.parse_args()
    faiss.omp_set_num_threads(args.build_threads or os.cpu_count())
    print(f"faiss {faiss.__version__}, build on {args.build_threads or os.cpu_count()} threads, search on "
          f"{args.threads or os.cpu_count()}, load average "
          f"{os.getloadavg()[0]:.1f}, data {args.data}, dim {args.dim}")
    rows = []
    for n in args.sizes:
        corpus = Corpus(int(n), args.dim, args.data)
        print(f"\nN = {corpus.n:,} x {corpus.dim} ({corpus.n * corpus.dim * 4 / 1e9:.2f} GB as float32), "
              f"{corpus.n_centres if args.data == 'clustered' else 0} centres; policy: "
              f"{training_size('auto', GrowthPolicy().ivf_factory(corpus.n, corpus.dim), corpus.n)} training vectors",
              flush=True)
        rows += measure(corpus, args)
    print("\nsummary (policy's nprobe; latency = one query at a time)")
    print(f"{'N':>12} {'dim':>5} {'structure':>17} {'nprobe':>6} {'p50 ms':>8} {'p95 ms':>8} {'R@10':>6} "
          f"{'10@512':>7} {'MB':>8} {'build s':>8} {'add 1% s':>9} {'exact scan ms':>14}")
    for r in rows:
        if r["default"]:
            print(f"{r['n']:>12,} {r['dim']:>5} {r['factory']:>17} {r['nprobe'] or '-':>6} {r['p50']:>8.2f} "
                  f"{r['p95']:>8.2f} {r['r10']:>6.3f} {r['r10_512']:>7.3f} {r['mb']:>8.0f} "
                  f"{r['train_s'] + r['add_s']:>8.0f} {r['add1_s']:>9.2f} {r['scan_ms']:>14.1f}")


if __name__ == "__main__":
    main()
