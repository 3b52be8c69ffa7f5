"""Parquet tables of one video: frame embeddings and proposals with context tokens.

frames (one row per sampled frame)::

    video_id: string, frame_idx: int32, timestamp_sec: float64,
    embedding: fixed_size_list<halffloat>[D]      (L2-normalised; float32 in files written before fp16)

proposals (one row per proposal window)::

    video_id: string, proposal_idx: int32, frame_start: int32, frame_end: int32 (exclusive),
    start_sec: float64, end_sec: float64, tokens: fixed_size_list<halffloat>[K * D]

segments (one row per text segment: a caption cue, an ASR utterance, an OCR text block;
:class:`~groundzero.data.segments.TextSegment`), only for a video with any::

    video_id: string, seg_idx: int32, start_sec: float64, end_sec: float64, text: string,
    source: string (caption | asr | ocr), confidence: float64, speaker: string,
    words: string (JSON list of {start_sec, end_sec, text, confidence}; "[]" without word times)

Embeddings are stored as IEEE half floats (``STORE_DTYPE``): half the bytes of float32, and a
relative rounding of at most 2**-11 per component, so the cosine of a stored 1152-d vector with
its float32 original is above 0.99999. Readers return float32 whatever a file holds, so indexes
written with float32 embeddings read unchanged. DuckDB reads the lists as ``FLOAT[]`` (the
``list_*`` functions work on them; cast to ``FLOAT[D]`` for the ``array_*`` ones).

Frames are written in row groups of ``FRAME_ROW_GROUP`` frames, so search reads only
the row groups its shortlisted windows cover (:class:`FrameReader`), not a whole
hour of 1152-d embeddings (8 MB) per shortlisted video: 64 frames (147 KB at 1152-d),
about a proposal window, so a window reads one or two groups. Files written with other
group sizes (256 frames, or one group for the whole video) read the same.

Every data page carries a CRC-32 (Parquet's page checksum), verified when search reads it: a
flipped bit in a page read raises IndexDamagedError instead of serving damaged embeddings.
The files' SHA-256 is computed as they are written, for the manifest
(:func:`groundzero.store.manifest.write_hashed`). Readers raise IndexDamagedError, naming the
file, for a file that is missing, truncated or damaged.
"""

from __future__ import annotations

import json
import mmap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from groundzero.data.segments import TextSegment, Word
from groundzero.store.layout import READ_ERRORS, read_error
from groundzero.store.manifest import write_hashed

FRAME_ROW_GROUP = 64  #: frames per Parquet row group (147 KB of 1152-d half floats)
STORE_DTYPE = np.float16  #: how frame embeddings and context tokens are stored


def as_stored(x: np.ndarray) -> np.ndarray:
    """float32 ``x`` rounded as the store keeps it (through ``STORE_DTYPE``): what a reader gets back."""
    return np.ascontiguousarray(np.asarray(x, np.float32).astype(STORE_DTYPE), np.float32)


def _fixed_list(x: np.ndarray) -> pa.FixedSizeListArray:
    x = np.ascontiguousarray(x, dtype=STORE_DTYPE)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


def write_frames(path: Path, video_id: str, timestamps_sec: np.ndarray, embeddings: np.ndarray) -> None:
    """Args: timestamps_sec float64 (T,), embeddings float32 (T, D), stored as ``STORE_DTYPE``."""
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
    """Args: windows int64 (P, 2) frame ranges; tokens float32 (P, K, D), stored as ``STORE_DTYPE``."""
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
    # dictionary page per row group and fall back to plain: +50% size). float32 lists get
    # byte-stream-split encoding (float bytes grouped by significance: zstd compresses it better and it
    # decodes faster); half floats do not: DuckDB cannot read that encoding of them (it would save 6%).
    floats = [f"{f.name}.list.element" for f in table.schema
              if pa.types.is_fixed_size_list(f.type) and pa.types.is_float32(f.type.value_type)]
    strings = [f.name for f in table.schema if pa.types.is_string(f.type)]
    with write_hashed(path) as f:
        pq.write_table(table, f, compression="zstd", row_group_size=row_group_size, use_dictionary=strings,
                       use_byte_stream_split=floats or False, write_page_checksum=True)


