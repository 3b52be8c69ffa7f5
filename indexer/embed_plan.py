"""How the embed stage runs on the machine or cluster at hand: precision, actors, threads.

**Precision** (:func:`with_precision`): ``IndexConfig.precision`` made concrete before the
index is opened, so the runtime the manifest records is the one the actors use
(:mod:`groundzero.model.precision`).

**Actors and threads** (:func:`plan_embed`, :func:`embed_sizing`): each CPU embed actor reserves
``threads`` Ray CPUs and runs torch with as many intra-op threads (Ray would otherwise start it
with ``OMP_NUM_THREADS=1``). Unless ``--workers`` / ``--threads`` say otherwise, every node keeps
a quarter of its cores for decoding (none below 4 cores) and gives the rest to embedding, in as
few actors as keep each at most :data:`MAX_THREADS` threads (each actor holds a copy of the model).
Decoding at 1 fps costs far less than embedding a frame (about 0.05 core-seconds per sampled
720p30 H.264 frame against 0.3–3 core-seconds for SigLIP 2 base to So400m in bf16), so the embed
stage gets most cores.

A reservation never exceeds a node's CPUs less one, so a decode task always fits beside an actor;
threads above that oversubscribe the cores, and decoding shares them. On 2 cores, 1 actor x 2
threads indexed 1.2–1.5x faster than 1 x 1 (bench/index_throughput.py, SigLIP 2 base, fp32 and
bf16). On CUDA: one actor per GPU (one thread each; the GPU does the work).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from groundzero.errors import ConfigError
from groundzero.model.precision import cpu_has_fast_bf16, index_precision
from groundzero.store.layout import IndexLayout
from groundzero.store.manifest import read_manifest

if TYPE_CHECKING:
    import torch

    from groundzero.indexer.config import IndexConfig

log = logging.getLogger(__name__)

#: most torch threads one CPU actor gets by default: past this, another actor scales better
MAX_THREADS = 16


def with_precision(cfg: IndexConfig, root: Path) -> IndexConfig:
    """``cfg`` with ``precision`` concrete (fp32 | bf16): the index's recorded precision for
    ``auto`` when the index exists, else bf16 on CUDA and on CPUs with native bf16, else fp32.

    The device is judged from this machine (``cfg.device``; "auto": CUDA when torch sees it). A
    driver joining a cluster of GPU workers from a CPU-only machine should pass ``--precision bf16``.
    """
    m = read_manifest(IndexLayout(root))
    fast_cpu = cpu_has_fast_bf16()
    precision = index_precision(cfg.precision, _device_type(cfg.device), m.model.runtime if m else None, fast_cpu)
    if cfg.precision == "auto":
        log.info("precision auto -> %s (%s)", precision, "the index's" if m else
                 f"device {cfg.device}, CPU {'with' if fast_cpu else 'without'} native bf16")
    return replace(cfg, precision=precision)


def _device_type(device: str) -> str:
    if device.startswith("cuda"):
        return "cuda"
    if device in ("", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu"


@dataclass(frozen=True)
class EmbedSizing:
    """The embed stage's actor pool."""

    actors: int  #: actors in the pool
    threads: int  #: torch intra-op threads per actor
    cpus: float  #: Ray CPUs each actor reserves (``threads``, capped so a decode task still fits)


def decode_cores(node_cpus: int) -> int:
    """Cores a node keeps for decode tasks alone: a quarter (below 4 cores none: decoding shares them).

    >>> [decode_cores(n) for n in (1, 2, 4, 8, 16, 64)]
    [0, 0, 1, 2, 4, 16]
    """
    return node_cpus // 4


def plan_embed(device_type: str, node_cpus: list[int], gpus: int,
               actors: int | None = None, threads: int | None = None) -> EmbedSizing:
    """Size the embed actor pool.

    Args:
        device_type: "cuda" or "cpu", where the image tower runs.
        node_cpus: CPUs of each alive Ray node (one entry for a local Ray); empty while an
            autoscaling cluster has none yet.
        gpus: GPUs in the cluster.
        actors: ``--workers``; None: sized here.
        threads: ``--threads``; None: sized here.

    >>> plan_embed("cpu", [2], 0)
    EmbedSizing(actors=1, threads=2, cpus=1)
    >>> plan_embed("cpu", [16], 0), plan_embed("cpu", [32, 32], 0)
    (EmbedSizing(actors=1, threads=12, cpus=12), EmbedSizing(actors=4, threads=12, cpus=12))
    >>> plan_embed("cuda", [16], 4), plan_embed("cpu", [2], 0, threads=1), plan_embed("cpu", [2], 0, actors=2)
    (EmbedSizing(actors=4, threads=1, cpus=1), EmbedSizing(actors=1, threads=1, cpus=1), \
EmbedSizing(actors=2, threads=1, cpus=0.5))
    """
    for name, value in (("embed_actors", actors), ("embed_threads", threads)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}", field=name)
    room = [max(0, n - 1) for n in node_cpus] or [1]  # per node: CPUs actors may reserve beside a decode task
    if device_type == "cuda":
        threads = threads or 1
        actors = actors or max(1, gpus)
        return EmbedSizing(actors, threads, _reservation(min(threads, max(room), sum(room) / actors)))
    spare = [max(1, n - decode_cores(n)) for n in node_cpus] or [1]  # per node: cores for embedding
    if threads is None:
        per_node = (s // math.ceil(s / MAX_THREADS) for s in spare)
        threads = min(per_node) if actors is None else max(1, min(min(spare), sum(spare) // actors))
    if actors is not None:  # as many as asked for, their reservations shrunk to fit beside decoding
        return EmbedSizing(actors, threads, _reservation(min(threads, max(room), sum(room) / actors)))
    cpus = _reservation(min(threads, max(room)))
    actors = sum(int(min(s // threads, r // cpus if cpus else s // threads)) for s, r in zip(spare, room))
    return EmbedSizing(max(1, actors), threads, cpus)


def _reservation(cpus: float) -> float:
    """Ray CPUs as Ray takes them: whole above 1, a fraction below (4 decimals).

    >>> _reservation(12.0), _reservation(0.5), _reservation(2.5)
    (12, 0.5, 2)
    """
    return int(cpus) if cpus >= 1 or cpus == 0 else round(cpus, 4)


def embed_sizing(device: torch.device, actors: int | None, threads: int | None) -> EmbedSizing:
    """:func:`plan_embed` for the Ray this process started or joined (call after ``init_ray``)."""
    import ray

    nodes = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes()
             if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= 1]
    gpus = int(ray.cluster_resources().get("GPU", 0))
    sizing = plan_embed(device.type, nodes, gpus, actors, threads)
    log.info("embed stage: %d actor(s) x %d thread(s), %g Ray CPU(s) each (nodes' CPUs %s, %d GPUs%s)",
             sizing.actors, sizing.threads, sizing.cpus, nodes, gpus,
             ", joined cluster" if os.environ.get("RAY_ADDRESS") else "")
    return sizing
