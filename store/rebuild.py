"""Building the FAISS index afresh from the stored context tokens (when it changes structure as
the corpus grows, :func:`groundzero.store.vectors.plan_structure`, or is rebuilt after a reindex)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from groundzero.store import tables
from groundzero.store.layout import IndexLayout
from groundzero.store.rescore import RescoreCodes, SpilledCodes
from groundzero.store.vectors import (
    ContextIndex,
    VectorState,
    encode_ids,
    nprobe_for,
    training_size,
)


def build_from_store(layout: IndexLayout, rows: list[dict], embed_dim: int, policy: str, factory: str,
                     n: int) -> tuple[ContextIndex, VectorState]:
    """A new index of structure ``factory`` over the tokens of ``rows`` (indexed catalog rows).

    ``policy`` is the index run's ``faiss_factory`` ("auto" or a fixed factory string) and ``n``
    the number of vectors it will hold (the training sample's size follows from both).
    """
    idx = ContextIndex.create(embed_dim, factory)
    trained_on = 0
    if not idx.is_trained:
        idx.train(training_sample(layout, rows, embed_dim, training_size(policy, factory, n)))
        trained_on = n
    spill = SpilledCodes(embed_dim, layout.root) if idx.codes is not None else None
    idx.codes = None  # a PQ index's re-scoring codes go to disk as they come, not to memory
    for ids, vecs in store_tokens(layout, _by_seq(rows), embed_dim):
        idx.add(ids, vecs)
        if spill is not None:
            spill.add(ids, vecs)
    idx.codes = spill.finish() if spill is not None else None
    idx.nprobe = nprobe_for(policy, factory)
    return idx, VectorState(factory=idx.factory, trained_on=trained_on, nprobe=idx.nprobe)


def codes_from_store(layout: IndexLayout, rows: list[dict], embed_dim: int) -> RescoreCodes:
    """The re-scoring codes of the tokens of ``rows``, for a PQ index written before they existed
    (spilled to a temporary file in the index's folder as they are made, not held in memory)."""
    codes = SpilledCodes(embed_dim, layout.root)
    for ids, vecs in store_tokens(layout, _by_seq(rows), embed_dim):
        codes.add(ids, vecs)
    return codes.finish()


def _by_seq(rows: list[dict]) -> list[dict]:
    """Catalog rows in ``video_seq`` order: their tokens' ids ascend."""
    return sorted(rows, key=lambda r: int(r["video_seq"]))


def store_tokens(layout: IndexLayout, rows: list[dict], embed_dim: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (ids (P*K,), vectors float32 (P*K, D)) per video, read from its proposals file."""
    for r in rows:
        tok = tables.read_proposals(layout.path(r["proposals_file"]))["tokens"]
        vecs = np.ascontiguousarray(tok.reshape(-1, embed_dim), np.float32)
        yield encode_ids(int(r["video_seq"]), len(tok), tok.shape[1] // embed_dim), vecs


def training_sample(layout: IndexLayout, rows: list[dict], embed_dim: int, size: int) -> np.ndarray:
    """float32 (size, D): all tokens of randomly chosen videos, then subsampled to ``size``."""
    rng = np.random.default_rng(len(rows))
    order = rng.permutation(len(rows))
    got, parts = 0, []
    for _, vecs in store_tokens(layout, [rows[i] for i in order], embed_dim):
        parts.append(vecs)
        got += len(vecs)
        if got >= 4 * size:  # spread over enough videos, then subsample
            break
    x = np.concatenate(parts)
    return x[np.sort(rng.choice(len(x), size=min(size, len(x)), replace=False))]
