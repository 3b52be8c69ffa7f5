"""The searcher: load an index once, answer many queries.

``Searcher(index_dir).search("the witness is handed exhibit 12")`` runs

    text tower -> FAISS shortlist over context tokens (whole corpus)
               -> zero-shot grounding inside the shortlisted proposals, or with a head:
                  re-rank and ground (``search.rerank``), then the clip check (``search.verify``)
               -> merge (NMS, top-k) -> :class:`SearchResult`

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

from core.errors import ConfigError, EmptyQueryError, IndexMismatchError, ModelNotFoundError
from core.model.backbone import CLIP_ADAPTER_FILE, Backbone, read_identity
from core.store import tables
from core.store.catalog import read_catalog
from core.store.manifest import check_model, require_manifest
from core.store.s3_index import resolve_index_dir
from core.store.vectors import ContextIndex
from search.config import SearchConfig
from search.ground_zeroshot import ground_region, merge_ranges
from search.merge import merge_hits
from search.results import Hit, SearchResult
from search.shortlist import shortlist
from search.verify import clip_match, span_frames, verified_scores

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
        # an s3:// index is pulled into a local cache first (core.store.s3_index)
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
        self.verify_weight = self.cfg.verify_weight
        if self.verify_weight is None:  # the head's, chosen on its val split; none without a clip term
            self.verify_weight = float(head_meta.get("verify_weight", 0.0)) if self.head is not None else 0.0
        if self.verify_weight > 0 and (self.head is None or self.backbone.clip_adapter is None):
            raise ConfigError(f"verify_weight={self.verify_weight} needs a grounding head and a backbone trained on "
                              f"clips (with {CLIP_ADAPTER_FILE}); {self.backbone.identity.name!r} with head "
                              f"{self.head_dir!r} has {'no clip term' if self.head is not None else 'no head'}: "
                              "set it to 0")
        self._cache: OrderedDict[int, tuple[tables.FrameReader, np.ndarray]] = OrderedDict()
        self._cache_size = cache_videos

    def _load_head(self, head: str, identity):
        from core.model.checkpoint import load_model, read_config
        from indexer.tokens import head_token_kind

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
        timings["shortlist"], t = _ms(t), time.perf_counter()
        if self.head is None:
            candidates = self._ground(q, sl.video_seq, sl.proposal_idx)
        else:
            candidates = self._rerank(query, q, sl.video_seq, sl.proposal_idx)
        timings["ground"], t = _ms(t), time.perf_counter()
        hits = merge_hits(candidates, top_k, self.cfg.nms_iou)
        timings["merge"] = _ms(t)
        found_prob = max((h.found_prob for h in candidates), default=0.0)
        return SearchResult(query=query, hits=hits, found=found_prob >= self.found_threshold, timings_ms=timings,
                            found_prob=found_prob, found_threshold=self.found_threshold)

    def verify(self, q: np.ndarray, frames: np.ndarray, spans_sec: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Candidate scores (S,) after the clip check of ``search.verify`` (as given when verify_weight is 0).

        Args:
            q: float32 (D,) the query's sentence embedding; frames: float32 (T, D) the video's frame
            embeddings (rows outside the spans unused); spans_sec: (S, 2) seconds; scores: (S,).
        """
        return self._checked(q, frames, spans_sec, scores)[0]

    def _checked(self, q: np.ndarray, frames: np.ndarray, spans_sec: np.ndarray, scores: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """(checked scores (S,), clip match probabilities p (S,); all ones when verify_weight is 0)."""
        if self.verify_weight == 0 or len(scores) == 0:
            return np.asarray(scores, np.float64), np.ones(len(scores))
        ranges = span_frames(spans_sec, self.manifest.params.fps, len(frames))
        match = clip_match(self.backbone, q, frames, ranges)
        return verified_scores(scores, match, self.verify_weight), match

    def _rerank(self, query: str, q: np.ndarray, video_seq: np.ndarray, proposal_idx: np.ndarray) -> list[Hit]:
        from search.rerank import rerank_and_ground

        states, masks = self.backbone.encode_text_tokens([query], self.head.cfg.text_layers)
        words = states[0][masks[0]]
        by_video: dict[int, list[int]] = defaultdict(list)
        for s, p in zip(video_seq.tolist(), proposal_idx.tolist()):
            if s in self.videos:
                by_video[s].append(p)
        videos = []
        for seq, props in by_video.items():
            windows = self.proposal_ranges(seq)[sorted(props)]
            _, emb, _ = self.video_data(seq, windows)  # only the shortlisted windows' frames are read
            videos.append((self.videos[seq], emb, windows))
        hits = rerank_and_ground(self.head, words, np.ones(len(words), bool), self.manifest.params.fps, videos,
                                 top_windows=self.cfg.rerank_windows, nms_iou=self.cfg.nms_iou,
                                 window_score=self.cfg.window_score)
        if self.verify_weight == 0:
            return hits
        frames = {row["video_id"]: emb for row, emb, _ in videos}
        out: list[Hit] = []
        for vid in dict.fromkeys(h.video_id for h in hits):
            mine = [h for h in hits if h.video_id == vid]
            new, match = self._checked(q, frames[vid], np.array([[h.start_sec, h.end_sec] for h in mine]),
                                       np.array([h.score for h in mine]))
            # "is it there at all": the head's confidence and the clip's match, both probabilities
            out.extend(replace(h, score=float(v), found_prob=float(h.found_prob * m))
                       for h, v, m in zip(mine, new, match))
        return out

    def _ground(self, q: np.ndarray, video_seq: np.ndarray, proposal_idx: np.ndarray) -> list[Hit]:
        by_video: dict[int, list[int]] = defaultdict(list)
        for s, p in zip(video_seq.tolist(), proposal_idx.tolist()):
            by_video[s].append(p)
        fps = self.manifest.params.fps
        hits: list[Hit] = []
        for seq, props in by_video.items():
            if seq not in self.videos:
                continue
            row = self.videos[seq]
            regions = merge_ranges(self.proposal_ranges(seq)[props])
            ts, emb, _ = self.video_data(seq, np.array(regions, np.int64))  # only these regions' frames
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
        return hits


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 2)
