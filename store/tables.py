"""Parquet tables of one video: frame embeddings and proposals with context tokens.

frames (one row per sampled frame)::

    video_id: string, frame_idx: int32, timestamp_sec: float64,
    embedding: fixed_size_list<float32>[D]        (L2-normalised)

proposals (one row per proposal window)::

    video_id: string, proposal_idx: int32, frame_start: int32, frame_end: int32 (exclusive),
    start_sec: float64, end_sec: float64, tokens: fixed_size_list<float32>[K * D]

segments (one row per text segment: a caption cue, an ASR utterance, an OCR text block;
:class:`~groundzero.data.segments.TextSegment`), only for a video with any::

    video_id: string, seg_idx: int32, start_sec: float64, end_sec: float64, text: string,
    source: string (caption | asr | ocr), confidence: float64, speaker: string,
    words: string (JSON list of {start_sec, end_sec, text, confidence}; "[]" without word times)

DuckDB reads the fixed-size lists as ``FLOAT[D]`` arrays, so the ``array_*``
functions work on them directly.

Frames are written in row groups of ``FRAME_ROW_GROUP`` frames, so search reads only
the row groups its shortlisted windows cover (:class:`FrameReader`), not a whole
hour of 1152-d embeddings (17 MB) per shortlisted video. Files written before this
are one row group and are read whole, as before.

Every data page carries a CRC-32 (Parquet's page checksum), verified when search reads it: a
flipped bit in a page read raises IndexDamagedError instead of serving damaged embeddings.
The files' SHA-256 is computed as they are written, for the manifest
(:func:`groundzero.store.manifest.write_hashed`). Readers raise IndexDamagedError, naming the
file, for a file that is missing, truncated or damaged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from groundzero.data.segments import TextSegment, Word
from groundzero.store.layout import READ_ERRORS, read_error
from groundzero.store.manifest import write_hashed

FRAME_ROW_GROUP = 256  #: frames per Parquet row group (1.2 MB of 1152-d float32)


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
    _write(table, path, row_group_size=FRAME_ROW_GROUP)


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


SEGMENTS_SCHEMA = pa.schema([
    ("video_id", pa.string()), ("seg_idx", pa.int32()), ("start_sec", pa.float64()), ("end_sec", pa.float64()),
    ("text", pa.string()), ("source", pa.string()), ("confidence", pa.float64()), ("speaker", pa.string()),
    ("words", pa.string()),
])


def write_segments(path: Path, video_id: str, segments: Sequence[TextSegment]) -> None:
    """One row per segment, ``seg_idx`` its position in ``segments``."""
    table = pa.table({
        "video_id": [video_id] * len(segments),
        "seg_idx": list(range(len(segments))),
        "start_sec": [float(s.start_sec) for s in segments],
        "end_sec": [float(s.end_sec) for s in segments],
        "text": [s.text for s in segments],
        "source": [s.source for s in segments],
        "confidence": [float(s.confidence) for s in segments],
        "speaker": [s.speaker for s in segments],
        "words": [json.dumps(s.to_json()["words"]) for s in segments],
    }, schema=SEGMENTS_SCHEMA)
    _write(table, path)


def read_segments(path: Path) -> list[TextSegment]:
    """The segments of one video in ``seg_idx`` order (inverse of :func:`write_segments`)."""
    try:
        t = pq.read_table(path, columns=SEGMENTS_SCHEMA.names, page_checksum_verification=True)
        rows = sorted(t.to_pylist(), key=lambda r: r["seg_idx"])
        return [TextSegment(start_sec=r["start_sec"], end_sec=r["end_sec"], text=r["text"], source=r["source"],
                            confidence=r["confidence"], speaker=r["speaker"] or "",
                            words=tuple(Word(**w) for w in json.loads(r["words"] or "[]"))) for r in rows]
    except READ_ERRORS as e:  # missing, damaged, another schema (JSONDecodeError is a ValueError)
        raise read_error(path, e) from e


def _write(table: pa.Table, path: Path, row_group_size: int | None = None) -> None:
    # Written under a temporary name and renamed, so a crash never leaves a
    # half-written file under a name some manifest could point to; hashed as written.
    # Embedding columns: no dictionary (float vectors never repeat; pyarrow would write a 1 MB
    # dictionary page per row group and fall back to plain: +50% size), byte-stream-split
    # encoding (float bytes grouped by significance: zstd compresses it better and it decodes faster).
    floats = [f"{f.name}.list.element" for f in table.schema if pa.types.is_fixed_size_list(f.type)]
    strings = [f.name for f in table.schema if pa.types.is_string(f.type)]
    with write_hashed(path) as f:
        pq.write_table(table, f, compression="zstd", row_group_size=row_group_size, use_dictionary=strings,
                       use_byte_stream_split=floats or False, write_page_checksum=True)


def read_frames(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Returns (timestamps_sec float64 (T,), embeddings float32 (T, D)) in frame order."""
    try:
        t = pq.read_table(path, columns=["frame_idx", "timestamp_sec", "embedding"], page_checksum_verification=True)
        emb = t.column("embedding").combine_chunks()
        d = emb.type.list_size
        e = np.array(emb.values.to_numpy(zero_copy_only=False), np.float32).reshape(-1, d)  # writable copy
        return np.array(t.column("timestamp_sec").to_numpy(), np.float64), e
    except READ_ERRORS as e:  # whatever pyarrow raises: the file is missing or damaged
        raise read_error(path, e) from e


