"""The searcher: load an index once, answer many queries.

``Searcher(index_dir).search("the witness is handed exhibit 12")`` runs

    text tower -> FAISS shortlist over context tokens (whole corpus)
               -> ground inside the shortlisted proposals (:meth:`Searcher.ground`):
                  zero-shot (``search.ground_zeroshot``), or with a head: re-rank and ground
                  (``search.rerank``), then the head's re-scorer if its config declares one
                  (:mod:`groundzero.plugins`)
               -> merge (NMS, top-k) -> :class:`SearchResult`

:meth:`Searcher.ground` is the one grounding path: evaluation (``search.evaluate``) calls it
too, with every window of the query's own video.

It only ever reads a committed snapshot (the manifest is read once at load),
so an index run going on meanwhile is invisible to it.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from groundzero.errors import EmptyQueryError, IndexMismatchError, ModelNotFoundError
from groundzero.plugins import Rescorer, load_rescorer
from groundzero.model.backbone import Backbone
from groundzero.model.identity import read_identity
from groundzero.store import tables
from groundzero.store.catalog import read_catalog
from groundzero.store.manifest import check_model, require_manifest
from groundzero.store.s3_index import resolve_index_dir
from groundzero.store.vectors import ContextIndex
from groundzero.search.config import SearchConfig
from groundzero.search.ground_zeroshot import ground_region, merge_ranges
from groundzero.search.merge import merge_hits
from groundzero.search.results import Hit, SearchResult, VideoGrounding
from groundzero.search.shortlist import shortlist

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 1000


class Searcher:
    """Args:
        index_dir: a directory written by ``groundzero index``, or ``s3://bucket/prefix`` (pulled into
            the local cache; endpoint from ``AWS_ENDPOINT_URL``).
        model: checkpoint to embed queries with; default: the one that built the index.
            Any other model is refused (its embeddings live in another space).
        device: "auto" | "cpu" | "cuda[:n]".
        cfg: search parameters.
        cache_videos: how many videos' frame embeddings to keep in memory between queries.
        head: a trained grounding head (``groundzero train``); the index must hold that head's
            context tokens (``groundzero reindex --head``). Default: the head the index's
            tokens were made with (recorded in its manifest), else zero-shot grounding.
        backbone: an already loaded :class:`Backbone` of ``model`` to reuse (a server opening a
            newer snapshot of the same index keeps its model in memory); default: load ``model``.
    """

    def __init__(self, index_dir: str | Path, model: str | None = None, device: str = "auto",
                 cfg: SearchConfig | None = None, cache_videos: int = 64, head: str | None = None,
                 backbone: Backbone | None = None):
        self.cfg = (cfg or SearchConfig()).validate()
        # an s3:// index is pulled into a local cache first (groundzero.store.s3_index)
        self.layout, self.manifest = require_manifest(resolve_index_dir(index_dir))
        model = model or self.manifest.model.name
        _, identity = read_identity(model)
        check_model(self.manifest, identity, self.layout.root)
        if backbone is not None and backbone.identity.fingerprint != identity.fingerprint:
            raise IndexMismatchError(f"the loaded backbone ({backbone.identity.name!r}) is not the model "
                                     f"{model!r} this index needs; load that model")
        self.backbone = backbone if backbone is not None else Backbone(model, device=device)
        self.vectors = ContextIndex.load(self.layout.path(self.manifest.faiss_file)) \
            if self.manifest.faiss_file else ContextIndex.create(identity.embed_dim)
        self.videos = {int(r["video_seq"]): r for r in read_catalog(self.layout, self.manifest)
                       if r["status"] == "indexed"}
        if head is None and self.manifest.params.token_kind.startswith("head:"):
            head = self.manifest.extra.get("head")
            if head is None or not Path(head).is_dir():
                raise ModelNotFoundError(
                    f"index {self.layout.root} was tokenised with grounding head {head!r}, which is gone; "
                    "pass --head with that head, or `groundzero reindex --head NEW_HEAD` (or --zero-shot)")
        self.head_dir = head
        self.head, head_meta = self._load_head(head, identity) if head else (None, {})
        self.found_threshold = self.cfg.found_threshold
        if self.found_threshold is None:
            self.found_threshold = float(head_meta.get("found_threshold", 0.5))
        #: the head's re-scorer (``"rescorer"`` in its config.json; :mod:`groundzero.plugins`), if any
        self.rescorer: Rescorer | None = load_rescorer(head_meta["rescorer"], self.backbone) \
            if self.head is not None and head_meta.get("rescorer") else None
        self._cache: OrderedDict[int, tuple[tables.FrameReader, np.ndarray]] = OrderedDict()
        self._cache_size = cache_videos

    def _load_head(self, head: str, identity):
        from groundzero.model.checkpoint import load_model, read_config
        from groundzero.indexer.tokens import head_token_kind

        meta = read_config(head)
        if meta.get("backbone", {}).get("fingerprint") != identity.fingerprint:
            raise IndexMismatchError(f"head {head} was trained on another backbone's embeddings "
                                     f"({meta.get('backbone', {}).get('name')!r}); train a head on this index")
        kind = head_token_kind(head)
        if self.manifest.params.token_kind != kind:
            raise IndexMismatchError(
                f"index {self.layout.root} holds {self.manifest.params.token_kind} context tokens, not this "
                f"head's ({kind}); run `groundzero reindex --index {self.layout.root} --head {head}` first")
        model, meta = load_model(head, self.backbone.device)
        return model, meta

    def _video(self, seq: int) -> tuple[tables.FrameReader, np.ndarray]:
        """(frame reader, proposal frame ranges (P, 2)) of a video, kept in an LRU cache."""
        if seq in self._cache:
            self._cache.move_to_end(seq)
            return self._cache[seq]
        row = self.videos[seq]
        reader = tables.FrameReader(self.layout.path(row["frames_file"]))
        props = tables.read_proposals(self.layout.path(row["proposals_file"]), tokens=False)
        ranges = np.stack([props["frame_start"], props["frame_end"]], axis=1).astype(np.int64)
        self._cache[seq] = (reader, ranges)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return self._cache[seq]

    def proposal_ranges(self, seq: int) -> np.ndarray:
        """int64 (P, 2): the ``[start, end)`` frame range of each of a video's proposals."""
        return self._video(seq)[1]

    def video_data(self, seq: int, frame_ranges: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(timestamps (T,), frame embeddings (T, D), proposal frame ranges (P, 2)) of a video.

        ``frame_ranges`` (R, 2) ``[start, end)``: only the Parquet row groups covering them are
        read, and the embedding rows outside them may be zeros; default: every frame.
        """
        reader, ranges = self._video(seq)
        return reader.timestamps, reader.frames(frame_ranges), ranges

    def frame_groups_read(self) -> tuple[int, int]:
        """(frame row groups read, row groups in all) over the videos in the cache: the I/O search did."""
        readers = [r for r, _ in self._cache.values()]
        return sum(r.groups_read for r in readers), sum(r.n_groups for r in readers)

    def search(self, query: str, top_k: int | None = None) -> SearchResult:
        query = (query or "").strip()
        if not query:
            raise EmptyQueryError("the query is empty; describe the moment in a sentence, "
                                  "e.g. \"the lecturer writes the chain rule on the board\"")
        if len(query) > MAX_QUERY_CHARS:
            raise EmptyQueryError(f"the query is {len(query)} characters long; keep it under "
                                  f"{MAX_QUERY_CHARS} (the text tower reads {self.backbone.text_max_len} tokens)")
        top_k = top_k or self.cfg.top_k
        timings: dict[str, float] = {}
        t = time.perf_counter()
        q = self.backbone.embed_texts([query])[0]  # (D,)
        timings["text"], t = _ms(t), time.perf_counter()
        sl = shortlist(self.vectors, q, self.cfg.shortlist_tokens, self.cfg.shortlist_proposals)
        by_video: dict[int, list[int]] = defaultdict(list)
        for s, p in zip(sl.video_seq.tolist(), sl.proposal_idx.tolist()):
            by_video[s].append(p)
        windows = {s: self.proposal_ranges(s)[sorted(props)] for s, props in by_video.items() if s in self.videos}
        timings["shortlist"], t = _ms(t), time.perf_counter()
        candidates = [h for g in self.ground(query, windows, q) for h in g.hits]
        timings["ground"], t = _ms(t), time.perf_counter()
        hits = merge_hits(candidates, top_k, self.cfg.nms_iou)
        timings["merge"] = _ms(t)
        found_prob = max((h.found_prob for h in candidates), default=0.0)
        return SearchResult(query=query, hits=hits, found=found_prob >= self.found_threshold, timings_ms=timings,
                            found_prob=found_prob, found_threshold=self.found_threshold)

    def ground(self, query: str, windows: dict[int, np.ndarray], q: np.ndarray | None = None
               ) -> list[VideoGrounding]:
        """Ground ``query`` inside the given proposal windows of each video.

        The one grounding path: :meth:`search` passes the shortlisted windows, evaluation
        every window of the query's own video.

        Args:
            windows: video_seq -> int64 (P, 2) frame ranges ``[start, end)`` (videos not in the
                snapshot's catalog are skipped); only these frames are read.
            q: float32 (D,) the query's sentence embedding, when already computed.
        Returns: one :class:`VideoGrounding` per video, hits best first.
        """
        q = self.backbone.embed_texts([query])[0] if q is None else q
        windows = {s: np.asarray(w, np.int64).reshape(-1, 2) for s, w in windows.items() if s in self.videos}
        if self.head is None:
            return [self._ground_zero_shot(q, s, w) for s, w in windows.items()]
        return self._ground_with_head(query, q, windows)

    def _ground_with_head(self, query: str, q: np.ndarray, windows: dict[int, np.ndarray]) -> list[VideoGrounding]:
        from groundzero.search.rerank import rerank_and_ground

        states, masks = self.backbone.encode_text_tokens([query])
        words = states[0][masks[0]]
        videos = [(self.videos[s], self.video_data(s, w)[1], w) for s, w in windows.items()]
        grounded = rerank_and_ground(self.head, words, np.ones(len(words), bool), self.manifest.params.fps,
                                     videos, top_windows=self.cfg.rerank_windows, nms_iou=self.cfg.nms_iou,
                                     window_score=self.cfg.window_score)
        out = []
        for seq, (_, emb, _), (hits, g) in zip(windows, videos, grounded):
            if self.rescorer is not None and hits:
                spans = np.array([[h.start_sec, h.end_sec] for h in hits])
                scores, presence = self.rescorer.rescore(q, emb, spans, np.array([h.score for h in hits]),
                                                         self.manifest.params.fps)
                hits = [replace(h, score=float(v), found_prob=float(h.found_prob * m))
                        for h, v, m in zip(hits, scores, presence)]
                hits.sort(key=lambda h: -h.score)  # stable: ties keep the head's order
            out.append(VideoGrounding(seq, hits, g.window_rank))
        return out

    def _ground_zero_shot(self, q: np.ndarray, seq: int, windows: np.ndarray) -> VideoGrounding:
        """The similarity-curve grounder over the union of the windows (``search.ground_zeroshot``)."""
        fps, row = self.manifest.params.fps, self.videos[seq]
        regions = merge_ranges(windows)
        ts, emb, _ = self.video_data(seq, np.array(regions, np.int64).reshape(-1, 2))  # only these frames
        hits: list[Hit] = []
        for a, b in regions:
            for c in ground_region(emb[a:b], q, a, self.cfg.smooth_frames, self.cfg.spans_per_region):
                end = float(ts[c.last_frame] + 1.0 / fps)
                if row["duration_sec"] > ts[c.first_frame]:
                    end = min(end, float(row["duration_sec"]))
                hits.append(Hit(
                    video_id=row["video_id"], uri=row["uri"], rel_path=row["rel_path"],
                    start_sec=float(ts[c.first_frame]), end_sec=end, score=c.mean_cos,
                    found_prob=float(self.backbone.match_probability(c.peak_cos)),
                ))
        hits.sort(key=lambda h: -h.score)
        return VideoGrounding(seq, hits, np.zeros(0, np.int64))


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 2)
