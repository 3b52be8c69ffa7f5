"""Search at the real embedding size (1152-d, SigLIP 2 So400m's), through the real path, on
corpora of 10, 100 and 1,000 hours with the structure real frame embeddings have.

    .venv/bin/python bench/search_scale.py --hours 10 100 1000 --workdir WORKDIR

(``.venv/bin/python`` after ``scripts/setup.sh``.) Per corpus size it builds once, and caches under
``--workdir``, an index of 1-hour videos at 1 fps written through the real
:class:`~groundzero.store.writer.IndexWriter` with the FAISS policy ``groundzero index`` uses
(``"auto"``: exact Flat, then IVF, then IVF-PQ as the corpus grows), frames and tokens stored at
the store's precision (half floats), zero-shot context tokens, default proposals. Then:

1. **search**, in a fresh child process (so its peak RSS is the search's own): opens
   ``Searcher`` on the index (timed), runs every planted query once and reports p50 / p95 of
   ``search()`` and of each stage (``timings_ms``), planted-moment R1@0.5 (top hit in the
   planted video, IoU >= 0.5), and the process's peak RSS; as a one-shot ``groundzero search``
   runs (text tower in NumPy, no torch), then again with torch loaded, as the service runs;
2. **shortlist recall** against exact search: every proposal's best-token cosine computed with
   numpy over all stored tokens; the share of the exact top-``shortlist_proposals`` proposals
   that the FAISS shortlist returns (ties count), and whether the planted moment is in it; for
   a PQ index also with re-scoring pools of 1 (the PQ codes alone) and 2 times the tokens;
3. **brute force**: the plain scan an index would save, for ``--scan-queries`` queries: read
   every video's frame embeddings from Parquet and take each frame's cosine with the query
   (page cache warm: the corpus was just written or read);
4. **index bytes per video hour**, by file kind.

The sub-linear exponent of ``search()`` p50 in hours is fitted over the sizes run.

What is synthetic, and why it is a fair stand-in:

* Frame embeddings (1152-d unit vectors) have the structure real ones have: a shared mean
  direction (unrelated frames have cosine ~0.2, as SigLIP's image embeddings are anisotropic);
  1,024 scene clusters; each video a run of shots (exponential lengths, mean 8 s, at least 2 s)
  drawn 80% from the video's own 8 scenes; frames of one shot near-duplicates (cosine ~0.94
  between neighbours, as 1 fps frames of one shot are). Each query has 2 *related* scenes (their
  centres lean towards the query: frames at cosine ~0.15 with it) that recur across many videos;
  its planted moment is a shot of one of them whose frames lean further towards the query
  (cosine ~0.27), as "a goal is scored" is a moment of a football scene. So the shortlist must
  tell the moment from many near misses of its own kind, not from noise at cosine 0 +- 0.03.
  Queries are not drawn from the frames' distribution (a text embedding is not an image
  embedding: SigLIP's modality gap), which is what makes an IVF's coarse lists hard to probe;
  isotropic noise, or queries drawn like the data, would make the shortlist look better than
  it is.
* Query embeddings are unit vectors made by the bench (the tiny random text tower's sentence
  embeddings are all nearly one direction): the backbone's ``embed_texts`` looks them up, so
  the ``text`` stage here is not a text tower's cost. With ``--head`` the query's words (the
  head's input) come from a real pass of the bench model's 1-layer text tower, in the same pass
  as the sentence (``Backbone.encode_query``): that pass is the ``text`` stage there. Either way
  ``search() less text`` is search without the text tower, whose real cost ``--text-towers``
  measures (random weights in SigLIP 2 base's and So400m's shapes, one query, this machine) so
  that it can be added.
* The model is a random SigLIP of width 1152 with one layer (only its identity and text tokens
  are used; nothing is decoded). Search is zero-shot; ``--head`` also reindexes each corpus with a
  tiny random grounding head (``GroundingModelConfig.tiny``, seed 0) and times search through it:
  its latency, not its answers, means something.
* A corpus is committed once, at the end of its build (one FAISS training), as a first index of
  that size would be.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np

from groundzero.data.proposals import ProposalConfig, make_windows, zero_shot_tokens
from groundzero.data.spans import temporal_iou
from groundzero.store import tables
from groundzero.store.manifest import IndexParams
from groundzero.store.writer import IndexWriter, VideoEntry, video_id_for

sys.path.insert(0, str(Path(__file__).resolve().parent))
if __name__ == "__main__" and "--child" in sys.argv:  # the measured search process imports no torch
    SENTENCES = ()
    TIE = 1e-5
else:
    from search_latency import SENTENCES, TIE, Planted, place_moments, planted_proposals

DIM = 1152
FPS = 1.0
N_SCENES, SCENES_PER_VIDEO, OWN_SCENE_SHARE = 1024, 8, 0.8
SHOT_MEAN_SEC, SHOT_MIN_SEC = 8.0, 2
MEAN_W, SHOT_SPREAD, FRAME_NOISE = 0.55, 0.8, 0.3  #: frame = unit(MEAN_W mu + shot + FRAME_NOISE u)
RELATED_PER_QUERY, RELATED_LEAN = 2, 0.25  #: related scene centre = unit(c + RELATED_LEAN q)
PLANT_W = 0.15  #: planted frame: a shot of a related scene, unit(frame + PLANT_W q): cosine ~0.27 with q


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def bench_model(workdir: Path) -> Path:
    """A random 1-layer SigLIP of width 1152, built once under ``workdir``."""
    from groundzero.model.tiny import TinySiglipConfig, build_tiny_siglip

    out = workdir / "siglip-1152-random"
    if not (out / "model.safetensors").is_file():
        build_tiny_siglip(out, TinySiglipConfig(image_size=32, patch_size=16, hidden_size=DIM,
                                                intermediate_size=DIM, num_layers=1, num_heads=16,
                                                text_max_len=16, seed=0))
    return out


class World:
    """The corpus's shared structure: mean direction, scene centres, query embeddings."""

    def __init__(self, n_queries: int, seed: int):
        rng = np.random.default_rng(seed)
        self.mu = unit(rng.standard_normal(DIM))
        self.queries = unit(rng.standard_normal((n_queries, DIM)))
        scenes = rng.standard_normal((N_SCENES, DIM)).astype(np.float32)
        related = rng.choice(N_SCENES, size=(n_queries, RELATED_PER_QUERY), replace=False)
        scenes = unit(scenes)
        for i, rel in enumerate(related):
            scenes[rel] = unit(scenes[rel] + RELATED_LEAN * self.queries[i])
        self.scenes = scenes
        self.related = related

    def moment(self, rng: np.random.Generator, query: int, n_frames: int, noise: float = FRAME_NOISE) -> np.ndarray:
        """float32 (n, D): a planted moment of query ``query``, one shot of one of its related scenes
        whose frames lean towards the query (the event the query describes, in its kind of scene)."""
        scene = self.scenes[rng.choice(self.related[query])]
        shot = unit(scene + SHOT_SPREAD * unit(rng.standard_normal(DIM).astype(np.float32)))
        u = unit(rng.standard_normal((n_frames, DIM), np.float32))
        return unit(MEAN_W * self.mu + shot + noise * u + PLANT_W * self.queries[query])

    def video(self, rng: np.random.Generator, n_frames: int) -> np.ndarray:
        """float32 (T, D) unit frame embeddings of one video (see the module docstring)."""
        own = rng.choice(N_SCENES, SCENES_PER_VIDEO, replace=False)
        lengths = np.maximum(SHOT_MIN_SEC, rng.exponential(SHOT_MEAN_SEC, n_frames)).astype(np.int64)
        n_shots = int(np.searchsorted(np.cumsum(lengths), n_frames)) + 1
        lengths = lengths[:n_shots]
        scene = np.where(rng.random(n_shots) < OWN_SCENE_SHARE, rng.choice(own, n_shots),
                         rng.integers(0, N_SCENES, n_shots))
        shots = unit(self.scenes[scene] + SHOT_SPREAD * unit(rng.standard_normal((n_shots, DIM), np.float32)))
        per_frame = np.repeat(shots, lengths, axis=0)[:n_frames]
        noise = unit(rng.standard_normal((n_frames, DIM), np.float32))
        return unit(MEAN_W * self.mu + per_frame + FRAME_NOISE * noise)


