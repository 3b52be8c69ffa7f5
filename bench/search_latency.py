"""Query latency by stage on synthetic archives of 10, 100 and 1,000 hours, vs brute-force RG-Encoder scoring.

    .venv/bin/python bench/search_latency.py --hours 10 100 1000 --queries 20 \\
        --workdir WORKDIR

(``.venv/bin/python`` after ``scripts/setup.sh``.) For each corpus size it builds once, and
caches under ``--workdir``, an index of 1-hour videos (``--video-minutes``) at 1 fps whose frame
embeddings are planted, written through the real :class:`~groundzero.store.writer.IndexWriter` with
zero-shot context tokens, proposals 48 s / stride 24 s (the defaults); then it

1. measures the zero-shot search (``Searcher`` without a head): per-stage latency, whether each
   query's planted moment reaches the FAISS shortlist, R1@0.5 of the planted (video, span), and
   the shortlist against an exhaustive scan of every proposal's stored tokens (max token cosine,
   numpy, the "brute force" of the shortlist): same best proposal, and the share of the
   exhaustive top-``shortlist_proposals`` that FAISS returns. FAISS here is an exact ``Flat``
   index, so both must be 1.0: the figure checks the plumbing, an IVF/HNSW factory would not;
2. copies the index (hard links), ``reindex``-es it with a grounding head and measures the
   trained path: text (pooled embedding + word states), FAISS, fetch (the frame Parquet row groups
   that the shortlisted windows cover, read afresh for every query), re-rank (the RG-Encoder/decoder forward
   over the shortlisted windows), grounding (the rest of ``rerank_and_ground``: window ranking,
   span decoding, NMS), merge. ``Searcher.search`` is also timed end to end as a check;
3. brute force, what RGNet does per video: ``groundzero.model.inference.ground`` over *every* proposal
   window of *every* video with the same head, for ``--bruteforce-queries`` queries (frames
   preloaded: compute only, no I/O). Videos go in a random order; a pass that has spent
   ``--bruteforce-budget-s`` seconds stops there and is extrapolated linearly to all videos; the
   table says so and from how many videos.

What is synthetic, and why:

* The backbone is the tiny bench SigLIP (``groundzero.model.tiny.bench_siglip``: random weights, embed dim 64), so that 1,000 hours
  (3.6 M frames) fits in memory and on disk (about 1.8 GB of Parquet + FAISS). The real SigLIP 2 So400m
  is 1152-d: frame Parquet, FAISS and RAM scale by about x18, FAISS Flat search time too; the
  text tower's time does not carry over at all (So400m's is far heavier).
* The grounding head is ``GroundingModelConfig.tiny(64, 64)`` with random weights
  (``torch.manual_seed(0)``): fine for latency, meaningless for accuracy, so accuracy is
  measured on the zero-shot index only. A real head (hidden 256, 2+2 layers) costs more per window.
* The tiny random text tower maps every sentence to nearly one direction (pairwise cosine
  0.89-1.00), so planting the query embedding q_i itself would make every query's moment the
  answer to every other query. Each planted moment is therefore the unit vector along the part
  of q_i orthogonal to the other queries (cosine |r_i| ~ 0.05-0.25 with q_i, 0 with every other
  query) plus noise, and background frames are random unit vectors with their component in the
  queries' span shrunk to 2% (cosine ~ 0.003 with any query: orthogonal-ish, yet no exact ties).
  Each query has one planted moment of 10-30 s in a random video; moments never overlap.

Timings are wall-clock on whatever else the machine is doing; the 1-minute load average is
printed beside each corpus. On a shared machine pass ``--torch-threads 1``: with torch's default
threads on cores another process is using, forward passes were seen to slow down up to 100x.
Build and reindex times of a cached corpus are those of its first build.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from groundzero.data.proposals import ProposalConfig, make_windows, zero_shot_tokens
from groundzero.data.spans import temporal_iou
from groundzero.indexer.reindex import reindex
from groundzero.indexer.tokens import head_token_kind
from groundzero.model.backbone import Backbone
from groundzero.model.checkpoint import save_model
from groundzero.model.grounder import GroundingModel, GroundingModelConfig
from groundzero.model.identity import ModelIdentity, read_identity
from groundzero.model.inference import ground
from groundzero.model.tiny import bench_siglip
from groundzero.search.config import SearchConfig
from groundzero.search.ground_zeroshot import ground_region, merge_ranges
from groundzero.search.merge import merge_hits
from groundzero.search.rerank import rerank_and_ground
from groundzero.search.results import Hit
from groundzero.search.searcher import Searcher
from groundzero.search.shortlist import shortlist
from groundzero.store import tables
from groundzero.store.manifest import IndexParams
from groundzero.store.writer import IndexWriter, VideoEntry, video_id_for

# Sentences made of the bundled tokenizer's vocabulary (unknown words become <unk>).
SENTENCES = (
    "the witness is handed exhibit 12", "the lecturer derives the chain rule", "a person opens the door",
    "a red ball moves to the left", "a blue square appears on the screen", "the title text disappears",
    "a goal is scored", "a person walks in from the right", "a yellow star is moving up",
    "the background changes to green", "a small black circle moves down", "a big orange box appears",
    "the slide changes", "a purple triangle moves fast to the right", "a white word appears on the slide",
    "the scene changes", "a green circle moves slow", "a person walks to the door",
    "the lecturer is at the screen", "an orange ball and a blue box", "a black star disappears",
    "a red triangle is moving down", "a big white square", "the witness walks to the left",
)
FPS = 1.0
NOISE = 0.05  #: planted frames: unit(r_i + NOISE * unit(gaussian))
BACKGROUND_IN_SPAN = 0.02  #: share of a background frame's query-span component that is kept
SLOT_SEC = 60  #: planted moments go in distinct 60 s slots, so they never overlap
TIE = 1e-5  #: scores closer than this are ties (FAISS and numpy round differently)


@dataclass(frozen=True)
class Planted:
    query: str
    video_seq: int
    video_id: str
    start_sec: float
    end_sec: float


@dataclass(frozen=True)
class Corpus:
    root: Path  #: holds index/, index-head/, bench.json
    n_videos: int
    n_proposals: int
    planted: list[Planted]
    build_s: float
    disk_mb: float

    @property
    def index(self) -> Path:
        return self.root / "index"

    @property
    def head_index(self) -> Path:
        return self.root / "index-head"


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def plant_directions(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For query embeddings q (N, D): an orthonormal basis of their span (N, D), and per query
    the unit vector along its component orthogonal to the other queries (N, D)."""
    basis = np.linalg.qr(q.T.astype(np.float64))[0].T  # (N, D)
    resid = np.zeros_like(q, dtype=np.float64)
    for i in range(len(q)):
        others = np.delete(q, i, axis=0).T.astype(np.float64)  # (D, N-1)
        coef = np.linalg.lstsq(others, q[i], rcond=None)[0]
        resid[i] = q[i] - others @ coef
    return basis.astype(np.float32), unit(resid)


