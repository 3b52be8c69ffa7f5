"""Parquet tables of one video: frame embeddings and proposals with context tokens.

frames (one row per sampled frame)::

    video_id: string, frame_idx: int32, timestamp_sec: float64,
    embedding: fixed_size_list<float32>[D]        (L2-normalised)

proposals (one row per proposal window)::

    video_id: string, proposal_idx: int32, frame_start: int32, frame_end: int32 (exclusive),
    start_sec: float64, end_sec: float64, tokens: fixed_size_list<float32>[K * D]

DuckDB reads the fixed-size lists as ``FLOAT[D]`` arrays, so the ``array_*``
functions work on them directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def _fixed_list(x: np.ndarray) -> pa.FixedSizeListArray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


def write_frames(path: Path, video_id: str, timestamps_sec: np.ndarray, embeddings: np.ndarray) -> None:
    """Args: timestamps_sec float64 (T,), embeddings float32 (T, D)."""
    n = len(timestamps_sec)
    table = pa.table({
        "video_id": pa.array([video_id] * n, pa.string()),
        "frame_idx": pa.array(np.arange(n, dtype=np.int32)),
        "timestamp_sec": pa.array(np.asarray(timestamps_sec, np.float64)),
        "embedding": _fixed_list(embeddings),
    })
    _write(table, path)


def write_proposals(path: Path, video_id: str, windows: np.ndarray, timestamps_sec: np.ndarray,
                    fps: float, tokens: np.ndarray) -> None:
    """Args: windows int64 (P, 2) frame ranges; tokens float32 (P, K, D)."""
    P = len(windows)
    end_idx = windows[:, 1] - 1
    table = pa.table({
        "video_id": pa.array([video_id] * P, pa.string()),
        "proposal_idx": pa.array(np.arange(P, dtype=np.int32)),
        "frame_start": pa.array(windows[:, 0].astype(np.int32)),
        "frame_end": pa.array(windows[:, 1].astype(np.int32)),
        "start_sec": pa.array(timestamps_sec[windows[:, 0]].astype(np.float64)),
        "end_sec": pa.array((timestamps_sec[end_idx] + 1.0 / fps).astype(np.float64)),
        "tokens": _fixed_list(tokens.reshape(P, -1)),
    })
    _write(table, path)


def _write(table: pa.Table, path: Path) -> None:
    # Written under a temporary name and renamed, so a crash never leaves a
    # half-written file under a name some manifest could point to.
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)


def read_frames(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Returns (timestamps_sec float64 (T,), embeddings float32 (T, D)) in frame order."""
    t = pq.read_table(path, columns=["frame_idx", "timestamp_sec", "embedding"])
    emb = t.column("embedding").combine_chunks()
    d = emb.type.list_size
    e = np.array(emb.values.to_numpy(zero_copy_only=False), np.float32).reshape(-1, d)  # writable copy
    return np.array(t.column("timestamp_sec").to_numpy(), np.float64), e


def read_proposals(path: Path, tokens: bool = True) -> dict[str, np.ndarray]:
    """Columns as numpy arrays; ``tokens`` (P, K*D) only when asked for."""
    cols = ["proposal_idx", "frame_start", "frame_end", "start_sec", "end_sec"] + (["tokens"] if tokens else [])
    t = pq.read_table(path, columns=cols)
    out = {c: t.column(c).to_numpy() for c in cols if c != "tokens"}
    if tokens:
        tok = t.column("tokens").combine_chunks()
        out["tokens"] = tok.values.to_numpy(zero_copy_only=False).reshape(len(t), tok.type.list_size)
    return out
