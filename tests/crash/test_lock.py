"""One writer per index: a second run is refused while the first is alive, and a killed
holder never blocks the next run (flock: at once; lease: once it expires)."""

import json
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from groundzero.data.proposals import ProposalConfig, make_windows, zero_shot_tokens
from groundzero.errors import ConfigError, IndexLockedError
from groundzero.model.identity import read_identity
from groundzero.store.lock import (
    FlockLock,
    LeaseLock,
    LockConfig,
    acquire_writer_lock,
    filesystem_type,
    newest_lease,
)
from groundzero.store.manifest import IndexParams, read_manifest
from groundzero.store.writer import IndexWriter, VideoEntry
from tests.crash import helpers
from tests.planted import unit


def _params(ident):
    return IndexParams(1.0, ident.image_size, ProposalConfig())


def _hold(index, model, tmp_path, mode="flock", lease_sec=300.0) -> tuple[subprocess.Popen, int]:
    ready = tmp_path / f"ready-{mode}-{time.monotonic_ns()}"
    proc = subprocess.Popen([sys.executable, "-m", "tests.crash.hold_lock", str(index), str(model), str(ready),
                             mode, str(lease_sec)], cwd=helpers.REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    helpers.wait_for_file(ready, proc)
    return proc, int(ready.read_text())


@pytest.mark.slow
def test_concurrent_index_run_is_refused_and_a_killed_holder_frees_the_lock(tmp_path, tiny_model_dir):
    index, archive = tmp_path / "index", tmp_path / "archive"
    archive.mkdir()
    (archive / "a.mp4").write_bytes(b"x")
    holder, pid = _hold(index, tiny_model_dir, tmp_path)
    try:
        # a second real `groundzero index` on the same directory: refused, one clear line, exit 1
        r = subprocess.run([sys.executable, "-m", "groundzero.cli.main", "index", str(archive), "--index", str(index),
                            "--model", str(tiny_model_dir), "--device", "cpu"],
                           cwd=helpers.REPO, capture_output=True, text=True, timeout=120, check=False)
        assert r.returncode == 1, r.stderr
        assert "being written by another run" in r.stderr and f"pid {pid} on {socket.gethostname()}" in r.stderr
        assert r.stderr.strip().count("\n") == 0
        assert json.loads((index / ".lock").read_text())["pid"] == pid  # who holds it is on record
    finally:
        helpers.kill(holder)
    # SIGKILL ran no cleanup, the lock file is still there, yet the kernel dropped the flock
    _, ident = read_identity(str(tiny_model_dir))
    t0 = time.monotonic()
    IndexWriter.open(index, ident, _params(ident)).close()
    assert time.monotonic() - t0 < 5


@pytest.mark.slow
def test_lease_is_renewed_while_alive_and_expires_after_a_kill(tmp_path, tiny_model_dir):
    index = tmp_path / "index"
    lease = LockConfig(mode="lease", lease_sec=2.0)
    _, ident = read_identity(str(tiny_model_dir))
    holder, pid = _hold(index, tiny_model_dir, tmp_path, "lease", 2.0)
    try:
        with pytest.raises(IndexLockedError, match=f"pid {pid}.*lease expires at"):
            IndexWriter.open(index, ident, _params(ident), lock=lease)
        time.sleep(2.5)  # longer than the lease: the live holder has renewed it
        with pytest.raises(IndexLockedError, match="being written by another run"):
            IndexWriter.open(index, ident, _params(ident), lock=lease)
    finally:
        helpers.kill(holder)
    killed_at = time.monotonic()
    gen_before, _ = newest_lease(index / ".lease")
    while True:  # refused until the dead holder's lease runs out, then taken over
        try:
            w = IndexWriter.open(index, ident, _params(ident), lock=lease)
            break
        except IndexLockedError:
            assert time.monotonic() - killed_at < 2.0 + 2.0, "the lease of a killed holder never expired"
            time.sleep(0.1)
    assert newest_lease(index / ".lease")[0] == gen_before + 1
    w.close()
    assert float(newest_lease(index / ".lease")[1]["expires_at"]) == 0  # released: free at once
    IndexWriter.open(index, ident, _params(ident), lock=lease).close()


def test_a_writer_that_lost_its_lease_cannot_publish(tmp_path, tiny_model_dir):
    _, ident = read_identity(str(tiny_model_dir))
    lease = LockConfig(mode="lease", lease_sec=0.5)
    a = IndexWriter.open(tmp_path, ident, _params(ident), lock=lease)
    a.lock.stop_renewing()  # a hung holder
    emb = unit(np.random.default_rng(0).normal(size=(60, ident.embed_dim)))
    win = make_windows(60, 1.0, a.params.proposals)
    a.put_indexed(VideoEntry("/a.mp4", "a.mp4", 1, 1), "ra", np.arange(60.0), emb, win,
                  zero_shot_tokens(emb, win, 6))
    time.sleep(0.7)
    b = IndexWriter.open(tmp_path, ident, _params(ident), lock=lease)  # takes the expired lease over
    with pytest.raises(IndexLockedError, match="lost its lease"):
        a.commit("ra")
    assert read_manifest(b.layout) is None  # nothing of the stale writer was published
    b.commit("rb")
    b.close()
    a.close()


def test_lock_mode_follows_the_filesystem(tmp_path):
    info = ("22 1 0:21 / / rw - ext4 /dev/vda rw\n"
            "40 22 0:50 / /mnt/nas rw - nfs4 server:/export rw\n"
            "41 22 0:51 / /mnt/s3 rw - fuse.mountpoint-s3 mountpoint-s3 rw\n")
    assert filesystem_type("/mnt/nas/gz/index", info) == "nfs4"
    assert filesystem_type("/mnt/s3/index", info) == "fuse.mountpoint-s3"
    assert filesystem_type("/home/me/index", info) == "ext4"
    lock = acquire_writer_lock(tmp_path)  # local: flock
    assert isinstance(lock, FlockLock)
    lock.release()
    lock = acquire_writer_lock(tmp_path, LockConfig(mode="lease", lease_sec=5))
    assert isinstance(lock, LeaseLock) and lock.holder["host"] == socket.gethostname()
    lock.release()
    with pytest.raises(ConfigError, match="lock mode"):
        LockConfig(mode="nfs").validate()
