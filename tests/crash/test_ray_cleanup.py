"""No Ray process of ours outlives a killed ``groundzero index`` for more than a few seconds.

The real CLI starts a local Ray (gcs_server, raylet, its dashboard and runtime-env agents, the
autoscaler monitor, log monitor, workers) and is killed once all of it is up. SIGKILL runs no code
in the driver: Ray's fate-sharing takes gcs_server, raylet and the helpers, and the run's watchdog
(:mod:`groundzero.indexer.ray_runtime`) the raylet's two agents, which would otherwise live on for
a minute. SIGTERM stops the run in order: it records itself aborted and Ray shuts down on exit.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from groundzero.store.layout import IndexLayout
from tests.crash import helpers

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

psutil = pytest.importorskip("psutil")

AGENTS = {"ray::DashboardAgent", "ray::RuntimeEnvAgent"}


def _alive(p: "psutil.Process") -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _name(p: "psutil.Process") -> str:
    try:
        return p.cmdline()[0] if p.cmdline() else p.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "?"


def _refers_to(p: "psutil.Process", session: str) -> bool:
    """Whether ``p`` names the Ray session directory on its command line or holds a file of it open."""
    try:
        return (session in " ".join(p.cmdline())
                or any(f.path.startswith(session + "/") for f in p.open_files()))
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _session_dir(pid: int) -> str | None:
    """The Ray session directory a driver with this pid started (Ray names it after the pid)."""
    found = sorted(Path("/tmp/ray").glob(f"session_*_{pid}"))
    return os.path.realpath(found[-1]) if found else None


def _run_until_ray_is_up(tmp_path, tiny_model_dir) -> tuple[subprocess.Popen, list, str, Path]:
    from tests import media

    archive, index = tmp_path / "archive", tmp_path / "index"
    for i in range(2):  # long enough that decode + embed are still running when it is killed
        media.make_testsrc(archive / f"long{i}.mp4", 900, size=(64, 48), fps=1)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen([sys.executable, "-m", "groundzero.cli.main", "index", str(archive), "--index",
                             str(index), "--model", str(tiny_model_dir), "--device", "cpu", "--json"],
                            cwd=helpers.REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    driver = psutil.Process(proc.pid)

    def ray_busy() -> bool:  # agents up, and a worker running a task or actor of the run (not IDLE)
        names = {_name(c) for c in driver.children(recursive=True)}
        busy = {n for n in names if n.startswith("ray::") and n not in AGENTS | {"ray::IDLE"}}
        return AGENTS <= names and bool(busy) and any(n.endswith("raylet") for n in names)

    helpers.wait_until(ray_busy, proc, "Ray up with its agents and a busy worker", timeout=240)
    time.sleep(0.5)
    assert proc.poll() is None, "the run finished before it could be killed: use longer videos"
    ours = [c for c in driver.children(recursive=True) if _alive(c)]
    session = _session_dir(proc.pid)
    assert session, "no Ray session directory named after the driver"
    return proc, ours, session, index


def _assert_all_gone(ours: list, session: str, since: float, within: float = 10.0) -> float:
    """Every process the run had started, and any process referring to its Ray session, ends
    within ``within`` seconds of ``since``; returns how long it took."""
    while True:
        left = [p for p in ours if _alive(p)]
        if not left:
            left = [p for p in psutil.process_iter() if _alive(p) and _refers_to(p, session)]
        if not left:
            return time.monotonic() - since
        if time.monotonic() - since > within:
            pytest.fail(f"still alive {within:.0f} s after the kill: "
                        + ", ".join(f"{p.pid} {_name(p)}" for p in left))
        time.sleep(0.1)


def test_sigkill_leaves_no_ray_process(tmp_path, tiny_model_dir):
    proc, ours, session, _ = _run_until_ray_is_up(tmp_path, tiny_model_dir)
    names = {_name(p) for p in ours}
    assert AGENTS <= names  # the two that used to stay behind
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGKILL)  # the driver only, as `kill -9 PID` does
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    took = _assert_all_gone(ours, session, t0)
    assert took < 10


def test_sigterm_stops_the_run_in_order(tmp_path, tiny_model_dir):
    proc, ours, session, index = _run_until_ray_is_up(tmp_path, tiny_model_dir)
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "Traceback" not in err and "SIGTERM received" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("error: the run was stopped by SIGTERM;"), err[-3000:]
    _assert_all_gone(ours, session, t0)
    runs = [json.loads(p.read_text()) for p in IndexLayout(index).runs_dir.glob("*.json")]
    assert [(r["status"], r["message"]) for r in runs] == [("aborted", "RunStopped: stopped by SIGTERM")]


def test_sigterm_while_ray_starts_is_ours():
    """ray.init would replace the run's SIGTERM handler with sys.exit(15), and its core would dump a
    stack and abort, and one cutting the core worker's start short crashed the process on exit:
    a SIGTERM at any moment of the start stops the run the same way."""
    code = """if True:
        import os, signal, threading, time
        from groundzero.indexer.ray_runtime import init_ray
        from groundzero.indexer.stops import RunStopped, stop_on_signals
        threading.Timer(%s, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
        try:
            with stop_on_signals():
                init_ray(num_cpus=1)
                time.sleep(30)
        except RunStopped as e:
            print(e)
    """
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    for delay in (1.0, 1.8, 2.2, 2.5, 2.8):  # 2.2-2.8 s: inside the core worker's start on a 2-core machine
        r = subprocess.run([sys.executable, "-c", code % delay], cwd=helpers.REPO, capture_output=True, text=True,
                           env=env, timeout=120, check=False)
        assert r.returncode == 0 and r.stdout.strip() == "stopped by SIGTERM", r.stderr[-3000:]
        assert "SIGTERM received" not in r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]
