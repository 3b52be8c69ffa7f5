"""Exact re-scoring of a product-quantised shortlist: an int8 copy of every context token.

PQ codes rank the corpus only approximately: on structured 1152-d data the FAISS top 32
proposals held 0.77 of the exact top 32 (docs/RESULTS.md, search at 1152-d). So an IVF-PQ
search (:meth:`groundzero.store.vectors.ContextIndex.search`) fetches a pool several times
larger than asked for and re-scores it with these codes: each token scaled into int8 by its own
largest component (``x ~ scale * code``, 1,152 bytes at 1152-d against 4,608 as floats),
which moves a dot product with a unit query by about 1e-4.

The codes are a trailer of the FAISS file, after FAISS's own bytes (which its reader stops
before), so a snapshot's vectors stay one file: hashed, verified, uploaded and collected as
before. Readers map the ids and scales (12 bytes a token) and read the rows of a search's
candidates with ``pread``: the codes cost disk (about 1 MB per video hour), not RAM. (Mapping
them too would not do: the kernel maps the cached pages around each one touched, so 20 searches
at 1,000 hours made the whole gigabyte of codes resident.)::

    [FAISS index][pad][ids int64 (N,) ascending][scale float32 (N,)][codes int8 (N, D)][footer]
    footer (32 bytes): b"GZRESC01", offset of the ids, N, D (little-endian uint64)
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import numpy as np

MAGIC = b"GZRESC01"
_FOOTER = struct.Struct("<8sQQQ")
_ALIGN = 64
_CHUNK = 1 << 16  #: rows written per step (64 Ki rows: 72 MB of codes at 1152-d)
_GAP = 16  #: rows read in one go when at most this many apart (16 rows: 18 KB at 1152-d)


def quantize(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 (N, D) -> (scale float32 (N,), codes int8 (N, D)), ``vectors ~ scale[:, None] * codes``."""
    x = np.asarray(vectors, np.float32)
    top = np.abs(x).max(axis=1) if x.size else np.zeros(len(x), np.float32)
    scale = np.where(top > 0, top / 127.0, 1.0).astype(np.float32)
    codes = np.clip(np.rint(x / scale[:, None]), -127, 127).astype(np.int8)
    return scale, codes


class _FileRows:
    """int8 (n, d) rows at byte ``offset`` of a file (a path, or a file already open), read on demand
    (``pread``: thread-safe, and nothing stays mapped). The file stays open, so it can be read after a
    later commit deletes it."""

    def __init__(self, path_or_file, offset: int, n: int, d: int):
        # lives as long as the index that reads it
        self._f = path_or_file if hasattr(path_or_file, "fileno") else open(path_or_file, "rb")  # noqa: SIM115
        self.offset, self.shape = offset, (n, d)

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, rows: np.ndarray) -> np.ndarray:
        """int8 (len(rows), d). Rows at most ``_GAP`` rows apart are one read (a read costs about as
        much as a few rows' bytes), so a search's 2,048 scattered rows take a few hundred reads."""
        d = self.shape[1]
        out = np.empty((len(rows), d), np.int8)
        if not len(rows):
            return out
        if (np.diff(rows) < 0).any():
            order = np.argsort(rows, kind="stable")
            out[order] = self.take(rows[order])
            return out
        breaks = np.flatnonzero(np.diff(rows) > _GAP) + 1
        fd = self._f.fileno()
        for lo, hi in zip(np.r_[0, breaks].tolist(), np.r_[breaks, len(rows)].tolist()):
            first, last = int(rows[lo]), int(rows[hi - 1])
            n = (last - first + 1) * d
            buf = os.pread(fd, n, self.offset + first * d)
            if len(buf) != n:
                raise OSError(f"{self._f.name}: its re-scoring codes end early (truncated?)")
            block = np.frombuffer(buf, np.int8).reshape(-1, d)
            out[lo:hi] = block if hi - lo == len(block) else block[rows[lo:hi] - first]
        return out