def build_corpus(root: Path, hours: float, n_queries: int, model: Path, seed: int) -> dict:
    """Write (or reuse) one corpus; ``bench.json`` marks it complete and holds its planted moments."""
    from groundzero.model.identity import read_identity

    meta_file = root / "bench.json"
    if meta_file.is_file():
        return json.loads(meta_file.read_text())
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    _, identity = read_identity(str(model))
    world = World(n_queries, seed)
    rng = np.random.default_rng(seed + 1)
    video_sec, n_videos = 3600, max(1, math.ceil(hours))
    moments: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for i, (v, a, b) in enumerate(place_moments(n_queries, n_videos, video_sec, rng)):
        moments[v].append((i, a, b))
    props = ProposalConfig()
    params = IndexParams(fps=FPS, frame_size=identity.image_size, proposals=props)
    T = int(video_sec * FPS)
    ts = np.arange(T, dtype=np.float64) / FPS
    windows = make_windows(T, FPS, props)
    planted, cos = [], defaultdict(list)
    t0 = time.perf_counter()
    with IndexWriter.open(root / "index", identity, params, "auto") as w:
        for v in range(n_videos):
            emb = world.video(rng, T)
            for i, a, b in moments.get(v, []):
                emb[a:b] = world.moment(rng, i, b - a)
                cos["planted"].append(float((emb[a:b] @ world.queries[i]).mean()))
            if v < 50:  # cosine statistics of what the shortlist must tell apart
                sims = emb @ world.queries.T  # (T, Q)
                cos["background p99.9"].append(float(np.percentile(sims, 99.9)))
            uri = f"/archive/bench/video_{v:05d}.mp4"
            entry = VideoEntry(uri=uri, rel_path=f"video_{v:05d}.mp4", size_bytes=10**9 + v, mtime_ns=v,
                               content_hash=f"bench{v}", duration_sec=float(video_sec), width=1280, height=720)
            row = w.put_indexed(entry, "bench", ts, emb, windows, zero_shot_tokens(emb, windows, props.tokens_per_proposal))
            for i, a, b in moments.get(v, []):
                planted.append(Planted(SENTENCES[i], int(row["video_seq"]), video_id_for(uri), a / FPS, b / FPS))
            if (v + 1) % 100 == 0:
                print(f"  wrote {v + 1}/{n_videos} videos in {time.perf_counter() - t0:.0f} s", flush=True)
        write_s = time.perf_counter() - t0
        w.commit("bench")
    related = world.scenes[world.related.reshape(-1)] @ world.queries.T  # scene centres vs queries
    by_kind = defaultdict(int)
    for f in (root / "index").rglob("*"):
        if f.is_file():
            kind = next((k for k in ("frames", "proposals", "segments") if f.name.endswith(f".{k}.parquet")),
                        "faiss" if f.suffix == ".faiss" else "catalog and manifests")
            by_kind[kind] += f.stat().st_size
    meta = {"hours": n_videos, "n_videos": n_videos, "sentences": list(SENTENCES[:n_queries]), "n_proposals": n_videos * len(windows),
            "write_s": write_s, "build_s": time.perf_counter() - t0,
            "mb_per_hour": {k: v / 1e6 / n_videos for k, v in sorted(by_kind.items())},
            "cosines": {k: float(np.mean(v)) for k, v in cos.items()}
            | {"related scene centre": float(np.mean(related.max(axis=1)))},
            "queries": world.queries.tolist(), "planted": [asdict(p) for p in planted]}
    meta["mb_per_hour"]["total"] = sum(by_kind.values()) / 1e6 / n_videos
    meta_file.write_text(json.dumps(meta))
    return meta


