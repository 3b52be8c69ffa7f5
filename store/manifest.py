"""The manifest: one JSON file that names a whole committed snapshot.

It ties the data files to the model and parameters that produced them, so a
search with another model, or an index run with other parameters, is refused
instead of silently mixing embeddings from different spaces.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from groundzero.data.proposals import ProposalConfig
from groundzero.errors import IndexMismatchError, IndexNotFoundError
from groundzero.model.identity import ModelIdentity
from groundzero.store.layout import IndexLayout

FORMAT_VERSION = 1


@dataclass(frozen=True)
class IndexParams:
    """Everything that must match for embeddings to be comparable across runs."""

    fps: float
    frame_size: int
    proposals: ProposalConfig
    token_kind: str = "zero-shot-mean"  #: how context tokens were made (a trained head names itself)

    def to_dict(self) -> dict:
        p = self.proposals
        return {
            "fps": self.fps, "frame_size": self.frame_size, "token_kind": self.token_kind,
            "window_sec": p.window_sec, "stride_sec": p.stride_sec,
            "tokens_per_proposal": p.tokens_per_proposal,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "IndexParams":
        return cls(
            fps=float(d["fps"]), frame_size=int(d["frame_size"]), token_kind=str(d["token_kind"]),
            proposals=ProposalConfig(float(d["window_sec"]), float(d["stride_sec"]), int(d["tokens_per_proposal"])),
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

    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION, "version": self.version, "created_at": self.created_at,
            "run_id": self.run_id, "model": self.model.to_dict(), "params": self.params.to_dict(),
            "catalog_file": self.catalog_file, "faiss_file": self.faiss_file,
            "faiss_factory": self.faiss_factory, "n_videos": self.n_videos, "n_tokens": self.n_tokens,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        return cls(
            version=int(d["version"]), created_at=str(d["created_at"]), run_id=str(d["run_id"]),
            model=ModelIdentity.from_dict(d["model"]), params=IndexParams.from_dict(d["params"]),
            catalog_file=str(d["catalog_file"]), faiss_file=d.get("faiss_file"),
            faiss_factory=str(d["faiss_factory"]), n_videos=int(d["n_videos"]),
            n_tokens=int(d["n_tokens"]), extra=dict(d.get("extra", {})),
        )


def read_manifest(layout: IndexLayout) -> Manifest | None:
    """The current snapshot, or None for a directory that has never been committed."""
    try:
        raw = layout.manifest.read_text()
    except FileNotFoundError:
        return None
    d = json.loads(raw)
    if int(d.get("format_version", 0)) != FORMAT_VERSION:
        raise IndexMismatchError(
            f"index {layout.root} has format version {d.get('format_version')}, this GroundZero "
            f"reads version {FORMAT_VERSION}; re-index into a new directory"
        )
    return Manifest.from_dict(d)


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


def write_manifest(layout: IndexLayout, m: Manifest) -> None:
    """Commit: write the versioned copy, then atomically swap ``manifest.json``."""
    text = json.dumps(m.to_dict(), indent=2)
    atomic_write(layout.versioned_manifest(m.version), text)
    atomic_write(layout.manifest, text)


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_model(m: Manifest, identity: ModelIdentity, index_dir: Path) -> None:
    """Refuse to mix embedding spaces: the model must be the one that built the index."""
    if identity.fingerprint != m.model.fingerprint:
        raise IndexMismatchError(
            f"index {index_dir} was built with model {m.model.name!r} "
            f"(weights {m.model.fingerprint[:12]}), but model {identity.name!r} "
            f"(weights {identity.fingerprint[:12]}) is in use; search with --model {m.model.name} "
            "or build a new index with this model"
        )
