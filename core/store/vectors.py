"""FAISS index over the context tokens of every proposal in a snapshot.

Each vector's FAISS id encodes where it came from, so no side table is needed
and a whole video can be removed with one range::

    id = video_seq << 24 | proposal_idx << 6 | token_idx

(``token_idx < 64``, ``proposal_idx < 2**18`` — 72 days of video at a 24 s
stride — and ``video_seq < 2**39``). Vectors are L2-normalised and searched by
inner product, i.e. cosine similarity.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from core.errors import ConfigError

_TOK_BITS, _PROP_BITS = 6, 18
_VIDEO_SHIFT = _TOK_BITS + _PROP_BITS


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


class ContextIndex:
    """A FAISS ``IndexIDMap2`` around an inner-product index built by ``factory``."""

    def __init__(self, index: faiss.Index):
        self.index = index

    @classmethod
    def create(cls, dim: int, factory: str = "Flat") -> "ContextIndex":
        try:
            inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise ConfigError(f"FAISS index factory string {factory!r} is invalid: {e}") from e
        return cls(faiss.IndexIDMap2(inner))

    @classmethod
    def load(cls, path: Path) -> "ContextIndex":
        return cls(faiss.read_index(str(path)))

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        faiss.write_index(self.index, str(tmp))
        tmp.replace(path)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """ids int64 (N,), vectors float32 (N, D) L2-normalised."""
        x = np.ascontiguousarray(vectors, np.float32)
        if not self.index.is_trained:
            self.index.train(x)
        self.index.add_with_ids(x, np.ascontiguousarray(ids, np.int64))

    def remove_video(self, video_seq: int) -> int:
        """Remove every vector of one video; returns how many were removed."""
        lo = int(video_seq) << _VIDEO_SHIFT
        return int(self.index.remove_ids(faiss.IDSelectorRange(lo, lo + (1 << _VIDEO_SHIFT))))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries float32 (Q, D) -> (scores (Q, k), ids (Q, k)); id -1 where fewer exist."""
        k = max(1, min(k, self.ntotal))
        return self.index.search(np.ascontiguousarray(queries, np.float32), k)
