"""Starting (or joining) Ray.

``ray.init()`` honours ``RAY_ADDRESS``: unset, it starts a local Ray on this
machine; set (``ray://head:10001`` or ``auto``), it joins that cluster, whose
workers must have GroundZero installed (see infra/).
"""

from __future__ import annotations

import logging
import os


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
