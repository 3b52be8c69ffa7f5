"""The searcher: load an index once, answer many queries.

``Searcher(index_dir).search("the witness is handed exhibit 12")`` asks each channel:

  speech, text: full-text search of the transcript / on-screen text segments (``search.text_channel``)
  frames:
    text tower -> FAISS shortlist over context tokens (whole corpus)
               -> ground inside the shortlisted proposals (:meth:`Searcher.ground`):
                  zero-shot (``search.ground_zeroshot``), or with a head: re-rank and ground
                  (``search.rerank``), then the head's re-scorer if its config declares one
                  (:mod:`groundzero.plugins`)
               -> merge (NMS, top-k)
  -> fusion of the channels that answered (``search.fusion``) -> :class:`SearchResult`

:meth:`Searcher.ground` is the one grounding path: evaluation (``search.evaluate``) calls it
too, with every window of the query's own video.

It only ever reads a committed snapshot (the manifest is read once at load),
so an index run going on meanwhile is invisible to it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import unicodedata
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

import numpy as np

from groundzero.errors import EmptyQueryError, IndexMismatchError, ModelNotFoundError
from groundzero.model.backbone import Backbone
from groundzero.model.identity import read_identity
from groundzero.plugins import Rescorer, load_rescorer
from groundzero.search.config import SearchConfig
from groundzero.search.fusion import fuse, with_frames_evidence
from groundzero.search.ground_zeroshot import ground_region, merge_ranges
from groundzero.search.memory import return_large_frees
from groundzero.search.merge import merge_hits
from groundzero.search.results import Hit, SearchResult, VideoGrounding, clamp_span
from groundzero.search.shortlist import shortlist
from groundzero.search.text_channel import text_channel_hits
from groundzero.store import tables
from groundzero.store.catalog import read_catalog
from groundzero.store.manifest import check_model, require_manifest
from groundzero.store.s3_index import resolve_index_dir
from groundzero.store.text import TextIndex, text_path
from groundzero.store.vectors import ContextIndex

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 1000
#: format characters kept inside a query: they join (ZWJ) or keep apart (ZWNJ) letters in Persian and
#: Indic scripts and in emoji sequences; every other Cf character is invisible noise and is dropped
_KEPT_FORMAT = frozenset("\u200c\u200d")
_SURROGATE = re.compile("[\ud800-\udfff]")
_EXAMPLE = "e.g. \"the lecturer writes the chain rule on the board\""


class InvalidQueryTextError(EmptyQueryError):
    """The query is not valid Unicode text (a lone surrogate, or bytes that are not UTF-8).

    An :class:`EmptyQueryError`, so every refused query is caught alike.
    """


def normalize_query(text: object, max_chars: int = MAX_QUERY_CHARS) -> str:
    r"""The query as it is searched, or a one-line :class:`EmptyQueryError` saying why none can be.

    The one text policy of every query path (``Searcher.search``, hence the CLI and the service):

    * ``bytes`` must be UTF-8; a ``str`` may not hold lone UTF-16 surrogates (a surrogate *pair*
      is joined into its character). Text that is not valid is **refused**, never guessed at:
      :class:`InvalidQueryTextError` names the position (0-based) and the byte or code unit, e.g.
      the undecodable byte a terminal in Latin-1 passes as ``\udce9`` (Python's surrogateescape).
    * Control characters (Cc: NUL, escapes, C1) become spaces; format characters (Cf: zero-width
      space, BOM, soft hyphen, bidi marks...) are dropped, except the zero-width (non-)joiner;
      whitespace runs become one space, and the ends are trimmed.
    * What is left must hold a visible character (not only whitespace and Cf) and at most
      ``max_chars`` characters.

    >>> normalize_query("  the\u200b  red\x00car\n"), normalize_query("\ud83d\ude00 grin")
    ('the red car', '\U0001f600 grin')
    """
    if text is None:
        text = ""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidQueryTextError(_not_text(e.start, f"the undecodable byte 0x{text[e.start]:02X}")) from None
    if not isinstance(text, str):
        raise InvalidQueryTextError(f"the query must be text, got {type(text).__name__}")
    if len(text) > 10 * max_chars:  # refused before any per-character work, however much of it is blank
        _too_long(len(text), max_chars)
    if _SURROGATE.search(text):
        text = _join_surrogate_pairs(text)
    text = " ".join("".join(_clean_char(c) for c in text).split())
    if all(unicodedata.category(c) == "Cf" for c in text):
        raise EmptyQueryError(f"the query is empty; describe the moment in a sentence, {_EXAMPLE}")
    if len(text) > max_chars:
        _too_long(len(text), max_chars)
    return text


def _too_long(n: int, max_chars: int) -> NoReturn:
    raise EmptyQueryError(f"the query is {n} characters long; keep it under {max_chars} "
                          "(the text tower reads only its first few dozen tokens)")


def _clean_char(c: str) -> str:
    """A control character as a space, a dropped format character as '', any other as itself."""
    cat = unicodedata.category(c)
    if cat == "Cc":
        return " "
    if cat == "Cf" and c not in _KEPT_FORMAT:
        return ""
    return c


def _join_surrogate_pairs(text: str) -> str:
    """``text`` with each high+low surrogate pair joined into its character; a lone one is refused."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if "\ud800" <= c <= "\udbff" and i + 1 < n and "\udc00" <= text[i + 1] <= "\udfff":
            out.append(chr(0x10000 + ((ord(c) - 0xD800) << 10) + (ord(text[i + 1]) - 0xDC00)))
            i += 2
            continue
        if "\ud800" <= c <= "\udfff":
            code = ord(c)
            what = f"the undecodable byte 0x{code - 0xDC00:02X}" if 0xDC80 <= code <= 0xDCFF \
                else f"a lone UTF-16 surrogate U+{code:04X}"
            raise InvalidQueryTextError(_not_text(i, what))
        out.append(c)
        i += 1
    return "".join(out)


def _not_text(pos: int, what: str) -> str:
    return (f"the query is not valid text: at position {pos} it holds {what}; pass the query as UTF-8 text "
            "(on a terminal, set a UTF-8 locale, e.g. LANG=C.UTF-8)")


class Searcher:
    """Args:
        index_dir: a directory written by ``groundzero index``, or ``s3://bucket/prefix`` (pulled into
            the local cache; endpoint from ``AWS_ENDPOINT_URL``).
        model: checkpoint to embed queries with; default: the one that built the index.
            Any other model is refused (its embeddings live in another space).
        device: "auto" | "cpu" | "cuda[:n]".
        cfg: search parameters.
        cache_videos: how many videos' frame embeddings to keep in memory between queries.
        cache_mb: and at most about this many MB of them (the least recently used videos go first).
        head: a trained grounding head (``groundzero train``); the index must hold that head's
            context tokens (``groundzero reindex --head``). Default: the head the index's
            tokens were made with (recorded in its manifest), else zero-shot grounding.
        backbone: an already loaded :class:`Backbone` of ``model`` to reuse (a server opening a
            newer snapshot of the same index keeps its model in memory); default: load ``model``.
        numpy_text: a one-shot search (the CLI's ``search``): on a CPU the query's text tower runs in
            NumPy, so neither torch nor transformers' model code is imported unless a head or
            ``refine`` needs them (:class:`Backbone`'s ``numpy_text``).
        fetch_threads: threads one search opens and reads its shortlisted videos with (Parquet I/O
            and decoding release the GIL); default: up to 4, one per CPU. 1: on the searching
            thread itself, as a service running one search per core wants (``groundzero serve``
            gives each search its share of the CPUs).
    """

    def __init__(self, index_dir: str | Path, model: str | None = None, device: str = "auto",
                 cfg: SearchConfig | None = None, cache_videos: int = 64, head: str | None = None,
                 backbone: Backbone | None = None, *, numpy_text: bool = False, cache_mb: float = 256,
                 fetch_threads: int | None = None):
        self.cfg = (cfg or SearchConfig()).validate()
        return_large_frees()  # frame arrays come and go with the cache: give their memory back (search.memory)
        # an s3:// index is pulled into a local cache first (groundzero.store.s3_index)
        self.layout, self.manifest = require_manifest(resolve_index_dir(index_dir))
        model = model or self.manifest.model.name
        _, identity = read_identity(model)
        check_model(self.manifest, identity, self.layout.root)
        if backbone is not None and backbone.identity.fingerprint != identity.fingerprint:
            raise IndexMismatchError(f"the loaded backbone ({backbone.identity.name!r}) is not the model "
                                     f"{model!r} this index needs; load that model")
        self.backbone = backbone if backbone is not None else Backbone(model, device=device, numpy_text=numpy_text)
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
        self._cache: OrderedDict[int, _CachedVideo] = OrderedDict()
        self._cache_size, self._cache_bytes = cache_videos, int(cache_mb * 2**20)
        self._cache_lock, self._refiner_lock = threading.Lock(), threading.Lock()
        #: opens the shortlisted videos and reads their row groups side by side; threads start on first use
        n = min(4, os.cpu_count() or 1) if fetch_threads is None else fetch_threads
        self._fetch_pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="gz-fetch") if n > 1 else None
        self._refiner = None  # built on first use (search.refine)
        #: the snapshot's full-text index of what is said and shown (None: no video has text); kept
        #: open, so it stays readable after a later commit's garbage collection deletes the file
        path = text_path(self.layout, self.manifest)
        self.text_index = TextIndex(path) if path is not None else None

    def _load_head(self, head: str, identity):
        from groundzero.indexer.tokens import head_token_kind
        from groundzero.model.checkpoint import load_model, read_config

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

    def _video(self, seq: int) -> _CachedVideo:
        """A video's entry in the LRU cache of ``cache_videos`` videos and ``cache_mb`` of frames: its
        frame reader and proposal frame ranges, opened on first use.

        Thread-safe: the cache's lock is held only for the dictionary operations; the files are opened
        under the entry's own lock, so threads asking for one video open it once, and a video being
        opened holds up no other.
        """
        row = self.videos[seq]
        with self._cache_lock:
            entry = self._cache.get(seq)
            if entry is None:
                entry = self._cache[seq] = _CachedVideo()
                held = sum(e.reader.nbytes for e in self._cache.values() if e.reader is not None)
                while len(self._cache) > 1 and (len(self._cache) > self._cache_size or held > self._cache_bytes):
                    _, old = self._cache.popitem(last=False)  # a thread still using it keeps its reference
                    held -= old.reader.nbytes if old.reader is not None else 0
            else:
                self._cache.move_to_end(seq)
        if entry.reader is None:
            with entry.lock:
                if entry.reader is None:  # a file that fails to open leaves it None: the next query tries again
                    reader = tables.FrameReader(self.layout.path(row["frames_file"]))
                    entry.ranges = tables.read_proposal_ranges(self.layout.path(row["proposals_file"]))
                    entry.reader = reader  # last: a thread that sees the reader sees the ranges
        return entry

    def fetch(self, proposals: dict[int, list[int]]) -> dict[int, np.ndarray]:
        """video_seq -> int64 (P, 2) the frame ranges of the given proposals of each video, with the
        frame row groups they cover read into the cache; the videos are opened and read side by side.
        Videos not in the snapshot's catalog are left out."""
        def one(item: tuple[int, list[int]]) -> tuple[int, np.ndarray]:
            seq, props = item
            w = self.proposal_ranges(seq)[sorted(props)]
            self.video_data(seq, np.array(merge_ranges(w), np.int64).reshape(-1, 2))
            return seq, w

        items = [(s, p) for s, p in proposals.items() if s in self.videos]
        return dict(self._fetch_pool.map(one, items) if self._fetch_pool is not None and len(items) > 1
                    else map(one, items))

    def proposal_ranges(self, seq: int) -> np.ndarray:
        """int64 (P, 2): the ``[start, end)`` frame range of each of a video's proposals."""
        return self._video(seq).ranges

    def video_data(self, seq: int, frame_ranges: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(timestamps (T,), frame embeddings (T, D), proposal frame ranges (P, 2)) of a video.

        ``frame_ranges`` (R, 2) ``[start, end)``: only the Parquet row groups covering them are
        read, and the embedding rows outside them may be zeros (their timestamps NaN); default:
        every frame. The array is the cached reader's own: later calls (from any thread) may fill
        more of its rows, never change a filled one.
        """
        entry = self._video(seq)
        with entry.lock:  # a FrameReader is not thread-safe: frames() reads into one array, marks groups read
            emb = entry.reader.frames(frame_ranges)
        return entry.reader.timestamps, emb, entry.ranges

    def frame_groups_read(self) -> tuple[int, int]:
        """(frame row groups read, row groups in all) over the videos in the cache: the I/O search did."""
        with self._cache_lock:
            readers = [e.reader for e in self._cache.values() if e.reader is not None]
        return sum(r.groups_read for r in readers), sum(r.n_groups for r in readers)

    def search(self, query: str, top_k: int | None = None, channels: Sequence[str] | None = None
               ) -> SearchResult:
        """The ``top_k`` best moments for ``query`` across the index.

        ``query`` goes through :func:`normalize_query` first (refused with an
        :class:`EmptyQueryError` when empty, too long, or not valid text). ``channels``: which of
        frames, speech, text to search (default ``cfg.channels``); when several answer, their
        hits are fused (:mod:`groundzero.search.fusion`).

        Safe to call from several threads at once (``groundzero serve`` does): the frame cache
        locks itself (:meth:`_video`), the text index takes turns, the refiner is built once. Call
        the backbone's tokenizer once before threads share it (a fast tokenizer sets its padding on
        its first call, and raises "Already borrowed" if another thread encodes meanwhile;
        ``IndexState`` does so). A re-scorer plugin's ``rescore`` is called from those threads too.
        """
        query = normalize_query(query)
        top_k = top_k or self.cfg.top_k
        channels = tuple(channels) if channels is not None else self.cfg.channels
        if channels != self.cfg.channels:
            replace(self.cfg, channels=channels).validate()
        timings: dict[str, float] = {}
        ranked: dict[str, list[Hit]] = {}
        found: dict[str, bool] = {}
        found_prob = 0.0
        for channel in ("speech", "text"):
            if channel in channels and self.text_index is not None:
                t = time.perf_counter()
                ranked[channel], found[channel] = self._text_channel(query, channel, top_k)
                timings[f"{channel}_channel"] = _ms(t)
            elif channel in channels:
                found[channel] = False  # the index holds nothing said / shown
        if "frames" in channels:
            hits, found_prob = self._frames_channel(query, max(top_k, self.cfg.fusion_depth)
                                                    if any(ranked.values()) else top_k, timings)
            ranked["frames"], found["frames"] = hits, found_prob >= self.found_threshold
        answering = {c: h for c, h in ranked.items() if h}
        t = time.perf_counter()
        if len(answering) > 1:
            text_sure = self.cfg.text_found_coverage
            hits = fuse(answering, top_k, sure={"frames": self.found_threshold, "speech": text_sure, "text": text_sure},
                        unsure_weight=self.cfg.fusion_unsure_weight)
            timings["fuse"] = _ms(t)
        else:
            hits = next(iter(answering.values()), [])[:top_k]
        return SearchResult(query=query, hits=hits, found=any(found.values()), timings_ms=timings,
                            found_prob=found_prob, found_threshold=self.found_threshold, channels_found=found)

    def _frames_channel(self, query: str, top_k: int, timings: dict[str, float]) -> tuple[list[Hit], float]:
        """The frames channel: shortlist, ground, merge (and refine). Returns the hits and the best
        candidate's found-probability; adds each stage's milliseconds to ``timings``."""
        t = time.perf_counter()
        words = None
        if self.head is not None:  # the sentence and its words from one pass of the text tower
            q_all, states, masks = self.backbone.encode_query([query])
            q, words = q_all[0], states[0][masks[0]]  # (D,), (L', Dt)
        else:
            q = self.backbone.embed_texts([query])[0]  # (D,)
        timings["text"], t = _ms(t), time.perf_counter()
        sl = shortlist(self.vectors, q, self.cfg.shortlist_tokens, self.cfg.shortlist_proposals,
                       self.cfg.rescore_pool)
        by_video: dict[int, list[int]] = defaultdict(list)
        for s, p in zip(sl.video_seq.tolist(), sl.proposal_idx.tolist()):
            by_video[s].append(p)
        timings["shortlist"], t = _ms(t), time.perf_counter()
        windows = self.fetch(by_video)
        timings["fetch"], t = _ms(t), time.perf_counter()
        candidates = [h for g in self.ground(query, windows, q, words) for h in g.hits]
        timings["ground"], t = _ms(t), time.perf_counter()
        hits = merge_hits(candidates, top_k, self.cfg.nms_iou)
        timings["merge"], t = _ms(t), time.perf_counter()
        if self.cfg.refine:
            hits = self.refine(hits, q)
            timings["refine"] = _ms(t)
        found_prob = max((h.found_prob for h in candidates), default=0.0)
        return with_frames_evidence(hits), found_prob

    def _text_channel(self, query: str, channel: str, top_k: int) -> tuple[list[Hit], bool]:
        """The speech or on-screen text channel (the index has text): matching segments as hits,
        best first, and whether one holds ``cfg.text_found_coverage`` of the query's words."""
        hits = text_channel_hits(self.text_index, query, channel, self.videos, limit=max(top_k, self.cfg.fusion_depth))
        return hits, any(h.found_prob >= self.cfg.text_found_coverage for h in hits)

    def refine(self, hits: list[Hit], q: np.ndarray) -> list[Hit]:
        """The first ``cfg.refine_hits`` hits with their edges re-grounded from the videos at
        ``cfg.refine_fps`` (:mod:`groundzero.search.refine`); the rest as they are.

        Args: hits best first; q float32 (D,) the query's sentence embedding.
        """
        if self._refiner is None:
            with self._refiner_lock:  # built once, whichever thread comes first
                if self._refiner is None:
                    from groundzero.indexer.decode import DecodeConfig
                    from groundzero.search.refine import Refiner

                    self._videos_at = {r["video_id"]: (float(r["duration_sec"]), (int(r["height"]), int(r["width"])))
                                       for r in self.videos.values()}
                    decode = DecodeConfig.for_model(self.backbone.model_dir, self.backbone.identity,
                                                    self.cfg.refine_fps, self.manifest.params.max_patches)
                    self._refiner = Refiner(self.backbone, decode, pad_sec=self.cfg.refine_pad_sec,
                                            smooth_frames=self.cfg.smooth_frames)
        n = self.cfg.refine_hits
        return [self._refiner.refine(h, q, *self._videos_at.get(h.video_id, (0.0, None))) for h in hits[:n]] \
            + list(hits[n:])

    def ground(self, query: str, windows: dict[int, np.ndarray], q: np.ndarray | None = None,
               words: np.ndarray | None = None) -> list[VideoGrounding]:
        """Ground ``query`` inside the given proposal windows of each video.

        The one grounding path: :meth:`search` passes the shortlisted windows, evaluation
        every window of the query's own video.

        Args:
            windows: video_seq -> int64 (P, 2) frame ranges ``[start, end)`` (videos not in the
                snapshot's catalog are skipped); only these frames are read.
            q: float32 (D,) the query's sentence embedding, when already computed.
            words: float32 (L', Dt) the query's word states (a head's input; its real tokens only),
                when already computed (:meth:`Backbone.encode_query` gives both in one pass).
        Returns: one :class:`VideoGrounding` per video, hits best first.
        """
        query = normalize_query(query)
        windows = {s: np.asarray(w, np.int64).reshape(-1, 2) for s, w in windows.items() if s in self.videos}
        if self.head is None:
            q = self.backbone.embed_texts([query])[0] if q is None else q
            return [self._ground_zero_shot(q, s, w) for s, w in windows.items()]
        if q is None or words is None:
            q_all, states, masks = self.backbone.encode_query([query])
            q, words = (q_all[0] if q is None else q), (states[0][masks[0]] if words is None else words)
        return self._ground_with_head(q, words, windows)

    def _ground_with_head(self, q: np.ndarray, words: np.ndarray, windows: dict[int, np.ndarray]
                          ) -> list[VideoGrounding]:
        from groundzero.search.rerank import rerank_and_ground

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
                start, end = clamp_span(float(ts[c.first_frame]), float(ts[c.last_frame] + 1.0 / fps),
                                        row["duration_sec"], 1.0 / fps)
                hits.append(Hit(
                    video_id=row["video_id"], uri=row["uri"], rel_path=row["rel_path"],
                    start_sec=start, end_sec=end, score=c.mean_cos,
                    found_prob=float(self.backbone.match_probability(c.peak_cos)),
                ))
        hits.sort(key=lambda h: -h.score)
        return VideoGrounding(seq, hits, np.zeros(0, np.int64))


class _CachedVideo:
    """A video in :class:`Searcher`'s frame cache: its reader and proposal frame ranges (None until
    opened), and the lock held while they are opened and while row groups are read through the reader."""

    __slots__ = ("lock", "ranges", "reader")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reader: tables.FrameReader | None = None
        self.ranges: np.ndarray | None = None


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 2)