def _take(codes, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of in-memory codes or of a file's."""
    return codes.take(rows) if isinstance(codes, _FileRows) else codes[rows]


class RescoreCodes:
    """The int8 codes of an index's tokens, by FAISS id: a base read from the file's trailer (ids
    ascending; ids and scales mapped, code rows read on demand) less what was removed since, plus
    what was added since (in RAM)."""

    def __init__(self, dim: int, ids: np.ndarray | None = None, scale: np.ndarray | None = None,
                 codes: np.ndarray | None = None):
        self.dim = int(dim)
        self._ids = np.zeros(0, np.int64) if ids is None else ids
        self._scale = np.zeros(0, np.float32) if scale is None else scale
        self._codes = np.zeros((0, self.dim), np.int8) if codes is None else codes
        self._removed: np.ndarray | None = None  #: bool (N,) over the base, allocated at the first removal
        self._added: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._added_sorted: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    # -- reading ------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> RescoreCodes | None:
        """The trailer of FAISS file ``path``, opened for reading; None when it has none (PQ files written
        before re-scoring existed, and every Flat one). Raises ValueError for a damaged trailer."""
        size = Path(path).stat().st_size
        if size < _FOOTER.size:
            return None
        with open(path, "rb") as f:
            f.seek(size - _FOOTER.size)
            magic, offset, n, d = _FOOTER.unpack(f.read(_FOOTER.size))
        if magic != MAGIC:
            return None
        if offset + n * (8 + 4 + d) + _FOOTER.size != size or not d:
            raise ValueError(f"its re-scoring codes do not fit the file ({n} x {d} at byte {offset} of {size})")
        if n == 0:
            return cls(d)
        ids = np.memmap(path, np.int64, "r", offset=offset, shape=(n,))
        scale = np.memmap(path, np.float32, "r", offset=offset + 8 * n, shape=(n,))
        return cls(d, ids, scale, _FileRows(path, offset + 12 * n, n, d))

    def __len__(self) -> int:
        removed = int(self._removed.sum()) if self._removed is not None else 0
        return len(self._ids) - removed + sum(len(a[0]) for a in self._added)

    def ids(self) -> np.ndarray:
        """int64 every id held, ascending."""
        keep = self._ids if self._removed is None else self._ids[~self._removed]
        return np.sort(np.concatenate([np.asarray(keep), *(a[0] for a in self._added)]))

    def scores(self, ids: np.ndarray, query: np.ndarray) -> np.ndarray:
        """float32 (n,): each id's token dotted with ``query`` (D,); NaN for an id not held."""
        found, scale, codes = self._lookup(ids)
        out = np.full(len(found), np.nan, np.float32)
        out[found] = (codes.astype(np.float32) @ np.asarray(query, np.float32)) * scale
        return out

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """float32 (n, D): each id's token as the codes hold it; NaN rows for ids not held."""
        found, scale, codes = self._lookup(ids)
        out = np.full((len(found), self.dim), np.nan, np.float32)
        out[found] = codes.astype(np.float32) * scale[:, None]
        return out

    def _lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(found bool (n,), scale float32 (m,), codes int8 (m, D)) for ``ids`` (n,), the m found in order."""
        ids = np.asarray(ids, np.int64)
        found = np.zeros(len(ids), bool)
        scale = np.zeros(len(ids), np.float32)
        codes = np.zeros((len(ids), self.dim), np.int8)
        for src_ids, src_scale, src_codes, removed in self._sources():
            if not len(src_ids) or not len(ids):
                continue
            pos = np.minimum(np.searchsorted(src_ids, ids), len(src_ids) - 1)
            hit = np.asarray(src_ids[pos]) == ids
            if removed is not None:
                hit &= ~removed[pos]
            where = np.flatnonzero(hit)
            order = np.argsort(pos[where])  # in file order
            rows = pos[where][order]
            scale[where[order]] = src_scale[rows]
            codes[where[order]] = _take(src_codes, rows)
            found[where] = True
        return found, scale[found], codes[found]

    def _sources(self):
        yield self._ids, self._scale, self._codes, self._removed
        if self._added:
            if self._added_sorted is None:
                ids, scale, codes = (np.concatenate(parts) for parts in zip(*self._added))
                o = np.argsort(ids, kind="stable")
                self._added_sorted = (ids[o], scale[o], codes[o])
            yield (*self._added_sorted, None)

    # -- changing -----------------------------------------------------------------

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """ids int64 (N,), vectors float32 (N, D)."""
        scale, codes = quantize(vectors)
        self._added.append((np.asarray(ids, np.int64).copy(), scale, codes))
        self._added_sorted = None

    def remove(self, drop) -> None:
        """Forget the ids for which ``drop(ids)`` (int64 array -> bool array) is true."""
        if len(self._ids):
            hit = drop(np.asarray(self._ids))
            if hit.any():
                self._removed = hit if self._removed is None else self._removed | hit
        kept = []
        for ids, scale, codes in self._added:
            keep = ~drop(ids)
            kept.append((ids[keep], scale[keep], codes[keep]) if not keep.all() else (ids, scale, codes))
        self._added = kept
        self._added_sorted = None

    # -- writing ------------------------------------------------------------------

    def write(self, f) -> None:
        """Append the trailer (every code held, ids ascending) to binary file ``f`` at its position."""
        base_rows = np.arange(len(self._ids)) if self._removed is None else np.flatnonzero(~self._removed)
        added = [np.concatenate(parts) for parts in zip(*self._added)] if self._added else \
            [np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros((0, self.dim), np.int8)]
        ids = np.concatenate([np.asarray(self._ids)[base_rows], added[0]])
        order = np.argsort(ids, kind="stable")  # the base is ascending already: the usual merge is cheap
        nb = len(base_rows)
        scale = np.concatenate([np.asarray(self._scale)[base_rows], added[1]])

        def blocks():
            for lo in range(0, len(order), _CHUNK):
                o = order[lo:lo + _CHUNK]
                block = np.empty((len(o), self.dim), np.int8)
                old = o < nb
                block[old] = _take(self._codes, base_rows[o[old]])
                block[~old] = added[2][o[~old] - nb]
                yield block

        write_trailer(f, ids[order], scale[order], self.dim, blocks())


class SpilledCodes:
    """Codes of tokens added in ascending id order, written to an unnamed temporary file in ``dir``
    as they come, so building the codes of a whole corpus (a rebuild: about 1 GB per 1,000 video
    hours at 1152-d) holds only their ids and scales in memory (12 bytes a token). :meth:`finish`
    gives :class:`RescoreCodes` that read the file; it is deleted once they are gone."""

    def __init__(self, dim: int, dir: Path):
        self.dim = int(dim)
        self._f = tempfile.TemporaryFile(dir=dir, prefix=".rescore-", suffix=".tmp")  # noqa: SIM115
        self._ids: list[np.ndarray] = []
        self._scale: list[np.ndarray] = []
        self._last = -1

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """ids int64 (N,) ascending and above every id added before, vectors float32 (N, D)."""
        ids = np.asarray(ids, np.int64)
        if len(ids) and (ids[0] <= self._last or (np.diff(ids) <= 0).any()):
            raise ValueError("spilled re-scoring codes must be added in ascending id order")
        scale, codes = quantize(vectors)
        self._f.write(codes.tobytes())
        self._ids.append(ids.copy())
        self._scale.append(scale)
        self._last = int(ids[-1]) if len(ids) else self._last

    def finish(self) -> RescoreCodes:
        self._f.flush()
        ids = np.concatenate(self._ids) if self._ids else np.zeros(0, np.int64)
        scale = np.concatenate(self._scale) if self._scale else np.zeros(0, np.float32)
        return RescoreCodes(self.dim, ids, scale, _FileRows(self._f, 0, len(ids), self.dim))


def write_trailer(f, ids: np.ndarray, scale: np.ndarray, dim: int, blocks) -> None:
    """Append a trailer to binary file ``f`` at its position: ``ids`` int64 (N,) ascending, ``scale``
    float32 (N,), and the codes as consecutive int8 (n, dim) ``blocks`` in id order (any iterable, so
    codes larger than memory can be streamed from elsewhere). Raises ValueError when they disagree."""
    ids = np.asarray(ids, np.int64)
    if len(ids) > 1 and (np.diff(ids) <= 0).any():
        raise ValueError("re-scoring ids must be unique and ascending")
    start = f.tell()
    pad = -start % _ALIGN
    f.write(b"\0" * pad)
    offset = start + pad
    f.write(ids.tobytes())
    f.write(np.asarray(scale, np.float32).tobytes())
    rows = 0
    for block in blocks:
        block = np.ascontiguousarray(block, np.int8).reshape(-1, dim)
        f.write(block.tobytes())
        rows += len(block)
    if rows != len(ids) or len(scale) != len(ids):
        raise ValueError(f"{len(ids)} ids, {len(scale)} scales and {rows} code rows: they must agree")
    f.write(_FOOTER.pack(MAGIC, offset, len(ids), dim))