def lookup_texts(searcher, table: dict[str, np.ndarray]) -> None:
    """Make the searcher's backbone answer the bench's query sentences with their planted embeddings."""
    real = searcher.backbone.embed_texts

    def embed_texts(texts):
        if all(t in table for t in texts):
            return np.stack([table[t] for t in texts])
        return real(texts)

    searcher.backbone.embed_texts = embed_texts


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ``getrusage``'s ru_maxrss, which a child
    inherits from the process that forked it, it starts afresh at exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def reset_peak_rss() -> None:
    """Start :func:`peak_rss_mb` afresh from the current resident size (Linux; elsewhere nothing)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def percentiles(xs: list[float]) -> tuple[float, float]:
    return float(np.percentile(xs, 50)), float(np.percentile(xs, 95))


def measure_search(index: Path, model: Path, meta: dict, torch_text: bool, head: str | None = None) -> dict:
    """Run in a child process: open the index, run each planted query once; stage times, R1, peak RSS.

    ``torch_text`` False: the one-shot CLI's process (text tower in NumPy, torch never imported);
    True: the service's (torch loaded)."""
    from types import SimpleNamespace

    from groundzero.search.searcher import Searcher

    t0 = time.perf_counter()
    s = Searcher(index, model=str(model), device="cpu", numpy_text=not torch_text, head=head)
    open_s = time.perf_counter() - t0
    table = {meta["sentences"][i]: np.asarray(q, np.float32) for i, q in enumerate(meta["queries"])}
    lookup_texts(s, table)
    s.search("a warm-up query")
    stages, r1 = defaultdict(list), []
    for p in (SimpleNamespace(**d) for d in meta["planted"]):
        t = time.perf_counter()
        res = s.search(p.query)
        wall = (time.perf_counter() - t) * 1000
        stages["search() wall"].append(wall)
        stages["search() less text"].append(wall - res.timings_ms.get("text", 0.0))  # the text tower: see text_towers
        for k, v in res.timings_ms.items():
            stages[k].append(v)
        top = res.hits[0] if res.hits else None
        iou = temporal_iou(np.array([[top.start_sec, top.end_sec]]), np.array([[p.start_sec, p.end_sec]]))[0, 0] \
            if top else 0.0
        r1.append(bool(top and top.video_id == p.video_id and iou >= 0.5))
    return {"open_s": open_s, "stages": {k: percentiles(v) for k, v in stages.items()}, "r1": float(np.mean(r1)),
            "faiss": s.vectors.factory, "nprobe": s.vectors.nprobe, "n_tokens": s.vectors.ntotal,
            "peak_rss_mb": peak_rss_mb(), "torch_loaded": "torch" in sys.modules}


