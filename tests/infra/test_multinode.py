"""``groundzero index`` on a real two-node Ray cluster (``RAY_ADDRESS``) builds the index a local run builds.

The cluster is two ``ray start`` processes on this machine, a head and a worker node of one CPU each,
as infra/ describes a cluster (a driver joining by address, workers with the package installed). It is
kept apart from every other Ray here: its own short ``--temp-dir`` (``ray start`` writes its address
file there, so a plain ``ray.init()`` or ``RAY_ADDRESS=auto`` elsewhere does not find it in
``/tmp/ray``), a free GCS port, its own auth token, and every process it starts carries a mark in its
environment (:data:`~groundzero.indexer.ray_runtime.OWNER_ENV`) by which teardown kills exactly
those. ``ray stop`` is never used: it stops every Ray on the machine, other tests' included.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from groundzero.indexer.ray_runtime import OWNER_ENV, ray_processes, reap
from groundzero.store.catalog import connect
from groundzero.store.manifest import require_manifest
from groundzero.store.tables import read_frames, read_proposals
from tests import media

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's ray and groundzero scripts
VIDEOS = {"a.mp4": [("red", 4), ("blue", 4)], "sub/b.mp4": [("green", 5), ("white", 3)], "c.mp4": [("black", 6)]}
RAY_VARS = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", OWNER_ENV)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in RAY_VARS}


class Cluster:
    """A head and one worker node started with ``ray start``; :meth:`stop` kills what they started."""

    def __init__(self) -> None:
        # short and under /tmp: Ray's Unix sockets live in it and their paths may not exceed 107 bytes
        self.temp_dir = os.path.realpath(tempfile.mkdtemp(prefix="gzmn-", dir="/tmp"))
        self.address = f"127.0.0.1:{_free_port()}"
        self.mark = f"multinode-{os.getpid()}-{secrets.token_hex(4)}"
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}  # not ~/.ray's token
        self.start_sec: dict[str, float] = {}

    def _ray_start(self, name: str, *args: str) -> None:
        env = {**_base_env(), **self.auth, OWNER_ENV: self.mark}
        cmd = [str(BIN / "ray"), "start", "--num-cpus=1", "--disable-usage-stats", f"--temp-dir={self.temp_dir}",
               "--object-store-memory=100000000", f"--dashboard-agent-listen-port={_free_port()}", *args]
        t0 = time.monotonic()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=90, check=False)
        self.start_sec[name] = time.monotonic() - t0
        assert r.returncode == 0, f"ray start ({name}) failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"

    def start(self) -> None:
        port = self.address.rsplit(":", 1)[1]
        self._ray_start("head", "--head", f"--port={port}", "--include-dashboard=false")
        self._ray_start("worker", f"--address={self.address}")

    def driver_env(self) -> dict[str, str]:
        """The environment of a process joining this cluster."""
        return {**_base_env(), **self.auth, "RAY_ADDRESS": self.address}

    def stop(self) -> list[int]:
        """SIGKILL every process of this cluster (marked, or a ``ray::`` process with one of its files
        open); returns those left after (none expected)."""
        reap(self.mark, [self.temp_dir], timeout=20)
        left = ray_processes(self.mark, [self.temp_dir])
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return left

    @property
    def logs(self) -> Path:
        return Path(self.temp_dir) / "session_latest" / "logs"


def _alive_nodes(cluster: Cluster, want: int, timeout: float = 30.0) -> list[dict]:
    """``ray.nodes()`` of the cluster once ``want`` are alive, asked from a separate driver (this
    pytest process may hold the session-wide local Ray)."""
    code = ("import json, time, ray\n"
            "ray.init(logging_level='ERROR', include_dashboard=False)\n"
            f"deadline = time.monotonic() + {timeout}\n"
            "while True:\n"
            "    nodes = [{'id': n['NodeID'], 'cpu': n['Resources'].get('CPU', 0)} for n in ray.nodes() if n['Alive']]\n"
            f"    if len(nodes) >= {want} or time.monotonic() > deadline:\n"
            "        break\n"
            "    time.sleep(0.5)\n"
            "print(json.dumps(nodes))\n")
    r = subprocess.run([sys.executable, "-c", code], env=cluster.driver_env(), capture_output=True, text=True, check=False,
                       timeout=timeout + 60)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _decode_nodes(logs: Path) -> Counter:
    """Decode tasks run per node id, read from the workers' logs: Ray writes ``:task_name:NAME`` into
    a worker's ``worker-<id>-*.out`` as it starts a task, and the worker's core log names its node."""
    counts: Counter = Counter()
    for out in logs.glob("worker-*.out"):
        worker_id = out.name.split("-")[1]
        n = sum(1 for line in out.read_text(errors="replace").splitlines() if line == ":task_name:MapBatches(decode_rows)")
        if not n:
            continue
        core = next(logs.glob(f"python-core-worker-{worker_id}_*.log"))
        node = re.search(r"node_id=([0-9a-f]+)", core.read_text(errors="replace"))
        counts[node.group(1) if node else "?"] += n
    return counts


def _index_cmd(archive: Path, index: Path, model: Path) -> list[str]:
    return [str(BIN / "groundzero"), "index", str(archive), "--index", str(index), "--model", str(model),
            "--device", "cpu", "--json"]


def _contents(index: Path) -> dict[str, dict]:
    """Per video (by path in the archive): catalog row, frames and proposals."""
    layout, m = require_manifest(index)
    con = connect(layout, m)
    rows = con.execute("SELECT rel_path, video_id, status, n_frames, n_proposals, duration_sec, frames_file, "
                       "proposals_file FROM videos ORDER BY rel_path").fetchall()
    out = {}
    for rel, vid, status, n_frames, n_proposals, duration, frames_file, proposals_file in rows:
        ts, emb = read_frames(layout.path(frames_file))
        out[rel] = {"row": (vid, status, n_frames, n_proposals, round(duration, 3)), "ts": ts, "emb": emb,
                    "proposals": read_proposals(layout.path(proposals_file))}
    return out


@pytest.fixture
def cluster():
    c = Cluster()
    try:
        yield c
    finally:
        left = c.stop()
        assert not left, f"processes of the test cluster still alive after teardown: {left}"


def test_index_on_two_node_cluster_equals_local_run(tmp_path, tiny_model_dir, cluster):
    archive = tmp_path / "archive"
    for rel, segs in VIDEOS.items():
        media.make_color_segments(archive / rel, segs)
    env_info = {"GROUNDZERO_LOG": "info"}  # the embed stage's sizing line goes to stderr

    t0 = time.monotonic()
    local = subprocess.Popen(_index_cmd(archive, tmp_path / "local", tiny_model_dir), cwd=REPO,
                             env={**_base_env(), **env_info}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:  # the local run overlaps the cluster's start, which is mostly waiting
        cluster.start()
        nodes = _alive_nodes(cluster, 2)
        _, local_err = local.communicate(timeout=240)
    finally:
        if local.poll() is None:
            local.kill()
            local.wait()
    local_sec = time.monotonic() - t0
    assert local.returncode == 0, local_err[-3000:]
    assert len(nodes) == 2 and [n["cpu"] for n in nodes] == [1, 1], nodes

    t1 = time.monotonic()
    r = subprocess.run(_index_cmd(archive, tmp_path / "cluster", tiny_model_dir), cwd=REPO,
                       env={**cluster.driver_env(), **env_info}, capture_output=True, text=True, timeout=240, check=False)
    cluster_sec = time.monotonic() - t1
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout)
    assert report["run"]["n_indexed"] == len(VIDEOS) and report["run"]["n_failed"] == 0

    # the embed stage was sized from both nodes: one actor per node, one thread each
    assert "embed stage: 2 actor(s) x 1 thread(s)" in r.stderr and "nodes' CPUs [1, 1]" in r.stderr, r.stderr[-3000:]
    assert "joined cluster" in r.stderr
    # and the work ran on both: decode tasks on each node (Ray Data spreads tasks across nodes)
    per_node = _decode_nodes(cluster.logs)
    assert sum(per_node.values()) == len(VIDEOS), per_node
    assert set(per_node) == {n["id"] for n in nodes}, (per_node, nodes)

    got, want = _contents(tmp_path / "cluster"), _contents(tmp_path / "local")
    assert sorted(got) == sorted(want) == sorted(VIDEOS)
    for rel in VIDEOS:
        g, w = got[rel], want[rel]
        assert g["row"] == w["row"], rel
        np.testing.assert_array_equal(g["ts"], w["ts"])
        np.testing.assert_allclose(g["emb"], w["emb"], atol=1e-5, rtol=0)
        assert sorted(g["proposals"]) == sorted(w["proposals"])
        for col, values in w["proposals"].items():
            if col == "tokens":
                np.testing.assert_allclose(g["proposals"][col], values, atol=1e-5, rtol=0)
            else:
                np.testing.assert_array_equal(g["proposals"][col], values, err_msg=f"{rel}: {col}")
    print(f"\nray start: head {cluster.start_sec['head']:.1f}s, worker {cluster.start_sec['worker']:.1f}s; "
          f"local run (overlapping the start) {local_sec:.1f}s, run on the cluster {cluster_sec:.1f}s; "
          f"decode tasks per node {dict(per_node)}")
