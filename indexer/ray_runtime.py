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


def ray_verbose() -> bool:
    """Whether Ray's own log lines reach the terminal: ``GROUNDZERO_LOG=debug`` (the CLI's ``-v``) or ``info``."""
    return os.environ.get("GROUNDZERO_LOG", "").strip().lower() in ("debug", "info")


def init_ray(num_cpus: int | None = None) -> None:
    """Start or join Ray once per process; a no-op when already initialised.

    ``num_cpus`` caps a *local* Ray (default: all cores); ignored when joining a cluster.

    Unless :func:`ray_verbose`, Ray's own output stays out of the terminal (it still goes to
    Ray's session logs under ``/tmp/ray/session_*/logs``): its Python loggers only show
    errors, workers' output is not forwarded, and Ray Data's console handler only shows
    errors. Two notices are settled rather than hidden:

    * token authentication: a local Ray is started with ``RAY_AUTH_MODE=token`` set
      explicitly (Ray's own default, which it otherwise announces with a warning); the
      token lives in ``~/.ray/auth_token``. An explicit ``RAY_AUTH_MODE`` is respected.
    * actor restarts: see :func:`embed_actor_options`.
    """
    import ray

    if ray.is_initialized():
        return
    verbose = ray_verbose()
    kwargs: dict = {"include_dashboard": False, "log_to_driver": verbose,
                    "logging_level": logging.INFO if verbose else logging.ERROR}
    if not os.environ.get("RAY_ADDRESS"):
        if "RAY_AUTH_MODE" not in os.environ:
            os.environ["RAY_AUTH_MODE"] = "token"
            from ray._raylet import Config

            Config.initialize("")  # re-read the mode, as ray.init does when it turns token auth on itself
        kwargs["configure_logging"] = True
        if num_cpus:
            kwargs["num_cpus"] = num_cpus
    ray.init(**kwargs)
    import ray.data  # configures Ray Data's logging on import; adjust its console handler after

    for handler in logging.getLogger("ray.data").handlers:
        if type(handler).__name__ == "PlainRayHandler":  # the console; its file handler keeps everything
            handler.setLevel(logging.INFO if verbose else logging.ERROR)


def embed_actor_options() -> dict:
    """Ray options of the embed actors.

    On a cluster (``RAY_ADDRESS``) Ray Data's default stands: an actor lost with its node is
    restarted and its batches retried. On this machine a dead embed actor (out of memory, a
    crashed CUDA context) would die again the same way, so it is not restarted
    (``max_restarts=0``): the run fails with the error, keeping every video committed so far,
    and the next run continues. (Ray warns that restarting an actor whose constructor
    arguments live in the object store may fail; locally that case no longer arises.)
    """
    return {} if os.environ.get("RAY_ADDRESS") else {"max_restarts": 0}


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

    from groundzero.model.backbone import pick_device

    cluster_gpus = float(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0.0
    if requested in ("", "auto") and cluster_gpus > 0:
        return torch.device("cuda")
    if requested.startswith("cuda") and (cluster_gpus > 0 or os.environ.get("RAY_ADDRESS")):
        return torch.device(requested)
    return pick_device(requested)
