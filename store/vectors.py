"""FAISS index over the context tokens of every proposal in a snapshot, and how it grows.

Each vector's FAISS id encodes where it came from, so no side table is needed
and a whole video can be removed with one range::

    id = video_seq << 24 | proposal_idx << 6 | token_idx

(``token_idx < 64``, ``proposal_idx < 2**18`` — 72 days of video at a 24 s
stride — and ``video_seq < 2**39``). Vectors are L2-normalised and searched by
inner product, i.e. cosine similarity.

Two on-disk structures, both read by :meth:`ContextIndex.load`:

* ``Flat`` — exact search: an ``IndexIDMap2`` around ``IndexFlatIP`` (the format
  every index had before growth existed, so old indexes load unchanged);
* ``IVF{nlist},Flat`` / ``IVF{nlist},PQ{m}`` — a bare ``IndexIVF`` holding the ids
  itself (``IndexIDMap`` cannot wrap an IVF: its removal assumes the inner ids
  are renumbered, which IVF's are not). ``nprobe`` is saved in the file.

Growth (:class:`GrowthPolicy`, factory spec ``"auto"``): exact ``Flat`` while the
corpus is small; once it passes ``flat_max_tokens`` an IVF is trained on a
sample and every vector added; nightly additions are then *added* to the
trained IVF (assigned to the existing centroids, no retraining) and removals
delete from its lists; when the corpus has grown (or shrunk) by
``retrain_growth`` since the last training the IVF is trained again from
scratch ("compaction"), with ``nlist`` ~ ``lists_per_sqrt * sqrt(N)``. Above
``pq_min_tokens`` (by default: from the first IVF) a training uses product-quantised codes, and
the file then also holds an int8 copy of every vector that re-scores a larger PQ pool exactly
(:mod:`groundzero.store.rescore`). The
writer (:mod:`groundzero.store.writer`) applies the policy at each commit and
records the result as :class:`VectorState` in the manifest.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import faiss
import numpy as np

from groundzero.errors import ConfigError
from groundzero.store.layout import damaged, read_error
from groundzero.store.manifest import write_hashed
from groundzero.store.rescore import RescoreCodes

_TOK_BITS, _PROP_BITS = 6, 18
_VIDEO_SHIFT = _TOK_BITS + _PROP_BITS

#: k-means wants at least this many training points per list (FAISS warns below it)
MIN_TRAIN_PER_LIST = 39
#: a PQ search fetches this many times the tokens asked for and re-scores them with the int8 codes
RESCORE_POOL = 4


def encode_ids(video_seq: int, n_proposals: int, k: int) -> np.ndarray:
    """int64 (P * k,) ids in (proposal, token) row-major order."""
    if n_proposals >= 1 << _PROP_BITS or k > 1 << _TOK_BITS:
        raise ConfigError(f"a video has {n_proposals} proposals x {k} tokens; the id space allows "
                          f"{1 << _PROP_BITS} x {1 << _TOK_BITS}: use a longer --stride")
    p = np.repeat(np.arange(n_proposals, dtype=np.int64), k)
    t = np.tile(np.arange(k, dtype=np.int64), n_proposals)
    return (np.int64(video_seq) << _VIDEO_SHIFT) | (p << _TOK_BITS) | t


def decode_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ids -> (video_seq, proposal_idx, token_idx), each int64 like ``ids``."""
    ids = np.asarray(ids, np.int64)
    return ids >> _VIDEO_SHIFT, (ids >> _TOK_BITS) & ((1 << _PROP_BITS) - 1), ids & ((1 << _TOK_BITS) - 1)


def _ivf_parts(factory: str) -> tuple[int, str] | None:
    """``"IVF1024,PQ96"`` -> (1024, "PQ96"); None for a non-IVF factory."""
    m = re.fullmatch(r"IVF(\d+),(.+)", factory.replace(" ", ""))
    return (int(m.group(1)), m.group(2)) if m else None


