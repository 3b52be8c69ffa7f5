"""Running the fake index program in a subprocess and killing it at a pause point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
GROWTH = "auto:flat_max_tokens=150,retrain_growth=1.5,min_lists=4,nprobe=4"


def start(archive: Path, index: Path, model: Path, *args: str) -> subprocess.Popen:
    """``python -m tests.crash.fake_pipeline ARCHIVE --index INDEX --model MODEL ARGS`` in its own
    session (so it and anything it started can be killed together)."""
    cmd = [sys.executable, "-m", "tests.crash.fake_pipeline", str(archive), "--index", str(index),
           "--model", str(model), *args]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_until(ready, proc: subprocess.Popen, what: str, timeout: float = 120.0) -> None:
    """Poll ``ready()`` every 5 ms; fail if ``proc`` ends first or ``timeout`` passes."""
    t0 = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}:\n{err[-3000:]}")
        if time.monotonic() - t0 > timeout:
            kill(proc)
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.005)


def wait_for_file(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    wait_until(path.exists, proc, f"{path.name} appeared", timeout)


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL the process group we started (no cleanup handler can run)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def run_and_kill_at(archive: Path, index: Path, model: Path, point: str, count: int, tmp: Path,
                    factory: str = GROWTH) -> None:
    pause_file = tmp / f"paused-{point}-{count}-{time.monotonic_ns()}"
    proc = start(archive, index, model, "--factory", factory, "--pause-at", point, "--pause-count", str(count),
                 "--pause-file", str(pause_file))
    wait_for_file(pause_file, proc)
    kill(proc)
    assert proc.returncode == -signal.SIGKILL


def run_to_end(archive: Path, index: Path, model: Path, factory: str = GROWTH) -> dict:
    proc = start(archive, index, model, "--factory", factory)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])["run"]


def snapshot_content(index: Path) -> tuple[dict, dict]:
    """(uri -> catalog facts, (uri, proposal_idx, token_idx) -> vector) of the committed snapshot,
    independent of video_seq numbering."""
    from groundzero.store.catalog import read_catalog
    from groundzero.store.manifest import require_manifest
    from groundzero.store.vectors import ContextIndex, decode_ids

    layout, m = require_manifest(index)
    rows = read_catalog(layout, m)
    facts = {r["uri"]: (r["status"], r["reason"], r["n_frames"], r["n_proposals"], r["content_hash"]) for r in rows}
    uri_of = {r["video_seq"]: r["uri"] for r in rows}
    stored = ContextIndex.load(layout.path(m.faiss_file)).stored_vectors()
    assert stored is not None
    ids, vecs = stored
    seq, prop, tok = decode_ids(ids)
    vectors = {(uri_of[s], int(p), int(t)): v for s, p, t, v in zip(seq.tolist(), prop, tok, vecs)}
    return facts, vectors


def same_vectors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.allclose(a[k], b[k], atol=1e-6) for k in a)
