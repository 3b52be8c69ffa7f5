"""Starting (or joining) Ray.

``ray.init()`` honours ``RAY_ADDRESS``: unset, it starts a local Ray on this
machine; set (``ray://head:10001`` or ``auto``), it joins that cluster, whose
workers must have GroundZero installed (see infra/).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def init_ray(num_cpus: int | None = None) -> None:
    """Start or join Ray once per process; a no-op when already initialised.

    ``num_cpus`` caps a *local* Ray (default: all cores); ignored when joining a cluster.
    """
    import ray

    if ray.is_initialized():
        return
    kwargs: dict = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": True}
    if not os.environ.get("RAY_ADDRESS"):
        # Local Ray: keep its worker logs out of the user's terminal.
        kwargs["configure_logging"] = True
        if num_cpus:
            kwargs["num_cpus"] = num_cpus
    ray.init(**kwargs)


def embed_device(requested: str = "auto") -> torch.device:
    """The device the embed actors use, decided in the driver after :func:`init_ray`.

    On a cluster the driver often runs on a CPU-only head node while GPU workers
    embed, so the driver's own ``torch.cuda`` says nothing: "auto" means CUDA when
    this machine *or the Ray cluster* has GPUs, and an explicit ``cuda`` is
    trusted when joining a cluster (``RAY_ADDRESS``), whose autoscaler may add
    GPU nodes only once actors ask for them.
    """
    import ray
    import torch

    from core.model.backbone import pick_device

    cluster_gpus = float(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0.0
    if requested in ("", "auto") and cluster_gpus > 0:
        return torch.device("cuda")
    if requested.startswith("cuda") and (cluster_gpus > 0 or os.environ.get("RAY_ADDRESS")):
        return torch.device(requested)
    return pick_device(requested)