def _numpy(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A null-free numeric column as numpy, through DLPack: pyarrow's ``to_numpy`` imports pandas, which
    costs a one-shot search 0.4 s. A read-only view where it can be (one chunk), else a copy."""
    parts = [np.from_dlpack(c) for c in (col.chunks if isinstance(col, pa.ChunkedArray) else [col])]
    if not parts:  # a column of no chunks (no rows)
        return np.from_dlpack(pa.array([], col.type))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _read(path: Path, columns: list[str]) -> pa.Table:
    """The columns of a whole Parquet file, page checksums verified, decoded on this thread."""
    return pq.ParquetFile(path, page_checksum_verification=True).read(columns=columns, use_threads=False)


def read_frames(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Returns (timestamps_sec float64 (T,), embeddings float32 (T, D)) in frame order."""
    try:
        t = _read(path, ["frame_idx", "timestamp_sec", "embedding"])
        emb = t.column("embedding").combine_chunks()
        e = np.array(_numpy(emb.values), np.float32).reshape(-1, emb.type.list_size)  # writable copy
        return np.array(_numpy(t.column("timestamp_sec")), np.float64), e
    except READ_ERRORS as e:  # whatever pyarrow raises: the file is missing or damaged
        raise read_error(path, e) from e


def _untouched_zeros(shape: tuple[int, int]) -> np.ndarray:
    """float32 zeros of ``shape`` whose untouched pages cost no memory, in pages of 4 KB.

    ``np.zeros`` maps an array this large too, but where transparent huge pages are on ("always",
    as on many Linux hosts) the first row written makes the kernel back the whole 2 MB around it:
    a search process holding a window of 64-128 frames (0.3-0.6 MB at 1152-d) of each of its cached
    videos held 2-4 MB for each. An anonymous map with huge pages refused holds what is written.
    """
    nbytes = int(np.prod(shape)) * 4
    if nbytes < 1 << 21 or not hasattr(mmap, "MADV_NOHUGEPAGE"):
        return np.zeros(shape, np.float32)
    m = mmap.mmap(-1, nbytes)  # anonymous, zero-filled; unmapped when the last array over it is freed
    m.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(m, np.float32).reshape(shape)


class FrameReader:
    """One video's frame embeddings and timestamps, read from Parquet one row group at a time, on demand.

    Opening reads only the file's footer. :meth:`frames` returns the (T, D) float32 embedding array
    with at least the rows of the asked ranges filled, and fills those frames' :attr:`timestamps`;
    rows of row groups never asked for are zeros (untouched pages of a zeroed array cost no memory)
    and their timestamps NaN. Row groups already read are kept, so a reader cached between queries
    reads each at most once.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self._file = pq.ParquetFile(self.path, page_checksum_verification=True)
            meta = self._file.metadata
            sizes = np.array([meta.row_group(i).num_rows for i in range(meta.num_row_groups)], np.int64)
            schema = self._file.schema_arrow
            self.dim = schema.field("embedding").type.list_size
            schema.field("timestamp_sec")  # KeyError (a damaged file) when missing
        except READ_ERRORS as e:  # missing, truncated, not Parquet, another schema
            raise read_error(self.path, e) from e
        self._starts = np.concatenate([[0], np.cumsum(sizes)])  # (G + 1,) first frame of each group
        self._emb = _untouched_zeros((int(self._starts[-1]), self.dim))
        #: float64 (T,) seconds of each frame in the video; NaN for frames of row groups not read yet
        self.timestamps = np.full(int(self._starts[-1]), np.nan)
        self._loaded = np.zeros(len(sizes), bool)
        self._rows_read = 0

    @property
    def groups_read(self) -> int:
        """Row groups read so far (of :attr:`n_groups`)."""
        return int(self._loaded.sum())

    @property
    def n_groups(self) -> int:
        return len(self._loaded)

    @property
    def nbytes(self) -> int:
        """Bytes of embeddings read so far (the rows of the row groups read: what the reader holds)."""
        return self._rows_read * self.dim * self._emb.itemsize

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
                # decoded on the calling thread: a search's few row groups gain nothing from pyarrow's pool
                table = self._file.read_row_groups(todo.tolist(), columns=["timestamp_sec", "embedding"],
                                                   use_threads=False)
                col = table.column("embedding").combine_chunks()
                values = np.asarray(_numpy(col.values), np.float32).reshape(-1, self.dim)
                ts = _numpy(table.column("timestamp_sec"))
            except READ_ERRORS as e:  # a damaged page (CRC, decompression), a file cut since
                raise read_error(self.path, e) from e
            if len(values) != len(ts) or len(ts) != int(self._starts[todo + 1].sum() - self._starts[todo].sum()):
                raise read_error(self.path, ValueError("row groups hold fewer embeddings than frames"))
            at = 0
            for g in todo:  # read_row_groups returns the groups in the order asked
                a, b = int(self._starts[g]), int(self._starts[g + 1])
                self._emb[a:b] = values[at : at + (b - a)]
                self.timestamps[a:b] = ts[at : at + (b - a)]
                at += b - a
            self._rows_read += at
            self._loaded[todo] = True
        return self._emb


def read_proposal_ranges(path: Path) -> np.ndarray:
    """int64 (P, 2): the ``[frame_start, frame_end)`` range of each proposal, in ``proposal_idx`` order."""
    try:
        t = _read(path, ["frame_start", "frame_end"])
        return np.stack([_numpy(t.column("frame_start")), _numpy(t.column("frame_end"))], axis=1).astype(np.int64)
    except READ_ERRORS as e:  # whatever pyarrow raises: the file is missing or damaged
        raise read_error(path, e) from e


def read_proposals(path: Path, tokens: bool = True) -> dict[str, np.ndarray]:
    """Columns as numpy arrays; ``tokens`` float32 (P, K*D) only when asked for."""
    cols = ["proposal_idx", "frame_start", "frame_end", "start_sec", "end_sec"] + (["tokens"] if tokens else [])
    try:
        t = _read(path, cols)
        out = {c: _numpy(t.column(c)) for c in cols if c != "tokens"}
        if tokens:
            tok = t.column("tokens").combine_chunks()
            out["tokens"] = np.asarray(_numpy(tok.values), np.float32).reshape(len(t), tok.type.list_size)
        return out
    except READ_ERRORS as e:  # whatever pyarrow raises: the file is missing or damaged
        raise read_error(path, e) from e