def shortlist_recall(index: Path, model: Path, meta: dict) -> dict:
    """The FAISS shortlist against exact search over every stored token (numpy), per planted query."""
    from search_latency import load_all_tokens

    from groundzero.search.searcher import Searcher
    from groundzero.search.shortlist import shortlist

    s = Searcher(index, model=str(model), device="cpu", cache_videos=1)
    cfg = s.cfg
    tokens, first_row = load_all_tokens(s)
    k_tok = s.manifest.params.proposals.tokens_per_proposal
    pools = sorted({1, 2, cfg.rescore_pool}) if s.vectors.codes is not None else [1]
    recall, planted_in, planted_exact = [], [], []
    by_pool: dict[int, list[float]] = defaultdict(list)
    for p in (Planted(**d) for d in meta["planted"]):
        q = np.asarray(meta["queries"][SENTENCES.index(p.query)], np.float32)
        per_prop = (tokens @ q).reshape(-1, k_tok).max(axis=1)
        k = min(cfg.shortlist_proposals, len(per_prop))
        kth = np.partition(per_prop, len(per_prop) - k)[len(per_prop) - k]
        for pool in pools:  # re-scoring pool x the tokens (1: the PQ codes alone)
            other = shortlist(s.vectors, q, cfg.shortlist_tokens, cfg.shortlist_proposals, pool)
            rows = np.array([first_row[int(v)] + int(i) for v, i in zip(other.video_seq, other.proposal_idx)],
                            np.int64)
            by_pool[pool].append(min(k, int((per_prop[rows] >= kth - TIE).sum())) / k)
        sl = shortlist(s.vectors, q, cfg.shortlist_tokens, cfg.shortlist_proposals, cfg.rescore_pool)
        rows = np.array([first_row[int(v)] + int(i) for v, i in zip(sl.video_seq, sl.proposal_idx)], np.int64)
        recall.append(min(k, int((per_prop[rows] >= kth - TIE).sum())) / k)
        want = planted_proposals(s.proposal_ranges(p.video_seq), p)
        got = {(int(v), int(i)) for v, i in zip(sl.video_seq, sl.proposal_idx)}
        planted_in.append(any((p.video_seq, i) in got for i in want))
        planted_exact.append(any(per_prop[first_row[p.video_seq] + i] >= kth - TIE for i in want))
    return {"recall": float(np.mean(recall)), "recall_min": float(np.min(recall)), "k": cfg.shortlist_proposals,
            "recall_by_pool": {str(pool): [float(np.mean(v)), float(np.min(v))] for pool, v in by_pool.items()},
            "planted_in_shortlist": float(np.mean(planted_in)), "planted_in_exact": float(np.mean(planted_exact))}


def frame_scan(index: Path, model: Path, meta: dict, n_queries: int) -> dict:
    """The brute force: every frame of every video read from Parquet and scored against the query."""
    from groundzero.search.searcher import Searcher

    s = Searcher(index, model=str(model), device="cpu", cache_videos=1)
    ms = []
    for q in meta["queries"][:n_queries]:
        q = np.asarray(q, np.float32)
        t = time.perf_counter()
        best = (-2.0, -1, -1)
        for seq, row in s.videos.items():
            emb = tables.FrameReader(s.layout.path(row["frames_file"])).frames()
            sims = emb @ q
            i = int(sims.argmax())
            best = max(best, (float(sims[i]), seq, i))
        ms.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": float(np.median(ms)), "queries": len(ms)}


