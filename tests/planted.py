"""Indexes with planted frame embeddings: exact known answers for the search mechanics.

A random tiny model cannot know semantics, so these tests plant frame
embeddings directly: background frames are random unit vectors made
orthogonal to the query embedding, and the target segment's frames are the
query embedding plus small noise. The store is written through the real
:class:`IndexWriter`, exactly as the indexer writes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from groundzero.data.proposals import ProposalConfig, make_windows, zero_shot_tokens
from groundzero.model.identity import read_identity
from groundzero.store.manifest import IndexParams
from groundzero.store.writer import IndexWriter, VideoEntry


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def plant_index(index_dir: Path, model_dir: Path, query_emb: np.ndarray, *, durations: list[int],
                target_video: int, target_start: int, target_end: int, fps: float = 1.0,
                proposals: ProposalConfig = ProposalConfig(), seed: int = 0,
                decoys: list[tuple[int, int, int, float]] = ()) -> list[str]:
    """Write an index of ``len(durations)`` videos; returns their uris.

    Frames ``[target_start, target_end)`` (seconds) of video ``target_video`` match
    the query (cosine ~0.99). Each decoy ``(video, start, end, cos)`` plants a
    weaker match (cosine ``cos``) elsewhere.
    """
    rng = np.random.default_rng(seed)
    _, identity = read_identity(str(model_dir))
    params = IndexParams(fps=fps, frame_size=identity.image_size, proposals=proposals)
    q = unit(query_emb)
    uris = []
    with IndexWriter.open(index_dir, identity, params) as w:
        for v, dur in enumerate(durations):
            T = int(dur * fps)
            bg = rng.normal(size=(T, q.shape[0]))
            bg -= np.outer(bg @ q, q)  # orthogonal to the query
            emb = unit(bg)
            if v == target_video:
                a, b = int(target_start * fps), int(target_end * fps)
                emb[a:b] = unit(q + 0.05 * unit(rng.normal(size=(b - a, q.shape[0]))))
            for dv, ds, de, cos in decoys:
                if dv == v:
                    a, b = int(ds * fps), int(de * fps)
                    emb[a:b] = unit(cos * q + np.sqrt(1 - cos**2) * emb[a:b])
            ts = np.arange(T, dtype=np.float64) / fps
            windows = make_windows(T, fps, proposals)
            tokens = zero_shot_tokens(emb, windows, proposals.tokens_per_proposal)
            uri = f"/archive/video_{v:02d}.mp4"
            entry = VideoEntry(uri=uri, rel_path=f"video_{v:02d}.mp4", size_bytes=1000 + v, mtime_ns=v,
                               content_hash=f"hash{v}", duration_sec=float(dur), width=160, height=120)
            w.put_indexed(entry, "planted", ts, emb, windows, tokens)
            uris.append(uri)
        w.commit("planted")
    return uris
