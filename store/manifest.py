"""The manifest: one JSON file that names a whole committed snapshot.

It ties the data files to the model and parameters that produced them, so a
search with another model, or an index run with other parameters, is refused
instead of silently mixing embeddings from different spaces.

It also records a SHA-256 content checksum of every file of the snapshot
(``checksums``: index-relative path -> hex digest; the catalog, the FAISS file, the text
index and every per-video Parquet file), so ``groundzero catalog verify`` finds bit rot that
every reader would miss. Files are hashed as they are written (:func:`write_hashed`),
and :func:`write_manifest` gathers the digests at commit: a file written by this
process since is never read back; one kept from the previous snapshot keeps that
snapshot's digest. Manifests written before checksums existed have none
(``checksums`` None); they load as before and ``verify`` says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from groundzero.data.proposals import ProposalConfig
from groundzero.errors import GroundZeroError, IndexMismatchError, IndexNotFoundError
from groundzero.model.identity import ModelIdentity
from groundzero.store.layout import IndexLayout, damaged_manifest, describe, read_error

FORMAT_VERSION = 1


@dataclass(frozen=True)
class IndexParams:
    """Everything that must match for embeddings to be comparable across runs."""

    fps: float
    frame_size: int  #: the square frame side; 0 for a NaFlex model (frames keep their aspect ratio)
    proposals: ProposalConfig
    token_kind: str = "zero-shot-mean"  #: how context tokens were made (a trained head names itself)
    #: a NaFlex model's patch budget per frame (:func:`groundzero.model.naflex.naflex_size`); 0: fixed resolution
    max_patches: int = 0

    def to_dict(self) -> dict:
        p = self.proposals
        d = {
            "fps": self.fps, "frame_size": self.frame_size, "token_kind": self.token_kind,
            "window_sec": p.window_sec, "stride_sec": p.stride_sec,
            "tokens_per_proposal": p.tokens_per_proposal,
        }
        if self.max_patches:
            d["max_patches"] = self.max_patches
        return d

    @classmethod
    def from_dict(cls, d: dict) -> IndexParams:
        return cls(
            fps=float(d["fps"]), frame_size=int(d["frame_size"]), token_kind=str(d["token_kind"]),
            proposals=ProposalConfig(float(d["window_sec"]), float(d["stride_sec"]), int(d["tokens_per_proposal"])),
            max_patches=int(d.get("max_patches", 0)),
        )


@dataclass(frozen=True)
class Manifest:
    version: int
    created_at: str
    run_id: str
    model: ModelIdentity
    params: IndexParams
    catalog_file: str  #: relative path of the catalog snapshot (Parquet)
    faiss_file: str | None  #: relative path of the FAISS index; None while nothing is indexed
    faiss_factory: str
    n_videos: int
    n_tokens: int
    extra: dict = field(default_factory=dict)
    #: index-relative path -> SHA-256 (hex) of every file of the snapshot; None: not recorded (older index)
    checksums: dict[str, str] | None = None
    #: relative path of the full-text index of the text segments (SQLite FTS5, :mod:`groundzero.store.text`);
    #: "" when no video has text segments (and in manifests written before it existed)
    text_file: str = ""

    def to_dict(self) -> dict:
        d = {
            "format_version": FORMAT_VERSION, "version": self.version, "created_at": self.created_at,
            "run_id": self.run_id, "model": self.model.to_dict(), "params": self.params.to_dict(),
            "catalog_file": self.catalog_file, "faiss_file": self.faiss_file,
            "faiss_factory": self.faiss_factory, "n_videos": self.n_videos, "n_tokens": self.n_tokens,
            "text_file": self.text_file, "extra": self.extra,
        }
        if self.checksums is not None:
            d["checksums"] = dict(sorted(self.checksums.items()))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Manifest:
        sums = d.get("checksums")
        if sums is not None and not (isinstance(sums, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in sums.items())):
            raise ValueError("checksums is not a mapping of file -> SHA-256")
        return cls(
            version=int(d["version"]), created_at=str(d["created_at"]), run_id=str(d["run_id"]),
            model=ModelIdentity.from_dict(d["model"]), params=IndexParams.from_dict(d["params"]),
            catalog_file=str(d["catalog_file"]), faiss_file=d.get("faiss_file"),
            faiss_factory=str(d["faiss_factory"]), n_videos=int(d["n_videos"]),
            n_tokens=int(d["n_tokens"]), extra=dict(d.get("extra", {})),
            checksums=None if sums is None else dict(sums), text_file=str(d.get("text_file") or ""),
        )


def parse_manifest(raw: bytes, path: Path, root: Path) -> Manifest:
    """A manifest file's bytes as a :class:`Manifest`.

    Raises IndexDamagedError (naming ``path``) for bytes that are empty, not UTF-8, not JSON or
    lack a field, and IndexMismatchError for another format version.
    """
    problem, d = "", None
    if not raw.strip():
        problem = "empty"
    else:
        try:
            d = json.loads(raw.decode("utf-8"))
        except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            problem = describe(path, e)
        else:
            if not isinstance(d, dict):
                problem = f"not a JSON object but a JSON {type(d).__name__}"
    if problem:
        raise damaged_manifest(path, problem, root)
    if "format_version" not in d:
        raise damaged_manifest(path, "field 'format_version' is missing", root)
    try:
        version = int(d["format_version"])
    except (TypeError, ValueError):
        version = -1
    if version != FORMAT_VERSION:
        raise IndexMismatchError(
            f"index {root} has format version {d.get('format_version')!r}, this GroundZero "
            f"reads version {FORMAT_VERSION}; re-index into a new directory"
        )
    try:
        return Manifest.from_dict(d)
    except GroundZeroError:
        raise
    except Exception as e:  # noqa: BLE001 - KeyError, TypeError, ValueError, AttributeError of a bad field
        what = f"field {e} is missing" if isinstance(e, KeyError) else f"a field is malformed: {e}"
        raise damaged_manifest(path, what, root) from None


def read_manifest(layout: IndexLayout, confine: bool = True) -> Manifest | None:
    """The current snapshot, or None for a directory that has never been committed.

    Raises IndexDamagedError for a ``manifest.json`` that cannot be read or parsed, or (with
    ``confine``) that names a catalog, FAISS or text file outside the index directory.
    """
    try:
        raw = layout.manifest.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise read_error(layout.manifest, e, layout.root) from e
    m = parse_manifest(raw, layout.manifest, layout.root)
    if confine:
        for rel in (m.catalog_file, m.faiss_file, m.text_file):
            if rel:
                layout.path(rel)  # raises for a path that leads outside the index
    return m


def require_manifest(index_dir: str | Path) -> tuple[IndexLayout, Manifest]:
    """Open an existing index for reading; clear errors for a missing or empty one."""
    root = Path(index_dir).expanduser()
    if not root.is_dir():
        raise IndexNotFoundError(
            f"index directory {root} does not exist; build one with `groundzero index ARCHIVE --index {root}`"
        )
    layout = IndexLayout(root)
    m = read_manifest(layout)
    if m is None:
        raise IndexNotFoundError(
            f"{root} holds no committed index (no manifest.json); build one with "
            f"`groundzero index ARCHIVE --index {root}`"
        )
    return layout, m


def write_manifest(layout: IndexLayout, m: Manifest) -> Manifest:
    """Commit: write the versioned copy, then atomically swap ``manifest.json``.

    A manifest without ``checksums`` gets them first (:func:`snapshot_checksums`). Returns the
    manifest as written (with its checksums).
    """
    if m.checksums is None:
        m = replace(m, checksums=snapshot_checksums(layout, m))
    text = json.dumps(m.to_dict(), indent=2)
    atomic_write(layout.versioned_manifest(m.version), text)
    atomic_write(layout.manifest, text)
    with _written_lock:  # recorded now: the next commit takes them from this manifest
        for rel in m.checksums:
            _written.pop(str((layout.root / rel).absolute()), None)
    return m


def atomic_write(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, fsynced, then renamed.

    The temporary file is created with mode 0666 less the umask (not ``mkstemp``'s 0600), so
    manifests and run records can be read by whoever can read the index's other files.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_model(m: Manifest, identity: ModelIdentity, index_dir: Path) -> None:
    """Refuse to mix embedding spaces: the model must be the one that built the index, and an index
    run (whose ``identity`` names a runtime) must embed at the index's precision."""
    if identity.fingerprint != m.model.fingerprint:
        raise IndexMismatchError(
            f"index {index_dir} was built with model {m.model.name!r} "
            f"(weights {m.model.fingerprint[:12]}), but model {identity.name!r} "
            f"(weights {identity.fingerprint[:12]}) is in use; search with --model {m.model.name} "
            "or build a new index with this model"
        )
    # a query-time identity has no runtime: the precision of the query's text tower is the
    # search machine's affair (bf16 and fp32 embeddings agree to cos >= 0.999)
    if identity.runtime and identity.runtime != m.model.runtime:
        raise IndexMismatchError(
            f"index {index_dir} was embedded with runtime {m.model.runtime!r}, but this run would embed "
            f"with {identity.runtime!r}; leave --precision at auto (the index's own) or pass "
            f"--precision {m.model.runtime.removeprefix('torch-')}, or build a new index with this precision"
        )