def shortlist_at_scale(hours: float, n_queries: int, seed: int, factory: str | None, workdir: Path,
                       chunk_videos: int = 200) -> dict:
    """The FAISS shortlist alone at ``hours`` of 1-hour videos, its vectors generated in chunks.

    Context tokens are generated at the tokens' own resolution (one per 8 s segment, the same
    shot structure as :meth:`World.video` with the frame noise of a mean of 8 frames), so 10,000
    hours take minutes, not the hours of 36 M frames. Proposal p's zero-shot tokens are segments
    3p .. 3p+5, as the default 48 s / 24 s windows with 6 tokens give (half of them repeat, as real
    ones do). Exact search runs alongside, over every token of every chunk (a streaming top-k),
    for the recall of the shortlist; the index holds the policy's structure for that many
    tokens (``factory`` to override). For PQ codes the int8 re-scoring copies are spilled to
    disk under ``workdir`` as the chunks come (``SpilledCodes``, as a rebuild does: never all in
    memory), the index is saved as the writer saves it (FAISS file with the codes as its trailer)
    and loaded as search loads it (codes read with ``pread``), and the shortlist is timed on it;
    recall is given by re-scoring pool. The file is deleted afterwards.
    """
    from groundzero.search.config import SearchConfig
    from groundzero.search.shortlist import shortlist
    from groundzero.store.rescore import SpilledCodes
    from groundzero.store.vectors import ContextIndex, GrowthPolicy, encode_ids, training_size

    world = World(n_queries, seed)
    rng = np.random.default_rng(seed + 2)
    cfg, policy, props = SearchConfig(), GrowthPolicy(), ProposalConfig()
    seg_sec = props.window_sec / props.tokens_per_proposal  # 8 s
    n_seg, step = int(3600 / seg_sec), int(props.stride_sec / seg_sec)  # 450 segments, 3 per stride
    n_prop = (n_seg - props.tokens_per_proposal) // step + 1
    k_tok = props.tokens_per_proposal
    prop_seg = (np.arange(n_prop)[:, None] * step + np.arange(k_tok)[None, :])  # (P, K) segment of each token
    n_videos = max(1, math.ceil(hours))
    factory = factory or policy.ivf_factory(n_videos * n_prop * k_tok, DIM)
    index = ContextIndex.create(DIM, factory)
    index.nprobe = policy.nprobe_for(factory)
    workdir.mkdir(parents=True, exist_ok=True)
    spill = SpilledCodes(DIM, workdir) if index.codes is not None else None
    rescored = spill is not None
    index.codes = None  # spilled to disk instead of held in memory
    faiss_file = workdir / f"shortlist-{hours:g}h.faiss"
    n_train = training_size("auto", factory, n_videos * n_prop * k_tok)
    chunk_videos = max(chunk_videos, math.ceil(n_train / (n_prop * k_tok)))  # the first chunk trains the index
    planted_at = {int(v): i for i, v in enumerate(rng.choice(n_videos, n_queries, replace=False))}

    def video_tokens(v: int) -> np.ndarray:
        own = rng.choice(N_SCENES, SCENES_PER_VIDEO, replace=False)
        lengths = np.maximum(1, np.round(rng.exponential(SHOT_MEAN_SEC, n_seg) / seg_sec)).astype(np.int64)
        n_shots = int(np.searchsorted(np.cumsum(lengths), n_seg)) + 1
        scene = np.where(rng.random(n_shots) < OWN_SCENE_SHARE, rng.choice(own, n_shots),
                         rng.integers(0, N_SCENES, n_shots))
        shots = unit(world.scenes[scene] + SHOT_SPREAD * unit(rng.standard_normal((n_shots, DIM), np.float32)))
        seg = np.repeat(shots, lengths[:n_shots], axis=0)[:n_seg]
        seg = unit(MEAN_W * world.mu + seg + FRAME_NOISE / math.sqrt(seg_sec)
                   * unit(rng.standard_normal((n_seg, DIM), np.float32)))
        if v in planted_at:  # 2 segments (16 s) lean towards the query
            a = int(rng.integers(0, n_seg - 2))
            seg[a:a + 2] = world.moment(rng, planted_at[v], 2, FRAME_NOISE / math.sqrt(seg_sec))
            planted[planted_at[v]] = (v, set(np.flatnonzero((prop_seg == a).any(1) | (prop_seg == a + 1).any(1)).tolist()))
        return tables.as_stored(seg)

    planted: dict[int, tuple[int, set[int]]] = {}
    top_k, keep = cfg.shortlist_proposals, 8 * cfg.shortlist_proposals
    # per query: the exact top-`keep` proposals so far, as (score, video * n_prop + proposal)
    best = [(np.zeros(0, np.float32), np.zeros(0, np.int64)) for _ in range(n_queries)]
    t0, add_s, train_s = time.perf_counter(), 0.0, 0.0
    for c0 in range(0, n_videos, chunk_videos):
        vids = range(c0, min(n_videos, c0 + chunk_videos))
        segs = [video_tokens(v) for v in vids]
        ids = np.concatenate([encode_ids(v, n_prop, k_tok) for v in vids])
        toks = np.concatenate([s_[prop_seg.reshape(-1)] for s_ in segs])  # (n * P * K, D)
        if not index.is_trained:
            t = time.perf_counter()
            index.train(toks[rng.choice(len(toks), n_train, replace=False)])
            train_s = time.perf_counter() - t
        t = time.perf_counter()
        index.add(ids, toks)
        if spill is not None:  # ids ascend with the video
            spill.add(ids, toks)
        add_s += time.perf_counter() - t
        per_prop = np.stack([(s_ @ world.queries.T)[prop_seg].max(axis=1) for s_ in segs])  # (n, P, Q)
        per_prop = per_prop.reshape(-1, n_queries)
        rows = np.arange(len(per_prop), dtype=np.int64) + c0 * n_prop
        for i in range(n_queries):
            sc, rw = np.concatenate([best[i][0], per_prop[:, i]]), np.concatenate([best[i][1], rows])
            top = np.argsort(-sc, kind="stable")[:keep]
            best[i] = (sc[top], rw[top])
        print(f"  shortlist corpus: {vids.stop}/{n_videos} videos in {time.perf_counter() - t0:.0f} s", flush=True)
    ivf = index.ivf
    index_mb = index.ntotal * (ivf.code_size + 8) / 1e6 if ivf is not None else index.ntotal * DIM * 4 / 1e6
    build_rss_mb = peak_rss_mb()
    write_s = 0.0
    if spill is not None:  # the file search loads, written as the writer writes it
        t = time.perf_counter()
        index.codes = spill.finish()
        index.save(faiss_file)
        del index, spill
        index = ContextIndex.load(faiss_file)
        index.nprobe = policy.nprobe_for(factory)
        write_s = time.perf_counter() - t
        reset_peak_rss()  # from here on: what searching takes

    def measure(pool: int) -> tuple[list[float], list[float], list[bool]]:
        lat, recall, planted_in = [], [], []
        for i in range(n_queries):
            for _ in range(3):  # median of 3 per query
                t = time.perf_counter()
                sl = shortlist(index, world.queries[i], cfg.shortlist_tokens, top_k, pool)
                lat.append((time.perf_counter() - t) * 1000)
            # a returned proposal counts when its exact score reaches the exact k-th best (ties count)
            exact = dict(zip(best[i][1].tolist(), best[i][0].tolist()))
            kth = best[i][0][min(top_k, len(best[i][0])) - 1]
            hits = sum(exact.get(int(v_) * n_prop + int(p_), -2.0) >= kth - TIE
                       for v_, p_ in zip(sl.video_seq, sl.proposal_idx))
            recall.append(min(top_k, hits) / top_k)
            v, want = planted[i]
            got = {int(p) for s_, p in zip(sl.video_seq, sl.proposal_idx) if int(s_) == v}
            planted_in.append(bool(got & want))
        return lat, recall, planted_in

    by_pool = {}
    for pool in sorted({1, 2, cfg.rescore_pool}) if rescored else [1]:  # 1: the PQ codes alone
        lat_p, recall_p, planted_p = measure(pool)
        by_pool[str(pool)] = {"shortlist_ms": percentiles(lat_p), "recall": float(np.mean(recall_p)),
                              "recall_min": float(np.min(recall_p)), "planted_in_shortlist": float(np.mean(planted_p))}
    chosen = by_pool[str(cfg.rescore_pool if rescored else 1)]
    out = {"hours": n_videos, "factory": factory, "nprobe": index.nprobe, "n_tokens": index.ntotal,
           "train_s": train_s, "add_s": add_s, "shortlist_ms": chosen["shortlist_ms"], "recall": chosen["recall"],
           "recall_min": chosen["recall_min"], "k": top_k, "rescore_pool": cfg.rescore_pool if rescored else 1,
           "planted_in_shortlist": chosen["planted_in_shortlist"], "index_mb": index_mb, "by_pool": by_pool,
           "build_peak_rss_mb": build_rss_mb, "peak_rss_mb": peak_rss_mb()}
    if rescored:
        out |= {"file_mb": faiss_file.stat().st_size / 1e6, "write_s": write_s}
        faiss_file.unlink()
    return out