class FrameReader:
    """One video's frame embeddings, read from Parquet one row group at a time, on demand.

    ``timestamps`` (T,) float64 is read at open (8 bytes a frame). :meth:`frames` returns the
    (T, D) float32 embedding array with at least the rows of the asked ranges filled; rows of
    row groups never asked for are zeros (untouched pages of a zeroed array cost no memory).
    Row groups already read are kept, so a reader cached between queries reads each at most once.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self._file = pq.ParquetFile(self.path, page_checksum_verification=True)
            meta = self._file.metadata
            sizes = np.array([meta.row_group(i).num_rows for i in range(meta.num_row_groups)], np.int64)
            self.timestamps = np.array(self._file.read(columns=["timestamp_sec"]).column(0).to_numpy(), np.float64)
            self.dim = self._file.schema_arrow.field("embedding").type.list_size
        except READ_ERRORS as e:  # missing, truncated, not Parquet, another schema
            raise read_error(self.path, e) from e
        self._starts = np.concatenate([[0], np.cumsum(sizes)])  # (G + 1,) first frame of each group
        self._emb = np.zeros((len(self.timestamps), self.dim), np.float32)
        self._loaded = np.zeros(len(sizes), bool)

    @property
    def groups_read(self) -> int:
        """Row groups read so far (of :attr:`n_groups`)."""
        return int(self._loaded.sum())

    @property
    def n_groups(self) -> int:
        return len(self._loaded)

    def frames(self, ranges: np.ndarray | None = None) -> np.ndarray:
        """(T, D) embeddings, rows of every ``[start, end)`` frame range of ``ranges`` (P, 2) filled.

        ``None``: all of them (the whole file is read).
        """
        n_groups = len(self._loaded)
        if ranges is None:
            want = np.ones(n_groups, bool)
        else:
            want = np.zeros(n_groups, bool)
            for a, b in np.asarray(ranges, np.int64).reshape(-1, 2):
                if b <= a:
                    continue
                g0 = int(np.searchsorted(self._starts, a, side="right")) - 1
                g1 = int(np.searchsorted(self._starts, b, side="left"))  # groups [g0, g1) overlap [a, b)
                want[max(g0, 0) : min(g1, n_groups)] = True
        todo = np.flatnonzero(want & ~self._loaded)
        if len(todo):
            try:
                table = self._file.read_row_groups(todo.tolist(), columns=["embedding"])
                col = table.column("embedding").combine_chunks()
                values = np.asarray(col.values.to_numpy(zero_copy_only=False), np.float32).reshape(-1, self.dim)
            except READ_ERRORS as e:  # a damaged page (CRC, decompression), a file cut since
                raise read_error(self.path, e) from e
            if len(values) != int(self._starts[todo + 1].sum() - self._starts[todo].sum()):
                raise read_error(self.path, ValueError("row groups hold fewer embeddings than frames"))
            at = 0
            for g in todo:  # read_row_groups returns the groups in the order asked
                a, b = int(self._starts[g]), int(self._starts[g + 1])
                self._emb[a:b] = values[at : at + (b - a)]
                at += b - a
            self._loaded[todo] = True
        return self._emb


def read_proposals(path: Path, tokens: bool = True) -> dict[str, np.ndarray]:
    """Columns as numpy arrays; ``tokens`` (P, K*D) only when asked for."""
    cols = ["proposal_idx", "frame_start", "frame_end", "start_sec", "end_sec"] + (["tokens"] if tokens else [])
    try:
        t = pq.read_table(path, columns=cols, page_checksum_verification=True)
        out = {c: t.column(c).to_numpy() for c in cols if c != "tokens"}
        if tokens:
            tok = t.column("tokens").combine_chunks()
            out["tokens"] = tok.values.to_numpy(zero_copy_only=False).reshape(len(t), tok.type.list_size)
        return out
    except READ_ERRORS as e:  # whatever pyarrow raises: the file is missing or damaged
        raise read_error(path, e) from e