# -- content checksums ------------------------------------------------------------------


class _HashingWriter:
    """A binary file open for writing that hashes (SHA-256) every byte written through it."""

    def __init__(self, f) -> None:
        self._f = f
        self.sha = hashlib.sha256()
        self.closed = False

    def write(self, b) -> int:
        self.sha.update(b)
        return self._f.write(b)

    def tell(self) -> int:
        return self._f.tell()

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:  # the file itself is closed by write_hashed
        self.closed = True


#: absolute path -> ((inode, size, mtime_ns), sha256) of files this process wrote (write_hashed)
_written: OrderedDict[str, tuple[tuple[int, int, int], str]] = OrderedDict()
_written_lock = threading.Lock()
_WRITTEN_MAX = 100_000  #: entries kept until a manifest records them (a commit every 50 videos needs far fewer)


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


@contextmanager
def write_hashed(path: Path) -> Iterator[_HashingWriter]:
    """Write ``path`` through the yielded file object, hashing the bytes as they go.

    Written under ``.NAME.tmp`` and renamed at the end, so a crash never leaves a half-written
    file under a name a manifest could point to. The digest is remembered for
    :func:`snapshot_checksums` (no second read of the file) and returned by :func:`written_sha256`.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            w = _HashingWriter(f)
            yield w
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # e.g. a full disk: give the space back at once
        raise
    key = str(path.absolute())
    with _written_lock:
        _written[key] = (_stamp(path), w.sha.hexdigest())
        _written.move_to_end(key)
        while len(_written) > _WRITTEN_MAX:
            _written.popitem(last=False)


def remember_written(path: Path) -> str:
    """Hash ``path``, a store file this process has just written without :func:`write_hashed` (the
    SQLite text index), and remember the digest as :func:`write_hashed` does; returns it."""
    path = Path(path)
    stamp = _stamp(path)
    sha = sha256_file(path)  # just written: read back from the page cache
    key = str(path.absolute())
    with _written_lock:
        _written[key] = (stamp, sha)
        _written.move_to_end(key)
        while len(_written) > _WRITTEN_MAX:
            _written.popitem(last=False)
    return sha


def written_sha256(path: Path) -> str | None:
    """The SHA-256 of ``path`` as this process wrote it with :func:`write_hashed`, if the file on
    disk is still that one (same inode, size and mtime); else None."""
    with _written_lock:
        got = _written.get(str(Path(path).absolute()))
    try:
        return got[1] if got is not None and got[0] == _stamp(Path(path)) else None
    except OSError:
        return None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


#: catalog columns naming per-video files (``segments_file`` only in catalogs written since it exists)
VIDEO_FILE_COLUMNS = ("frames_file", "proposals_file", "segments_file")


def catalog_video_files(path: Path, columns: tuple[str, ...] = VIDEO_FILE_COLUMNS) -> set[str]:
    """The per-video files (index-relative) the catalog ``path`` names in ``columns`` (those it has).

    Raises when the catalog cannot be read: guessing "names nothing" would delete live files.
    """
    import pyarrow.parquet as pq

    have = set(pq.read_schema(path).names)
    cols = [c for c in columns if c in have]
    t = pq.read_table(path, columns=cols)
    return {f for c in cols for f in t.column(c).to_pylist() if f}


def snapshot_files(layout: IndexLayout, m: Manifest) -> list[str]:
    """Every file (index-relative) of snapshot ``m``: catalog, FAISS, text index, the per-video files.

    Raises when the catalog cannot be read.
    """
    files = [m.catalog_file] + [f for f in (m.faiss_file, m.text_file) if f]
    return files + sorted(catalog_video_files(layout.path(m.catalog_file)))


def snapshot_checksums(layout: IndexLayout, m: Manifest) -> dict[str, str]:
    """The checksum of every file of ``m``, for its manifest (:func:`write_manifest`, at commit).

    A file written by this process (:func:`write_hashed`) has the digest computed as it was
    written; one the previous snapshot (``manifest.json`` still on disk) already records keeps
    that digest; the catalog and FAISS files are hashed if neither (written just now, so from the
    page cache). Per-video files of older indexes that never had a checksum stay without one:
    hashing them all would read the whole archive's embeddings once.
    """
    try:
        prev = read_manifest(layout, confine=False)
        previous = (prev.checksums or {}) if prev is not None else {}
    except GroundZeroError:
        previous = {}
    out: dict[str, str] = {}
    own = {m.catalog_file, m.faiss_file, m.text_file} - {None, ""}
    for rel in snapshot_files(layout, m):  # names this process wrote into the catalog: no confinement needed
        sha = written_sha256(layout.root / rel) or previous.get(rel)  # a stat only for files written since
        if sha is None and rel in own:
            sha = sha256_file(layout.path(rel))
        if sha is not None:
            out[rel] = sha
    return out
