"""Starting (or joining) Ray, and making sure a local Ray dies with the run that started it.

``ray.init()`` honours ``RAY_ADDRESS``: unset, it starts a local Ray on this
machine; set (``ray://head:10001`` or ``auto``), it joins that cluster, whose
workers must have GroundZero installed (see infra/).

**A local Ray does not outlive its run.** Ray shuts its processes down when the driver
exits (``atexit``), and the CLI turns SIGTERM into an orderly stop
(:func:`groundzero.indexer.stops.stop_on_signals`; :func:`init_ray` keeps that handler
rather than Ray's ``sys.exit``). A driver killed outright (SIGKILL, the OOM killer) runs no
code, and Ray's own fate-sharing covers only part of it: ``gcs_server``, ``raylet`` and the
Python helpers the driver started die with it (``PR_SET_PDEATHSIG``), workers notice their raylet
is gone within a second or two, but the raylet's two agents (``ray::DashboardAgent``,
``ray::RuntimeEnvAgent``), after noticing within a second, block for 60 s trying to report
the raylet's unexpected death to the GCS, which died too (``publish_error_to_driver``'s fixed
timeout, Ray 2.60; no setting shortens it). So a local Ray is started with a *watchdog*: a small
process in its own session that holds the read end of a pipe whose write end only the driver
has. The kernel closes it however the driver ends; the watchdog then kills, with SIGKILL,
whatever is left of that Ray: every process started with this driver's mark in its environment
(:data:`OWNER_ENV`, set around ``ray.init`` and inherited by everything Ray starts), and every
``ray::`` process holding a file of the driver's Ray session directory open (the agents rename
themselves, which overwrites the environment that ``/proc`` shows). Linux only (``/proc``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from groundzero.indexer.stops import uninterrupted

if TYPE_CHECKING:
    import torch


def ray_verbose() -> bool:
    """Whether Ray's own log lines reach the terminal: ``GROUNDZERO_LOG=debug`` (the CLI's ``-v``) or ``info``."""
    return os.environ.get("GROUNDZERO_LOG", "").strip().lower() in ("debug", "info")


def init_ray(num_cpus: int | None = None, gpu: int | None = None) -> None:
    """Start or join Ray once per process; a no-op when already initialised.

    ``num_cpus`` caps a *local* Ray (default: all cores); ignored when joining a cluster.
    ``gpu`` (``--device cuda:N``): a local Ray sees only that GPU (:func:`visible_devices`), so
    the embed actor Ray places on "a GPU" runs on GPU N; ignored when joining a cluster.

    Unless :func:`ray_verbose`, Ray's own output stays out of the terminal (it still goes to
    Ray's session logs under ``/tmp/ray/session_*/logs``): its Python loggers only show
    errors, workers' output is not forwarded, and Ray Data's console handler only shows
    errors. Two notices are settled rather than hidden:

    * token authentication: a local Ray is started with ``RAY_AUTH_MODE=token`` set
      explicitly (Ray's own default, which it otherwise announces with a warning); the
      token lives in ``~/.ray/auth_token``. An explicit ``RAY_AUTH_MODE`` is respected.
    * actor restarts: see :func:`embed_actor_options`.

    A local Ray is started marked for, and watched by, this driver's watchdog (module docstring);
    a SIGTERM handler installed before (the CLI's) stays in place, during ``ray.init`` too, and
    a stop signal arriving while Ray starts takes effect once it has started (a few seconds):
    interrupted, ``ray.init`` would leave a half-built core worker that crashes the process on exit.
    """
    import ray

    if ray.is_initialized():
        return
    local = not os.environ.get("RAY_ADDRESS")
    verbose = ray_verbose()
    kwargs: dict = {"include_dashboard": False, "log_to_driver": verbose,
                    "logging_level": logging.INFO if verbose else logging.ERROR}
    if local:
        if "RAY_AUTH_MODE" not in os.environ:
            os.environ["RAY_AUTH_MODE"] = "token"
            from ray._raylet import Config

            Config.initialize("")  # re-read the mode, as ray.init does when it turns token auth on itself
        kwargs["configure_logging"] = True
        if num_cpus:
            kwargs["num_cpus"] = num_cpus
        if gpu is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = visible_devices(gpu, os.environ.get("CUDA_VISIBLE_DEVICES"))
    main = threading.current_thread() is threading.main_thread()
    on_term = signal.getsignal(signal.SIGTERM) if main else None
    # a stop signal cutting ray.init short would leave its core worker half built, and the
    # process would crash on exit: it takes effect once Ray has started (and is watched)
    with uninterrupted():
        with _marked(_watchdog_token() if local else None), _keeping_sigterm_handler(callable(on_term)):
            ray.init(**kwargs)
        if callable(on_term):
            signal.signal(signal.SIGTERM, on_term)
        if local:
            _watch_session()
    import ray.data  # configures Ray Data's logging on import; adjust its console handler after

    for handler in logging.getLogger("ray.data").handlers:
        if type(handler).__name__ == "PlainRayHandler":  # the console; its file handler keeps everything
            handler.setLevel(logging.INFO if verbose else logging.ERROR)


@contextmanager
def _keeping_sigterm_handler(keep: bool) -> Iterator[None]:
    """With ``keep``, the SIGTERM handler in place stays through ``ray.init``, which would replace
    it with ``sys.exit(15)`` and put its core's crash reporter in front of it (absl's failure
    signal handler, which prints a stack dump and aborts). Ray 2.60's switches for both are
    private; where they are missing, the handler is still put back after ``ray.init``."""
    import ray._private.ray_constants as constants
    from ray._private import utils

    if not keep or not hasattr(utils, "set_sigterm_handler"):
        yield
        return
    saved = constants.__dict__.get("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", False), utils.set_sigterm_handler
    constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True  # read by the driver's core worker as it starts
    utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER, utils.set_sigterm_handler = saved


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


def visible_devices(gpu: int, current: str | None) -> str:
    """``CUDA_VISIBLE_DEVICES`` that leaves only torch's ``cuda:gpu`` visible.

    >>> visible_devices(1, None), visible_devices(1, "4,6,7")
    ('1', '6')
    """
    ids = [s.strip() for s in current.split(",") if s.strip()] if current else None
    if ids is None:
        return str(gpu)
    if not 0 <= gpu < len(ids):
        from groundzero.errors import ConfigError

        raise ConfigError(f"device cuda:{gpu} asked for, but CUDA_VISIBLE_DEVICES={current} shows {len(ids)} GPUs",
                          field="device")
    return ids[gpu]


def gpu_index(device: str) -> int | None:
    """N of ``cuda:N``; None for anything else.

    >>> gpu_index("cuda:2"), gpu_index("cuda"), gpu_index("cpu")
    (2, None, None)
    """
    return int(device.split(":", 1)[1]) if device.startswith("cuda:") and device[5:].isdigit() else None


def actor_device(requested: str, assigned_gpus: list) -> str:
    """The device inside an embed actor: Ray gives the actor its GPU as the only visible one, so an
    explicit ``cuda:N`` becomes ``cuda`` there; anything else is kept.

    >>> actor_device("cuda:1", [1]), actor_device("cuda:1", []), actor_device("cpu", [0])
    ('cuda', 'cuda:1', 'cpu')
    """
    return "cuda" if requested.startswith("cuda") and assigned_gpus else requested


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


# -- the watchdog of a local Ray (see the module docstring) ------------------------------------

#: environment variable marking the processes of one driver's local Ray (value: that driver's token)
OWNER_ENV = "GROUNDZERO_RAY_OWNER"
_watchdog: subprocess.Popen | None = None
_token = ""


def _watchdog_token() -> str | None:
    """Start this driver's watchdog once; returns the mark for its Ray's processes (None: no watchdog)."""
    global _watchdog, _token
    if _watchdog is not None and _watchdog.poll() is None:
        return _token
    if not sys.platform.startswith("linux"):
        return None
    token = f"{os.getpid()}-{os.urandom(6).hex()}"
    env = {k: v for k, v in os.environ.items() if k != OWNER_ENV}
    try:
        _watchdog = subprocess.Popen(
            [sys.executable, "-c", f"from groundzero.indexer.ray_runtime import watch; watch({token!r})"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            start_new_session=True)  # out of the driver's process group: a signal to the group spares it
    except OSError as e:
        logging.getLogger(__name__).warning("no watchdog for the local Ray (%s): if this process is "
                                            "killed, Ray's agents outlive it by up to a minute", e)
        return None
    _token = token
    return token


@contextmanager
def _marked(token: str | None) -> Iterator[None]:
    """``OWNER_ENV=token`` in the environment while Ray starts its processes (they inherit it)."""
    if token is None:
        yield
        return
    before = os.environ.get(OWNER_ENV)
    os.environ[OWNER_ENV] = token
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(OWNER_ENV, None)
        else:
            os.environ[OWNER_ENV] = before


def _watch_session() -> None:
    """Tell the watchdog the session directory of the Ray just started."""
    if _watchdog is None or _watchdog.stdin is None:
        return
    try:
        import ray._private.worker as ray_worker  # private, but the only way to the session directory

        session = os.path.realpath(ray_worker._global_node.get_session_dir_path())
        _watchdog.stdin.write(session.encode() + b"\n")
        _watchdog.stdin.flush()
    except Exception as e:  # noqa: BLE001 - the environment mark still covers all but the agents
        logging.getLogger(__name__).debug("watchdog: no session directory (%s)", e)


def watch(token: str) -> None:
    """The watchdog process: read session directories from stdin until it closes (the driver
    ended, however), then kill what is left of that driver's Ray and exit."""
    sessions = [line.decode(errors="replace").strip() for line in sys.stdin.buffer]
    reap(token, [s for s in sessions if s])


def reap(token: str, sessions: list[str], timeout: float = 10.0) -> list[int]:
    """SIGKILL every process of the Ray marked ``token`` (or a ``ray::`` process with a file of
    one of ``sessions`` open) until none is left or ``timeout`` passes; returns the pids killed."""
    killed: list[int] = []
    deadline, quiet = time.monotonic() + timeout, 0
    while time.monotonic() < deadline and quiet < 2:  # two empty looks in a row: one might race a fork
        pids = ray_processes(token, sessions)
        quiet = 0 if pids else quiet + 1
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
        time.sleep(0.1)
    return killed


def ray_processes(token: str, sessions: list[str]) -> list[int]:
    """Live processes (zombies excluded) of the local Ray marked ``token`` (see module docstring)."""
    mark = f"{OWNER_ENV}={token}".encode()
    prefixes = tuple(os.path.join(s, "") for s in sessions)
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        proc = f"/proc/{name}"
        try:
            with open(f"{proc}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                    continue
            with open(f"{proc}/environ", "rb") as f:
                ours = mark in f.read().split(b"\0")
            if not ours and prefixes:
                with open(f"{proc}/cmdline", "rb") as f:
                    ours = f.read().startswith(b"ray::") and _has_open(proc, prefixes)
        except (OSError, IndexError):  # gone meanwhile, or not ours to read
            continue
        if ours:
            out.append(int(name))
    return out


def _has_open(proc: str, prefixes: tuple[str, ...]) -> bool:
    """Whether process ``proc`` (``/proc/PID``) has a file under one of ``prefixes`` open."""
    for fd in os.listdir(f"{proc}/fd"):
        try:
            if os.readlink(f"{proc}/fd/{fd}").startswith(prefixes):
                return True
        except OSError:  # closed meanwhile: the process keeps opening and closing sockets
            continue
    return False