def place_moments(n_queries: int, n_videos: int, video_sec: int,
                  rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """(video index, start frame, end frame) per query: 10-30 s, distinct 60 s slots."""
    slots_per_video = video_sec // SLOT_SEC
    if slots_per_video * n_videos < n_queries:
        raise SystemExit(f"{n_videos} videos of {video_sec} s have room for {slots_per_video * n_videos} "
                         f"planted moments, not {n_queries}; use fewer --queries or more --hours")
    picks = rng.choice(slots_per_video * n_videos, size=n_queries, replace=False)
    out = []
    for slot in picks.tolist():
        v, s = divmod(slot, slots_per_video)
        dur = int(rng.integers(10, 31))
        start = s * SLOT_SEC + int(rng.integers(0, SLOT_SEC - dur + 1))
        out.append((v, int(start * FPS), int((start + dur) * FPS)))
    return out


def build_corpus(root: Path, hours: float, video_minutes: float, queries: list[str], q_emb: np.ndarray,
                 identity: ModelIdentity, seed: int, faiss_factory: str = "Flat") -> Corpus:
    """Write (or reuse) the planted index of one corpus size; ``bench.json`` marks it complete.

    ``faiss_factory``: the writer's FAISS policy ("Flat": exact search, this bench's own corpora;
    "auto": the structure ``groundzero index`` gives an archive of that size)."""
    meta_file = root / "bench.json"
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        return Corpus(root, meta["n_videos"], meta["n_proposals"], [Planted(**p) for p in meta["planted"]],
                      meta["build_s"], meta["disk_mb"])
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    video_sec = round(video_minutes * 60)
    n_videos = max(1, math.ceil(hours * 3600 / video_sec))
    rng = np.random.default_rng(seed)
    basis, resid = plant_directions(q_emb)
    moments: dict[int, list[tuple[int, int, int]]] = defaultdict(list)  # video -> (query, a, b)
    for i, (v, a, b) in enumerate(place_moments(len(queries), n_videos, video_sec, rng)):
        moments[v].append((i, a, b))
    props = ProposalConfig()
    params = IndexParams(fps=FPS, frame_size=identity.image_size, proposals=props)
    T, D = int(video_sec * FPS), q_emb.shape[1]
    ts = np.arange(T, dtype=np.float64) / FPS
    windows = make_windows(T, FPS, props)
    planted: list[Planted] = []
    t0 = time.perf_counter()
    with IndexWriter.open(root / "index", identity, params, faiss_factory) as w:
        for v in range(n_videos):
            bg = rng.standard_normal((T, D), dtype=np.float32)
            bg -= (1.0 - BACKGROUND_IN_SPAN) * (bg @ basis.T) @ basis  # orthogonal-ish to every query
            emb = unit(bg)
            for i, a, b in moments.get(v, []):
                emb[a:b] = unit(resid[i] + NOISE * unit(rng.standard_normal((b - a, D))))
            uri = f"/archive/bench/video_{v:05d}.mp4"
            entry = VideoEntry(uri=uri, rel_path=f"video_{v:05d}.mp4", size_bytes=10**9 + v, mtime_ns=v,
                               content_hash=f"bench{v}", duration_sec=float(video_sec), width=1280, height=720)
            tokens = zero_shot_tokens(emb, windows, props.tokens_per_proposal)
            row = w.put_indexed(entry, "bench", ts, emb, windows, tokens)
            for i, a, b in moments.get(v, []):
                planted.append(Planted(queries[i], int(row["video_seq"]), video_id_for(uri), a / FPS, b / FPS))
            if (v + 1) % 100 == 0:
                el = time.perf_counter() - t0
                print(f"  built {v + 1}/{n_videos} videos in {el:.0f} s ({el / (v + 1) * 1000:.0f} ms/video)",
                      flush=True)
        w.commit("bench")
    build_s = time.perf_counter() - t0
    planted.sort(key=lambda p: queries.index(p.query))
    disk_mb = sum(f.stat().st_size for f in (root / "index").rglob("*") if f.is_file()) / 1e6
    meta = {"hours": hours, "video_minutes": video_minutes, "n_videos": n_videos,
            "n_proposals": n_videos * len(windows), "build_s": build_s, "disk_mb": disk_mb,
            "planted": [asdict(p) for p in planted]}
    meta_file.write_text(json.dumps(meta, indent=1))
    return Corpus(root, n_videos, n_videos * len(windows), planted, build_s, disk_mb)


def make_head(workdir: Path, identity: ModelIdentity) -> Path:
    """A tiny grounding head with random weights (seed 0), saved once as a checkpoint folder."""
    head = workdir / "head-tiny-seed0"
    if not (head / "model.safetensors").is_file():
        torch.manual_seed(0)
        model = GroundingModel(GroundingModelConfig.tiny(video_dim=identity.embed_dim, text_dim=identity.embed_dim))
        save_model(head, model, extra={"backbone": identity.to_dict()})
    return head


def build_head_index(corpus: Corpus, head: Path) -> float:
    """Hard-link copy of the zero-shot index, reindexed with the head's tokens; returns reindex seconds."""
    marker = corpus.root / "index-head.json"
    kind = head_token_kind(head)
    if marker.is_file() and json.loads(marker.read_text()).get("token_kind") == kind:
        return float(json.loads(marker.read_text())["reindex_s"])
    shutil.rmtree(corpus.head_index, ignore_errors=True)

    def link(src: str, dst: str) -> None:  # every store file is written once and renamed into place
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(corpus.index, corpus.head_index, copy_function=link, ignore=shutil.ignore_patterns(".lock"))
    t0 = time.perf_counter()
    reindex(corpus.head_index, str(head))
    reindex_s = time.perf_counter() - t0
    marker.write_text(json.dumps({"token_kind": kind, "reindex_s": reindex_s}))
    return reindex_s


class TimedForward:
    """Stands in for a GroundingModel inside ``ground``: adds up the time spent in forward passes."""

    def __init__(self, model: GroundingModel):
        self.model, self.seconds = model, 0.0
        self.cuda = next(model.parameters()).device.type == "cuda"

    def eval(self) -> TimedForward:
        self.model.eval()
        return self

    def parameters(self):
        return self.model.parameters()

    def __call__(self, *args: torch.Tensor) -> dict:
        t0 = time.perf_counter()
        out = self.model(*args)
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - t0
        return out


def fetch(s: Searcher, video_seq: np.ndarray, proposal_idx: np.ndarray
          ) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Read the shortlisted videos' (timestamps, frames, windows) from Parquet, as ``search()`` does:
    only the frame row groups that the shortlisted proposals cover.

    Searchers here keep one video in their cache, so this and ``search()`` read every
    shortlisted video afresh per query (the OS page cache stays warm)."""
    by_video: dict[int, list[int]] = defaultdict(list)
    for v, i in zip(video_seq.tolist(), proposal_idx.tolist()):
        if v in s.videos:
            by_video[v].append(i)
    return {v: s.video_data(v, s.proposal_ranges(v)[props]) for v, props in by_video.items()}


def ground_zero_shot(s: Searcher, q: np.ndarray, video_seq: np.ndarray, proposal_idx: np.ndarray,
                     data: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list[Hit]:
    """What ``Searcher.search`` does without a head once the frames are in memory."""
    by_video: dict[int, list[int]] = defaultdict(list)
    for v, i in zip(video_seq.tolist(), proposal_idx.tolist()):
        if v in data:
            by_video[v].append(i)
    fps, hits = s.manifest.params.fps, []
    for v, props in by_video.items():
        row, (ts, emb, ranges) = s.videos[v], data[v]
        for a, b in merge_ranges(ranges[props]):
            for c in ground_region(emb[a:b], q, a, s.cfg.smooth_frames, s.cfg.spans_per_region):
                end = float(ts[c.last_frame] + 1.0 / fps)
                if row["duration_sec"] > ts[c.first_frame]:
                    end = min(end, float(row["duration_sec"]))
                hits.append(Hit(video_id=row["video_id"], uri=row["uri"], rel_path=row["rel_path"],
                                start_sec=float(ts[c.first_frame]), end_sec=end, score=c.mean_cos,
                                found_prob=float(s.backbone.match_probability(c.peak_cos))))
    return hits


def percentiles(xs: list[float]) -> tuple[float, float]:
    return float(np.percentile(xs, 50)), float(np.percentile(xs, 95))


def planted_proposals(windows: np.ndarray, p: Planted) -> set[int]:
    """The proposals of the planted video that hold most of the planted span (all of it when it fits)."""
    a, b = p.start_sec * FPS, p.end_sec * FPS
    overlap = np.clip(np.minimum(windows[:, 1], b) - np.maximum(windows[:, 0], a), 0, None)
    return set(np.flatnonzero(overlap == overlap.max()).tolist())


def measure_zero_shot(corpus: Corpus, model_dir: str, cfg: SearchConfig, device: str) -> dict:
    s = Searcher(corpus.index, model=model_dir, device=device, cfg=cfg, cache_videos=1)
    s.search(SENTENCES[-1])  # warm-up
    stages: dict[str, list[float]] = defaultdict(list)
    in_shortlist, r1, best_same, topk_recall, exhaustive_ms = [], [], [], [], []
    tokens, first_row = load_all_tokens(s)  # (P_total * K, D); video_seq -> its first proposal's row
    tokens_per_prop = s.manifest.params.proposals.tokens_per_proposal
    for p in corpus.planted:
        res = s.search(p.query)
        stages["search()"].append(sum(res.timings_ms.values()))
        top = res.hits[0] if res.hits else None
        iou = temporal_iou(np.array([[top.start_sec, top.end_sec]]), np.array([[p.start_sec, p.end_sec]]))[0, 0] \
            if top else 0.0
        r1.append(bool(top and top.video_id == p.video_id and iou >= 0.5))
        t = time.perf_counter()
        q = s.backbone.embed_texts([p.query])[0]
        t, stages["text"] = _lap(t, stages["text"])
        sl = shortlist(s.vectors, q, cfg.shortlist_tokens, cfg.shortlist_proposals)
        t, stages["faiss"] = _lap(t, stages["faiss"])
        data = fetch(s, sl.video_seq, sl.proposal_idx)
        t, stages["fetch"] = _lap(t, stages["fetch"])
        cands = ground_zero_shot(s, q, sl.video_seq, sl.proposal_idx, data)
        t, stages["ground"] = _lap(t, stages["ground"])
        merge_hits(cands, cfg.top_k, cfg.nms_iou)
        t, stages["merge"] = _lap(t, stages["merge"])
        windows = s.proposal_ranges(p.video_seq)
        want = planted_proposals(windows, p)
        got = {(int(v), int(i)) for v, i in zip(sl.video_seq, sl.proposal_idx)}
        in_shortlist.append(any((p.video_seq, i) in got for i in want))
        t = time.perf_counter()
        per_prop = (tokens @ q).reshape(-1, tokens_per_prop).max(axis=1)  # every proposal's best token
        k = min(cfg.shortlist_proposals, len(per_prop))
        kth = np.partition(per_prop, len(per_prop) - k)[len(per_prop) - k]  # exhaustive k-th best score
        exhaustive_ms.append((time.perf_counter() - t) * 1000)
        # ties (overlapping windows share sub-segments, so equal tokens) count as agreement
        rows = np.array([first_row[v] + i for v, i in got], np.int64)
        best_row = first_row[int(sl.video_seq[0])] + int(sl.proposal_idx[0])
        best_same.append(bool(per_prop[best_row] >= per_prop.max() - TIE))
        topk_recall.append(min(k, int((per_prop[rows] >= kth - TIE).sum())) / k)
    out = {k: percentiles(v) for k, v in stages.items()}
    out.update(in_shortlist=np.mean(in_shortlist), r1=np.mean(r1), best_same=np.mean(best_same),
               topk_recall=np.mean(topk_recall), exhaustive=percentiles(exhaustive_ms), n_tokens=s.vectors.ntotal)
    return out


def load_all_tokens(s: Searcher) -> tuple[np.ndarray, dict[int, int]]:
    """Every proposal's stored context tokens, read from the Parquet files (not from FAISS).

    Returns tokens float32 (P_total * K, D) in (video_seq, proposal, token) order, and per
    video_seq the row of its proposal 0 (proposal rows run 0 .. P_total - 1).
    """
    toks, first_row, n = [], {}, 0
    for seq, row in sorted(s.videos.items()):
        pr = tables.read_proposals(s.layout.path(row["proposals_file"]), tokens=True)
        if not np.array_equal(pr["proposal_idx"], np.arange(len(pr["proposal_idx"]))):
            raise SystemExit(f"video {seq}: proposals are not numbered 0..P-1")
        toks.append(pr["tokens"].reshape(-1, s.vectors.dim).astype(np.float32))
        first_row[seq], n = n, n + len(pr["proposal_idx"])
    return np.concatenate(toks), first_row


def _lap(t0: float, acc: list[float]) -> tuple[float, list[float]]:
    acc.append((time.perf_counter() - t0) * 1000)
    return time.perf_counter(), acc


def measure_head(corpus: Corpus, model_dir: str, head: Path, cfg: SearchConfig, device: str) -> tuple[dict, Searcher]:
    s = Searcher(corpus.head_index, model=model_dir, device=device, cfg=cfg, head=str(head), cache_videos=1)
    s.search(SENTENCES[-1])  # warm-up
    stages: dict[str, list[float]] = defaultdict(list)
    fps = s.manifest.params.fps
    for p in corpus.planted:
        res = s.search(p.query)
        stages["search()"].append(sum(res.timings_ms.values()))
        t = time.perf_counter()
        q = s.backbone.embed_texts([p.query])[0]
        states, masks = s.backbone.encode_text_tokens([p.query])
        words = states[0][masks[0]]
        t, stages["text"] = _lap(t, stages["text"])
        sl = shortlist(s.vectors, q, cfg.shortlist_tokens, cfg.shortlist_proposals)
        t, stages["faiss"] = _lap(t, stages["faiss"])
        data = fetch(s, sl.video_seq, sl.proposal_idx)
        by_video: dict[int, list[int]] = defaultdict(list)
        for v, i in zip(sl.video_seq.tolist(), sl.proposal_idx.tolist()):
            if v in data:
                by_video[v].append(i)
        videos = [(s.videos[v], data[v][1], data[v][2][sorted(props)]) for v, props in by_video.items()]
        t, stages["fetch"] = _lap(t, stages["fetch"])
        timed = TimedForward(s.head)
        cands = rerank_and_ground(timed, words, np.ones(len(words), bool), fps, videos,
                                  top_windows=cfg.rerank_windows, nms_iou=cfg.nms_iou)
        total = (time.perf_counter() - t) * 1000
        stages["re-rank"].append(timed.seconds * 1000)
        stages["ground"].append(total - timed.seconds * 1000)
        t = time.perf_counter()
        merge_hits(cands, cfg.top_k, cfg.nms_iou)
        t, stages["merge"] = _lap(t, stages["merge"])
    out = {k: percentiles(v) for k, v in stages.items()}
    out["n_tokens"] = s.vectors.ntotal
    return out, s


def brute_force(s: Searcher, queries: list[str], cfg: SearchConfig, budget_s: float, seed: int) -> dict:
    """Per query: ``ground`` over every window of every video, frames preloaded (compute only).

    Videos go in a random order; once a query has spent ``budget_s`` of compute, the rest is
    extrapolated linearly (elapsed x videos / videos done).
    """
    seqs = np.random.default_rng(seed).permutation(sorted(s.videos)).tolist()
    fps = s.manifest.params.fps
    frames: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    ms, done = [], []
    for q in queries:
        states, masks = s.backbone.encode_text_tokens([q])
        words = states[0][masks[0]]
        spent, n = 0.0, 0
        for seq in seqs:
            if seq not in frames:  # Parquet read, not timed
                frames[seq] = s.video_data(seq)[1:]
            emb, ranges = frames[seq]
            t0 = time.perf_counter()
            ground(s.head, emb, ranges, words, np.ones(len(words), bool), fps,
                   top_windows=cfg.rerank_windows, nms_iou=cfg.nms_iou)
            spent, n = spent + time.perf_counter() - t0, n + 1
            if spent > budget_s:
                break
        ms.append(spent * 1000 * len(seqs) / n)
        done.append(n)
    return {"p50": float(np.median(ms)), "sampled": min(done), "videos": len(seqs), "queries": len(queries)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--queries", type=int, default=20, help=f"planted queries per corpus (at most {len(SENTENCES)})")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "gz-bench-search")
    ap.add_argument("--video-minutes", type=float, default=60.0)
    ap.add_argument("--skip-bruteforce-above", type=float, default=math.inf, metavar="HOURS",
                    help="no brute-force figure for corpora larger than this")
    ap.add_argument("--bruteforce-queries", type=int, default=3, help="queries timed by brute force")
    ap.add_argument("--bruteforce-budget-s", type=float, default=120.0,
                    help="per query: compute seconds after which the pass stops and is extrapolated")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto (text tower and head)")
    ap.add_argument("--torch-threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    if not 2 <= args.queries <= len(SENTENCES):
        raise SystemExit(f"--queries must be in [2, {len(SENTENCES)}]")
    cfg = SearchConfig().validate()
    model_dir = str(bench_siglip(args.workdir))
    _, identity = read_identity(model_dir)
    queries = list(SENTENCES[: args.queries])
    q_emb = Backbone(model_dir, device="cpu").embed_texts(queries)
    head = make_head(args.workdir, identity)
    print(f"backbone: tiny bench SigLIP (random weights, D={identity.embed_dim}); head: "
          f"GroundingModelConfig.tiny (random weights, seed 0); device {args.device}, "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs; {args.queries} queries; "
          f"shortlist {cfg.shortlist_tokens} tokens -> {cfg.shortlist_proposals} proposals, "
          f"re-rank keeps {cfg.rerank_windows} windows/video", flush=True)
    rows = []
    for hours in args.hours:
        root = args.workdir / f"corpus-{hours:g}h-{args.video_minutes:g}min-{args.queries}q-seed{args.seed}"
        print(f"== {hours:g} h: building/loading {root}", flush=True)
        corpus = build_corpus(root, hours, args.video_minutes, queries, q_emb, identity, args.seed)
        reindex_s = build_head_index(corpus, head)
        load0 = os.getloadavg()[0]
        zs = measure_zero_shot(corpus, model_dir, cfg, args.device)
        hd, searcher = measure_head(corpus, model_dir, head, cfg, args.device)
        bf = None
        if hours <= args.skip_bruteforce_above:
            bf = brute_force(searcher, queries[: args.bruteforce_queries], cfg, args.bruteforce_budget_s, args.seed)
        del searcher
        rows.append((hours, corpus, reindex_s, zs, hd, bf, (load0, os.getloadavg()[0])))
        print_tables(rows[-1:])
    print("\n######## summary ########")
    print_tables(rows)


def print_tables(rows: list) -> None:
    def pp(x: tuple[float, float]) -> str:
        return f"{x[0]:.1f}/{x[1]:.1f}"

    print("\ncorpus     videos  proposals  tok(0-shot) tok(head)  build s  reindex s  disk MB  load avg")
    for hours, c, rs, zs, hd, _, load in rows:
        print(f"{hours:>6g} h {c.n_videos:>7d} {c.n_proposals:>10d} {zs['n_tokens']:>12d} {hd['n_tokens']:>9d} "
              f"{c.build_s:>8.1f} {rs:>10.1f} {c.disk_mb:>8.0f}  {load[0]:.1f}->{load[1]:.1f}")
    print("\nzero-shot search, ms p50/p95:  text  faiss  fetch  ground  merge  | search()   "
          "| exhaustive-token-scan | in-shortlist  same-best  top32-recall  R1@0.5")
    for hours, c, _, zs, _, _, _ in rows:
        print(f"{hours:>6g} h {'':22}{pp(zs['text']):>8} {pp(zs['faiss']):>10} {pp(zs['fetch']):>11} "
              f"{pp(zs['ground']):>9} {pp(zs['merge']):>9} | {pp(zs['search()']):>11} | {pp(zs['exhaustive']):>21} | "
              f"{zs['in_shortlist']:>12.2f} {zs['best_same']:>10.2f} {zs['topk_recall']:>13.2f} {zs['r1']:>7.2f}")
    print("\nwith head, ms p50/p95:  text  faiss  fetch  re-rank  ground  merge  | search()  "
          "| brute force ms/query (p50)")
    for hours, c, _, _, hd, bf, _ in rows:
        if bf is None:
            b = "skipped"
        else:
            b = f"{bf['p50']:.0f} ({bf['queries']} queries, "
            b += ("all " + str(bf["videos"]) + " videos)" if bf["sampled"] == bf["videos"] else
                  f"EXTRAPOLATED from {bf['sampled']} of {bf['videos']} videos)")
            b += f"  = {bf['p50'] / hd['search()'][0]:.0f}x search() p50"
        print(f"{hours:>6g} h {pp(hd['text']):>12} {pp(hd['faiss']):>10} {pp(hd['fetch']):>11} {pp(hd['re-rank']):>9} "
              f"{pp(hd['ground']):>9} {pp(hd['merge']):>9} | {pp(hd['search()']):>10} | {b}")


if __name__ == "__main__":
    main()
