"""Paths inside an index directory (see :mod:`groundzero.store`), and the one error every
damaged, missing or out-of-place index file becomes (:class:`~groundzero.errors.IndexDamagedError`).

Every file path a manifest or catalog names goes through :meth:`IndexLayout.path`, which
refuses one that leads outside the index directory (``../../etc/passwd``, an absolute path,
a symlink out): a tampered-with manifest cannot make a reader open another file.
"""

from __future__ import annotations

import errno
import functools
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from groundzero.errors import IndexDamagedError

#: what reading a damaged file raises: the OS, pyarrow (its errors subclass these), FAISS (RuntimeError),
#: json; not MemoryError
READ_ERRORS = (OSError, ValueError, RuntimeError, TypeError, KeyError, IndexError, AttributeError, EOFError)


@dataclass(frozen=True)
class IndexLayout:
    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def manifests_dir(self) -> Path:
        return self.root / "manifests"

    @property
    def videos_dir(self) -> Path:
        return self.root / "videos"

    @property
    def vectors_dir(self) -> Path:
        return self.root / "vectors"

    @property
    def catalog_dir(self) -> Path:
        return self.root / "catalog"

    @property
    def runs_dir(self) -> Path:
        return self.root / "catalog" / "runs"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def versioned_manifest(self, version: int) -> Path:
        return self.manifests_dir / f"{version:06d}.json"

    def faiss_file(self, version: int) -> str:
        return f"vectors/context-{version:06d}.faiss"

    def text_file(self, version: int) -> str:
        """The full-text index of the text segments (SQLite FTS5, :mod:`groundzero.store.text`)."""
        return f"vectors/text-{version:06d}.sqlite"

    def catalog_file(self, version: int) -> str:
        return f"catalog/videos-{version:06d}.parquet"

    def make_dirs(self) -> None:
        for d in (self.manifests_dir, self.videos_dir, self.vectors_dir, self.runs_dir):
            d.mkdir(parents=True, exist_ok=True)

    def path(self, rel: str) -> Path:
        """The file ``rel`` (index-relative, as a manifest or catalog names it), confined to the index.

        Raises IndexDamagedError for a name that is empty, absolute, climbs out with ``..``, or
        resolves (through symlinks) outside the index directory.
        """
        if not isinstance(rel, str) or not rel or "\x00" in rel:
            raise self._outside(rel)
        p = PurePosixPath(rel)
        if p.is_absolute() or ".." in p.parts or "\\" in rel:
            raise self._outside(rel)
        full = self.root / rel
        try:
            root = _resolved_dir(self.root)
            # the file's folder (resolved once per folder), then the file itself only if it is a link
            inside = _resolved_dir(full.parent).is_relative_to(root) and \
                (not full.is_symlink() or full.resolve().is_relative_to(root))
        except (OSError, RuntimeError):  # a symlink loop
            inside = False
        if not inside:
            raise self._outside(rel)
        return full

    def _outside(self, rel: object) -> IndexDamagedError:
        return IndexDamagedError(
            f"index {self.root} names the file {rel!r}, which is not a file inside the index directory: "
            f"its manifest or catalog was tampered with or is damaged; nothing outside {self.root} is ever "
            f"read. Run `groundzero catalog verify --index {self.root}`, then restore the index from a "
            "backup or re-index into a new --index directory", path=str(rel))

    @contextmanager
    def reading(self, rel: str | Path, also: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
        """Turn a failure to read index file ``rel`` inside the block (:data:`READ_ERRORS`, and the
        exception types ``also``, e.g. ``duckdb.Error``) into IndexDamagedError naming it."""
        try:
            yield
        except IndexDamagedError:
            raise
        except (*READ_ERRORS, *also) as e:
            path = rel if isinstance(rel, Path) else self.root / rel
            raise read_error(path, e, self.root) from e


@functools.lru_cache(maxsize=1024)
def _resolved_dir(d: Path) -> Path:
    """``d`` with symlinks resolved (cached: the store's files lie in a handful of folders)."""
    return d.resolve()


def index_root_of(path: Path) -> Path | None:
    """The index directory a store file lies in (the nearest parent holding ``manifest.json`` or
    ``manifests/``), for messages; None when there is none."""
    for d in list(Path(path).parents)[:3]:
        if (d / "manifest.json").exists() or (d / "manifests").is_dir():
            return d
    return None


def damaged(path: Path | str, problem: str, root: Path | None = None, *, missing: bool = False
            ) -> IndexDamagedError:
    """``index file PATH is damaged (PROBLEM); run verify, then re-index or restore``."""
    root = root or index_root_of(Path(path))
    index = str(root) if root else "INDEX"
    state = "is missing" if missing else "is damaged"
    return IndexDamagedError(
        f"index file {path} {state} ({problem}); run `groundzero catalog verify --index {index}` to list "
        "every damaged file, then re-index into a new --index directory or restore the index from a backup",
        path=str(path), missing=missing)


def damaged_manifest(path: Path, problem: str, root: Path) -> IndexDamagedError:
    """The manifest itself cannot be read: the way back is a previous snapshot's manifest."""
    return IndexDamagedError(
        f"index manifest {path} is damaged ({problem}); run `groundzero catalog verify --index {root}`, then "
        f"restore the previous snapshot (copy the newest manifest in {root / 'manifests'} that verify accepts "
        "over manifest.json) or re-index into a new --index directory", path=str(path))


def read_error(path: Path | str, e: BaseException, root: Path | None = None) -> IndexDamagedError:
    """The IndexDamagedError for exception ``e`` raised while reading index file ``path``."""
    if isinstance(e, IndexDamagedError):
        return e
    if isinstance(e, FileNotFoundError) or (isinstance(e, OSError) and e.errno == errno.ENOENT) \
            or (not Path(path).exists() and not isinstance(e, PermissionError)):
        return damaged(path, "named by the snapshot, but not on disk", root, missing=True)
    if isinstance(e, PermissionError):
        return IndexDamagedError(
            f"index file {path} cannot be read ({e.strerror or e}): give the user running GroundZero read "
            "access to the index's files (older versions wrote manifests and run records readable by their "
            f"owner only: e.g. `chmod -R g+rX {root or Path(path).parent}` for a group both users are in)",
            path=str(path))
    return damaged(path, describe(path, e), root)


def describe(path: Path | str, e: BaseException) -> str:
    """What is wrong with a file a reader choked on, in a few words."""
    try:
        size = Path(path).stat().st_size
    except OSError:
        size = -1
    if size == 0:
        return "empty"
    if isinstance(e, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(e, json.JSONDecodeError):
        return f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    first = re.sub(r"^Error in .*? at \S+:\d+: (Error: )?", "", first)  # FAISS: drop the C++ location
    first = first if len(first) <= 200 else first[:200] + "..."
    if "checksum" in first.lower() or "crc" in first.lower():
        return f"its bytes changed since they were written (bit rot?): {first}"
    return f"truncated, or not the file it should be: {first}"