def text_towers() -> dict:
    """One query's sentence embedding by random text towers of SigLIP 2 base's and So400m's shapes."""
    import torch
    from transformers import SiglipTextConfig, SiglipTextModel

    out = {}
    for name, (width, mlp, layers, heads) in {"base": (768, 3072, 12, 12), "so400m": (1152, 4304, 27, 16)}.items():
        torch.manual_seed(0)
        cfg = SiglipTextConfig(hidden_size=width, intermediate_size=mlp, num_hidden_layers=layers,
                               num_attention_heads=heads, max_position_embeddings=64, vocab_size=32000)
        m = SiglipTextModel(cfg).eval()
        ids = torch.randint(0, 32000, (1, 64))
        for dtype in (torch.float32, torch.bfloat16):
            m = m.to(dtype)
            times = []
            with torch.inference_mode():
                for i in range(6):
                    t = time.perf_counter()
                    m(input_ids=ids)
                    if i:
                        times.append((time.perf_counter() - t) * 1000)
            out[f"{name} {str(dtype).removeprefix('torch.')}"] = float(np.median(times))
    return out


def child_search(root: Path, model: Path, torch_text: bool, head: Path | None = None) -> dict:
    """measure_search in a fresh process (its peak RSS is the search's own); with ``head``, on the
    index reindexed with that head's tokens (``index-head``)."""
    index = root / ("index-head" if head else "index")
    proc = subprocess.run([sys.executable, __file__, "--child", "--index", str(index), "--model",
                           str(model), "--meta", str(root / "bench.json")] + (["--torch-text"] if torch_text else [])
                          + (["--head", str(head)] if head else []),
                          capture_output=True, text=True, env={**os.environ, "GROUNDZERO_LOG": "warning"}, check=False)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def search_with_head(root: Path, model: Path, meta: dict, workdir: Path) -> dict:
    """Reindex (once, cached) the corpus with a tiny random head and time search through it."""
    from search_latency import Corpus, build_head_index, make_head

    from groundzero.model.identity import read_identity

    head = make_head(workdir, read_identity(str(model))[1])
    reindex_s = build_head_index(Corpus(root, meta["n_videos"], meta["n_proposals"], [], meta["build_s"], 0.0), head)
    out = child_search(root, model, torch_text=True, head=head)
    return {"reindex_s": reindex_s, "stages": out["stages"], "peak_rss_mb": out["peak_rss_mb"], "faiss": out["faiss"]}