class ContextIndex:
    """The context-token index: ``IndexIDMap2(Flat)`` or a bare ``IndexIVF`` (see module docstring),
    and for PQ codes the int8 copies that re-score them (``codes``; None for exact structures)."""

    def __init__(self, index: faiss.Index, codes: RescoreCodes | None = None):
        self.index = index
        self.codes = codes

    @classmethod
    def create(cls, dim: int, factory: str = "Flat") -> ContextIndex:
        """An empty index; an IVF one must be :meth:`train`-ed before :meth:`add`."""
        try:
            inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise ConfigError(f"FAISS index factory string {factory!r} is invalid: {e}") from e
        if _ivf_parts(factory) is not None:
            if isinstance(inner, faiss.IndexIVFPQ):
                # Polysemous training (Hamming-filter codes, unused here) costs seconds even for a
                # tiny sample; the factory turns it on by default.
                inner.do_polysemous_training = False
                return cls(inner, RescoreCodes(dim))
            return cls(inner)
        return cls(faiss.IndexIDMap2(inner))

    @classmethod
    def load(cls, path: Path) -> ContextIndex:
        """Raises IndexDamagedError, naming the file, for one that is missing, truncated or not an
        index of ours."""
        path = Path(path)
        if not path.is_file():
            raise read_error(path, FileNotFoundError(str(path)))
        try:
            index = faiss.read_index(str(path))
        except (RuntimeError, MemoryError) as e:  # FAISS: "read error", "Index type ... not recognized"
            raise read_error(path, e) from e      # MemoryError: a damaged size field
        if not isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2, faiss.IndexIVF)):
            raise damaged(path, f"a FAISS {type(index).__name__}, not an index of context tokens with ids")
        try:
            codes = RescoreCodes.open(path)
        except (OSError, ValueError) as e:
            raise read_error(path, e) from e
        if codes is not None and (codes.dim != index.d or len(codes) != index.ntotal):
            raise damaged(path, f"its re-scoring codes hold {len(codes)} x {codes.dim}, the index {index.ntotal} x "
                                f"{index.d}")
        return cls(index, codes)

    def save(self, path: Path) -> None:
        """Written under a temporary name and renamed; hashed as written (for the manifest). The
        re-scoring codes follow FAISS's bytes, and are then read from ``path`` as a loaded index reads them."""
        path = Path(path)
        if self.codes is not None and len(self.codes) != self.ntotal:
            raise RuntimeError(f"re-scoring codes hold {len(self.codes)} vectors, the index {self.ntotal}")
        with write_hashed(path) as f:
            faiss.write_index(self.index, faiss.PyCallbackIOWriter(f.write))
            if self.codes is not None:
                self.codes.write(f)
        if self.codes is not None:
            self.codes = RescoreCodes.open(path)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def ivf(self) -> faiss.IndexIVF | None:
        try:
            return faiss.extract_index_ivf(self.index)
        except RuntimeError:
            return None

    @property
    def factory(self) -> str:
        """What the index is, as an index-factory string ("Flat", "IVF1024,Flat", "IVF4096,PQ96")."""
        ivf = self.ivf
        if ivf is None:
            inner = faiss.downcast_index(self.index.index) if hasattr(self.index, "index") else self.index
            return "Flat" if isinstance(inner, faiss.IndexFlat) else type(inner).__name__
        ivf = faiss.downcast_index(ivf)
        code = f"PQ{ivf.pq.M}" if isinstance(ivf, faiss.IndexIVFPQ) else "Flat"
        return f"IVF{ivf.nlist},{code}"

    @property
    def is_pq(self) -> bool:
        """Whether vectors are stored as PQ codes (approximate scores: re-scored when ``codes`` exist)."""
        ivf = self.ivf
        return ivf is not None and isinstance(faiss.downcast_index(ivf), faiss.IndexIVFPQ)

    @property
    def nprobe(self) -> int:
        ivf = self.ivf
        return int(ivf.nprobe) if ivf is not None else 0

    @nprobe.setter
    def nprobe(self, n: int) -> None:
        ivf = self.ivf
        if ivf is not None:
            ivf.nprobe = int(max(1, min(n, ivf.nlist)))

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def train(self, sample: np.ndarray) -> None:
        """sample float32 (S, D), S >= 39 * nlist for a well-trained IVF."""
        self.index.train(np.ascontiguousarray(sample, np.float32))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """ids int64 (N,), vectors float32 (N, D) L2-normalised."""
        x = np.ascontiguousarray(vectors, np.float32)
        if not self.index.is_trained:  # fixed IVF factories of old callers: train on what there is
            self.index.train(x)
        ids = np.ascontiguousarray(ids, np.int64)
        self.index.add_with_ids(x, ids)
        if self.codes is not None:
            self.codes.add(ids, x)

    def remove_video(self, video_seq: int) -> int:
        """Remove every vector of one video; returns how many were removed."""
        lo = int(video_seq) << _VIDEO_SHIFT
        hi = lo + (1 << _VIDEO_SHIFT)
        if self.codes is not None:
            self.codes.remove(lambda ids: (ids >= lo) & (ids < hi))
        return int(self.index.remove_ids(faiss.IDSelectorRange(lo, hi)))

    def remove_ids(self, ids: np.ndarray) -> int:
        """Remove these ids in one pass over the index (cheaper than one pass per video)."""
        ids = np.ascontiguousarray(ids, np.int64)
        if len(ids) == 0:
            return 0
        if self.codes is not None:
            gone = np.unique(ids)
            self.codes.remove(lambda held: np.isin(held, gone, assume_unique=False))
        return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))

    def ids(self) -> np.ndarray:
        """int64 (ntotal,) every id in the index (order unspecified)."""
        ivf = self.ivf
        if ivf is None:
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        inv = ivf.invlists
        out = [faiss.rev_swig_ptr(inv.get_ids(i), inv.list_size(i)).copy()
               for i in range(ivf.nlist) if inv.list_size(i)]
        return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)

    def stored_vectors(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(ids (N,), vectors (N, D)) exactly as stored, for Flat and IVF-Flat; None for PQ codes."""
        ivf = self.ivf
        if ivf is None:
            inner = faiss.downcast_index(self.index.index)
            if not isinstance(inner, faiss.IndexFlat):
                return None
            return self.ids(), inner.reconstruct_n(0, self.ntotal)
        ivf = faiss.downcast_index(ivf)
        if not isinstance(ivf, faiss.IndexIVFFlat):
            return None
        inv, d = ivf.invlists, self.dim
        ids, vecs = [self.ids()], []
        for i in range(ivf.nlist):
            n = inv.list_size(i)
            if n:
                codes = faiss.rev_swig_ptr(inv.get_codes(i), n * ivf.code_size)
                vecs.append(np.frombuffer(codes.tobytes(), np.float32).reshape(n, d))
        return ids[0], (np.concatenate(vecs) if vecs else np.zeros((0, d), np.float32))

    def search(self, queries: np.ndarray, k: int, pool: int = RESCORE_POOL) -> tuple[np.ndarray, np.ndarray]:
        """queries float32 (Q, D) -> (scores (Q, k), ids (Q, k)), best first; id -1 where fewer exist.

        With re-scoring codes, FAISS's best ``pool * k`` are re-scored from them and the best ``k``
        of those returned, with their re-scored cosines.
        """
        k = max(1, min(k, self.ntotal))
        q = np.ascontiguousarray(queries, np.float32)
        if self.codes is None or pool <= 1 or not len(self.codes):
            return self.index.search(q, k)
        pq_scores, pq_ids = self.index.search(q, max(1, min(k * pool, self.ntotal)))
        scores = np.full((len(q), k), -np.inf, np.float32)
        ids = np.full((len(q), k), -1, np.int64)
        for i in range(len(q)):
            ok = pq_ids[i] >= 0
            cand, s = pq_ids[i][ok], self.codes.scores(pq_ids[i][ok], q[i])
            s = np.where(np.isnan(s), pq_scores[i][ok], s)  # not in the codes (cannot happen in a whole file)
            best = np.argsort(-s, kind="stable")[:k]
            scores[i, :len(best)], ids[i, :len(best)] = s[best], cand[best]
        return scores, ids


# -- growth -----------------------------------------------------------------------


@dataclass(frozen=True)
class VectorState:
    """What the manifest records about the FAISS index (``manifest.extra["vectors"]``)."""

    factory: str = "Flat"  #: the structure, as an index-factory string
    trained_on: int = 0  #: vectors in the index when its IVF was last trained (0 for Flat)
    nprobe: int = 0  #: IVF lists searched per query (0 for Flat)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None, index: ContextIndex | None = None) -> VectorState:
        """From a manifest's record; for an index written before growth existed, from the index."""
        if d:
            return cls(str(d.get("factory", "Flat")), int(d.get("trained_on", 0)), int(d.get("nprobe", 0)))
        if index is None:
            return cls()
        return cls(index.factory, index.ntotal if index.ivf is not None else 0, index.nprobe)


@dataclass(frozen=True)
class GrowthPolicy:
    """When the index changes structure. Spec strings: ``"auto"`` or
    ``"auto:flat_max_tokens=5000,retrain_growth=2"`` (any field below, comma-separated)."""

    flat_max_tokens: int = 100_000  #: exact Flat up to this many vectors (~110 h of video at K=6)
    #: from this size a (re)training uses PQ codes instead of raw floats: at the default, every IVF does
    #: (raw 1152-d floats are 4.1 MB per video hour in the index and in RAM; 288-byte codes 0.26 MB)
    pq_min_tokens: int = 100_000
    retrain_growth: float = 4.0  #: retrain once the corpus is this many times (or 1/this) the trained size
    lists_per_sqrt: float = 4.0  #: nlist ~ lists_per_sqrt * sqrt(N), a power of two (FAISS wiki: 4-16)
    min_lists: int = 16
    max_lists: int = 65536
    nprobe: int = 0  #: lists searched per query; 0: nlist / 16, clamped to [16, 256]
    pq_bytes: int = 0  #: PQ code bytes per vector; 0: one byte per 4 dimensions (288 at 1152-d)
    train_per_list: int = 64  #: training sample = train_per_list * nlist vectors (at most all of them)
    seed: int = 0

    @classmethod
    def parse(cls, spec: str) -> GrowthPolicy | None:
        """The policy of an ``auto`` spec; None for a fixed FAISS factory string."""
        name, _, args = spec.partition(":")
        if name.strip() != "auto":
            return None
        kinds = {f.name: f.type for f in fields(cls)}
        kw: dict = {}
        for part in filter(None, (a.strip() for a in args.split(","))):
            key, _, val = part.partition("=")
            if key not in kinds:
                raise ConfigError(f"unknown growth setting {key!r} in {spec!r}; known: {', '.join(kinds)}")
            try:
                kw[key] = float(val) if kinds[key] in ("float", float) else int(float(val))
            except ValueError:
                raise ConfigError(f"growth setting {key} in {spec!r} needs a number, got {val!r}") from None
        p = cls(**kw)
        if p.flat_max_tokens < 0 or p.retrain_growth <= 1 or p.lists_per_sqrt <= 0 or p.min_lists < 1:
            raise ConfigError(f"growth policy {spec!r}: need flat_max_tokens >= 0, retrain_growth > 1, "
                              "lists_per_sqrt > 0, min_lists >= 1")
        return p

    def ivf_factory(self, n: int, dim: int) -> str:
        """The IVF structure to train for ``n`` vectors of dimension ``dim``."""
        want = self.lists_per_sqrt * math.sqrt(max(n, 1))
        nlist = 2 ** round(math.log2(max(want, 1)))
        nlist = max(self.min_lists, min(self.max_lists, nlist))
        while nlist > 1 and nlist * MIN_TRAIN_PER_LIST > n:  # too few points to train that many lists
            nlist //= 2
        return f"IVF{nlist},{self.code(n, dim)}"

    def code(self, n: int, dim: int) -> str:
        if n < self.pq_min_tokens:
            return "Flat"
        # 4-d sub-vectors (1152-d: 288 bytes): on structured 1152-d data 96-byte codes (12-d) kept 0.48 of
        # the exact shortlist and 288-byte ones 0.73 (docs/RESULTS.md, search at 1152-d)
        m = self.pq_bytes or (dim // 4 if dim % 4 == 0 and dim >= 16 else 0)
        if not m or dim % m:
            return "Flat"  # no PQ split of this dimension: keep raw vectors
        return f"PQ{m}"

    def nprobe_for(self, factory: str) -> int:
        parts = _ivf_parts(factory)
        if parts is None:
            return 0
        return min(parts[0], self.nprobe or max(16, min(256, parts[0] // 16)))

    def target(self, n: int, dim: int, state: VectorState) -> str | None:
        """The structure to rebuild as for ``n`` vectors, or None to keep adding to the current one."""
        ivf = _ivf_parts(state.factory) is not None
        if not ivf:
            return None if n <= self.flat_max_tokens else self.ivf_factory(n, dim)
        if n <= self.flat_max_tokens // 2:  # hysteresis: do not flip between Flat and IVF
            return "Flat"
        ratio = n / max(state.trained_on, 1)
        if ratio >= self.retrain_growth or ratio <= 1 / self.retrain_growth:
            return self.ivf_factory(n, dim)
        return None


def plan_structure(spec: str, n: int, dim: int, state: VectorState) -> str | None:
    """What to rebuild the index as at a commit (None: keep it), for the run's ``spec``.

    ``spec`` is ``"auto[:...]"`` (:class:`GrowthPolicy`) or a fixed FAISS factory string;
    a fixed IVF one stays exact Flat until there are enough vectors to train its lists.
    """
    policy = GrowthPolicy.parse(spec)
    if policy is not None:
        return policy.target(n, dim, state)
    parts = _ivf_parts(spec)
    want = spec if parts is None or n >= parts[0] * MIN_TRAIN_PER_LIST else "Flat"
    return None if want.replace(" ", "") == state.factory else want


def validate_spec(spec: str, dim: int) -> None:
    """Raise :class:`ConfigError` now, not at the first commit, for a bad ``faiss_factory``."""
    if GrowthPolicy.parse(spec) is None:
        ContextIndex.create(dim, spec)


def nprobe_for(spec: str, factory: str) -> int:
    """nprobe for a freshly built ``factory`` under the run's ``spec``."""
    policy = GrowthPolicy.parse(spec) or GrowthPolicy()
    return policy.nprobe_for(factory)


def training_size(spec: str, factory: str, n: int) -> int:
    parts = _ivf_parts(factory)
    if parts is None:
        return 0
    per_list = (GrowthPolicy.parse(spec) or GrowthPolicy()).train_per_list
    return min(n, max(parts[0] * per_list, parts[0] * MIN_TRAIN_PER_LIST))
