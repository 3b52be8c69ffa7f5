"""Shared fixtures: a tiny random SigLIP saved and loaded through the production
loader, and one local Ray per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Offline and quiet by default: no test may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random tiny SigLIP (32x32 images, 32-d embeddings) written by save_pretrained."""
    from groundzero.model.tiny import TinySiglipConfig, build_tiny_siglip

    return build_tiny_siglip(tmp_path_factory.mktemp("models") / "tiny-siglip", TinySiglipConfig())


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (starting one costs seconds)."""
    import ray

    from groundzero.indexer.ray_runtime import init_ray

    os.environ.pop("RAY_ADDRESS", None)
    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()