def child(args: argparse.Namespace) -> None:
    meta = json.loads(Path(args.meta).read_text())
    print(json.dumps(measure_search(Path(args.index), Path(args.model), meta, args.torch_text, args.head)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, nargs="*", default=[10, 100, 1000])
    ap.add_argument("--queries", type=int, default=20, help=f"planted queries per corpus (at most {len(SENTENCES)})")
    ap.add_argument("--scan-queries", type=int, default=3, help="queries timed by the brute-force frame scan")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "gz-bench-scale")
    ap.add_argument("--text-towers", action="store_true", help="also time SigLIP 2 base / So400m text towers")
    ap.add_argument("--shortlist-hours", type=float, nargs="*", default=[], metavar="HOURS",
                    help="also measure the FAISS shortlist alone at these sizes (vectors generated in chunks)")
    ap.add_argument("--shortlist-factory", default=None,
                    help="FAISS structure for --shortlist-hours (default: the growth policy's for that size)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--index", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--meta", help=argparse.SUPPRESS)
    ap.add_argument("--torch-text", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--head", nargs="?", const="tiny", default=None,
                    help="also time search with a grounding head: the index reindexed with a tiny random head's "
                         "tokens (GroundingModelConfig.tiny; latency only, its answers are meaningless)")
    args = ap.parse_args()
    if args.child:
        return child(args)
    args.workdir.mkdir(parents=True, exist_ok=True)
    model = bench_model(args.workdir)
    rows = []
    for hours in args.hours:
        root = args.workdir / f"corpus-{hours:g}h-{args.queries}q-seed{args.seed}"
        meta = build_corpus(root, hours, args.queries, model, args.seed)
        print(f"{hours:g} h: built in {meta['build_s']:.0f} s, {meta['mb_per_hour']['total']:.2f} MB per video hour",
              flush=True)
        search = child_search(root, model, torch_text=False)
        search["torch_peak_rss_mb"] = child_search(root, model, torch_text=True)["peak_rss_mb"]
        if args.head:
            search["head"] = search_with_head(root, model, meta, args.workdir)
        rows.append({"hours": hours, "build": {k: meta[k] for k in ("build_s", "mb_per_hour", "cosines")},
                     "search": search, "shortlist": shortlist_recall(root / "index", model, meta),
                     "scan": frame_scan(root / "index", model, meta, args.scan_queries)})
        print(json.dumps(rows[-1]), flush=True)
    out = {"rows": rows}
    if len(rows) > 1:
        h = np.log([r["hours"] for r in rows])
        p50 = np.log([r["search"]["stages"]["search() wall"][0] for r in rows])
        out["latency_exponent"] = float(np.polyfit(h, p50, 1)[0])
    if args.shortlist_hours:
        out["shortlist_only"] = [shortlist_at_scale(h, args.queries, args.seed, args.shortlist_factory, args.workdir)
                                 for h in args.shortlist_hours]
    if args.text_towers:
        out["text_towers_ms"] = text_towers()
    print(json.dumps(out, indent=1) if args.json else render(out))


def render(out: dict) -> str:
    lines = [("| hours | FAISS | open s | search() p50 / p95 ms | shortlist / fetch / ground p50 | R1@0.5 | "
              "recall@k | planted in shortlist | frame scan ms | scan / search | peak RSS MB (one-shot / torch) | "
              "MB / video h |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in out["rows"]:
        s, sl, st = r["search"], r["shortlist"], r["search"]["stages"]
        p50 = st["search() wall"][0]
        lines.append(f"| {r['hours']:g} | {s['faiss']} (nprobe {s['nprobe']}) | {s['open_s']:.2f} | "
                     f"{p50:.0f} / {st['search() wall'][1]:.0f} | "
                     f"{' / '.join(f'{st[k][0]:.0f}' if k in st else '-' for k in ('shortlist', 'fetch', 'ground'))} | "
                     f"{s['r1']:.2f} | {sl['recall']:.3f} (min {sl['recall_min']:.2f}, k={sl['k']}) | "
                     f"{sl['planted_in_shortlist']:.2f} | {r['scan']['p50_ms']:.0f} | {r['scan']['p50_ms'] / p50:.0f}x | "
                     f"{s['peak_rss_mb']:.0f} / {s['torch_peak_rss_mb']:.0f} | {r['build']['mb_per_hour']['total']:.2f} |")
    for r in out["rows"]:
        st = r["search"]["stages"]
        pools = r["shortlist"].get("recall_by_pool", {})
        lines.append(f"{r['hours']:g} h: search() less the text tower p50 / p95 {st['search() less text'][0]:.0f} / "
                     f"{st['search() less text'][1]:.0f} ms; shortlist recall@{r['shortlist']['k']} by re-scoring pool "
                     + ", ".join(f"{p}x {v[0]:.3f} (min {v[1]:.2f})" for p, v in pools.items()))
    for r in out["rows"]:
        if "head" in r["search"]:
            h = r["search"]["head"]
            st = h["stages"]
            lines.append(f"{r['hours']:g} h with a head ({h['faiss']}): search() p50 / p95 {st['search() wall'][0]:.0f} / "
                         f"{st['search() wall'][1]:.0f} ms, less the text tower {st['search() less text'][0]:.0f} / "
                         f"{st['search() less text'][1]:.0f} ms; " + ", ".join(
                             f"{k} {v[0]:.0f}" for k, v in st.items() if not k.startswith("search()"))
                         + f" ms; peak RSS {h['peak_rss_mb']:.0f} MB; reindex {h['reindex_s']:.0f} s")
    if "latency_exponent" in out:
        lines.append(f"\nsearch() p50 grows as hours^{out['latency_exponent']:.2f}")
    for r in out["rows"]:
        lines.append(f"{r['hours']:g} h: MB per video hour " + ", ".join(
            f"{k} {v:.2f}" for k, v in r["build"]["mb_per_hour"].items()) + "; cosines with the query " + ", ".join(
            f"{k} {v:.3f}" for k, v in r["build"]["cosines"].items()))
    for r in out.get("shortlist_only", []):
        lines.append(f"shortlist alone at {r['hours']:g} h: {r['factory']} nprobe {r['nprobe']}, {r['n_tokens']} tokens, "
                     f"p50 / p95 {r['shortlist_ms'][0]:.1f} / {r['shortlist_ms'][1]:.1f} ms, recall@{r['k']} "
                     f"{r['recall']:.3f} (min {r['recall_min']:.2f}) re-scoring {r['rescore_pool']}x the tokens"
                     + f", planted in shortlist {r['planted_in_shortlist']:.2f}; by re-scoring pool "
                     + ", ".join(f"{p}x: p50 {v['shortlist_ms'][0]:.1f} ms, recall {v['recall']:.3f} (min "
                                 f"{v['recall_min']:.2f}), planted {v['planted_in_shortlist']:.2f}"
                                 for p, v in r["by_pool"].items())
                     + "; "
                     f"PQ codes and ids {r['index_mb']:.0f} MB in RAM"
                     + (f", file with the int8 codes {r['file_mb']:.0f} MB (written in {r['write_s']:.0f} s)"
                        if "file_mb" in r else "")
                     + f", train {r['train_s']:.0f} s, add {r['add_s']:.0f} s, "
                     f"peak RSS {r['build_peak_rss_mb']:.0f} MB building, {r['peak_rss_mb']:.0f} MB searching")
    if "text_towers_ms" in out:
        lines.append("text tower, one query (ms): " + ", ".join(f"{k} {v:.0f}" for k, v in out["text_towers_ms"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
