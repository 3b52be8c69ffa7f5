"""Paths inside an index directory (see :mod:`groundzero.store`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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

    def catalog_file(self, version: int) -> str:
        return f"catalog/videos-{version:06d}.parquet"

    def make_dirs(self) -> None:
        for d in (self.manifests_dir, self.videos_dir, self.vectors_dir, self.runs_dir):
            d.mkdir(parents=True, exist_ok=True)

    def path(self, rel: str) -> Path:
        return self.root / rel
