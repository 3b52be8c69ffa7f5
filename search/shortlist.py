"""Shortlist: the proposals whose context tokens are nearest the query, corpus-wide."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from groundzero.store.vectors import RESCORE_POOL, ContextIndex, decode_ids


@dataclass(frozen=True)
class Shortlist:
    """Proposals ranked by their best token's cosine with the query.

    Arrays of length N (N <= ``n_proposals``), best first: ``video_seq`` int64,
    ``proposal_idx`` int64, ``score`` float32.
    """

    video_seq: np.ndarray
    proposal_idx: np.ndarray
    score: np.ndarray


def shortlist(index: ContextIndex, query_emb: np.ndarray, n_tokens: int, n_proposals: int,
              pool: int = RESCORE_POOL) -> Shortlist:
    """Args: query_emb float32 (D,) L2-normalised; ``pool``: see :meth:`ContextIndex.search`."""
    if index.ntotal == 0:
        e = np.zeros(0, np.int64)
        return Shortlist(e, e, np.zeros(0, np.float32))
    scores, ids = index.search(query_emb[None, :], n_tokens, pool)
    scores, ids = scores[0], ids[0]
    ok = ids >= 0
    seq, prop, _ = decode_ids(ids[ok])
    best: dict[tuple[int, int], float] = {}
    for s, p, sc in zip(seq.tolist(), prop.tolist(), scores[ok].tolist()):
        if sc > best.get((s, p), -np.inf):  # FAISS returns best first; keep each proposal's max
            best[(s, p)] = sc
    ranked = sorted(best.items(), key=lambda kv: -kv[1])[:n_proposals]
    return Shortlist(
        video_seq=np.array([k[0] for k, _ in ranked], np.int64),
        proposal_idx=np.array([k[1] for k, _ in ranked], np.int64),
        score=np.array([v for _, v in ranked], np.float32),
    )
