"""One writer per index directory: an ``flock`` locally, a renewed lease on network filesystems.

Two ways to hold the writer's lock; :func:`acquire_writer_lock` picks one
(:class:`LockConfig`, ``mode="auto"`` by default):

* **flock** (local filesystems). ``INDEX/.lock`` is locked with ``flock(LOCK_EX)``.
  The kernel drops an flock when the file description that holds it is closed,
  and it is closed however the holder ends — return, exception, ``SIGKILL``,
  OOM kill, power loss (the lock lived only in that kernel). So locally *a lock
  is never stale*: if ``flock`` fails, a live process holds it. The pid, host
  and start time written into the file only tell the user who that is. (The
  descriptor is opened non-inheritable, so ffmpeg or Ray workers started by the
  holder cannot keep it alive after the holder dies.)

* **lease** (NFS, SMB/CIFS, FUSE mounts such as s3fs or mountpoint-s3, where
  ``flock`` is unsupported, local to one client, or silently a no-op). The lock
  is a numbered *generation* file ``INDEX/.lease/<gen>.json`` holding the owner
  (pid, host, run) and an expiry time; the holder renews the expiry from a
  background thread every ``renew_sec``. A contender that finds the newest
  generation unexpired is refused; one that finds it expired (its holder died
  or hung) takes over by creating generation ``gen + 1``. Creation is
  create-if-absent (``os.link``, atomic on NFS), so of two contenders exactly
  one wins. *The stale rule is expiry*: a killed holder blocks the next run for
  at most ``lease_sec``. The holder checks it still owns the newest generation
  before it publishes a snapshot (:meth:`WriterLock.check`), so a run that lost
  its lease (paused longer than ``lease_sec``) fails instead of overwriting its
  successor's work. Expiry compares wall clocks of different hosts: keep them
  NTP-synchronised and ``lease_sec`` well above the skew.

  The same protocol maps onto an object store with conditional writes
  (S3 ``PutObject`` with ``If-None-Match: *`` to create generation ``gen + 1``);
  only the filesystem version is implemented here, as the store itself is a
  local or mounted directory.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from groundzero.errors import ConfigError, IndexLockedError

log = logging.getLogger(__name__)

#: filesystem types (``/proc/self/mountinfo``) on which flock cannot be trusted; ``fuse.*`` too
NETWORK_FS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "9p", "lustre",
                        "beegfs", "gpfs", "afs", "davfs", "virtiofs"})


@dataclass(frozen=True)
class LockConfig:
    mode: str = "auto"  #: auto (lease on network filesystems, else flock) | flock | lease
    lease_sec: float = 300.0  #: lease mode: a holder that stops renewing loses the lock after this
    renew_sec: float = 0.0  #: lease mode: renewal period; 0 means lease_sec / 4

    def validate(self) -> LockConfig:
        if self.mode not in ("auto", "flock", "lease"):
            raise ConfigError(f"lock mode must be auto, flock or lease, got {self.mode!r}")
        if self.lease_sec <= 0 or self.renew_sec < 0 or (self.renew_sec and self.renew_sec >= self.lease_sec):
            raise ConfigError(f"lease_sec must be > 0 and renew_sec in [0, lease_sec), got "
                              f"{self.lease_sec} and {self.renew_sec}")
        return self


class WriterLock(Protocol):
    mode: str
    holder: dict  #: who holds it: pid, host, started_at (and expires_at for a lease)

    def check(self) -> None:
        """Raise :class:`IndexLockedError` if this process no longer holds the lock."""

    def release(self) -> None: ...


def utc_iso(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, timezone.utc).isoformat(timespec="seconds")


def owner_record() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started_at": utc_iso()}


def acquire_writer_lock(root: Path, cfg: LockConfig | None = None) -> WriterLock:
    """Take the writer's lock of index directory ``root`` or raise :class:`IndexLockedError`."""
    cfg = (cfg or LockConfig()).validate()
    mode = cfg.mode
    if mode == "auto":
        fs = filesystem_type(root)
        mode = "lease" if fs in NETWORK_FS or fs.startswith("fuse") else "flock"
    if mode == "flock":
        return FlockLock.acquire(root / ".lock")
    return LeaseLock.acquire(root / ".lease", cfg)


def filesystem_type(path: Path, mountinfo: str | None = None) -> str:
    """The filesystem type of the mount holding ``path`` ("" when unknown, e.g. not Linux)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return ""
    p = os.path.realpath(path)
    best, fstype = -1, ""
    for line in mountinfo.splitlines():
        # "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue"
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        mnt = fields[4].replace("\\040", " ")
        if (p == mnt or p.startswith(mnt.rstrip("/") + "/")) and len(mnt) > best:
            best, fstype = len(mnt), right.split()[0]
    return fstype


def _describe(holder: dict) -> str:
    if not holder:
        return "an unknown process"
    s = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('started_at', '?')}"
    return s + (f", run {holder['run']}" if holder.get("run") else "")


class FlockLock:
    """``flock`` on ``INDEX/.lock`` (see module docstring for why it cannot go stale)."""

    mode = "flock"

    def __init__(self, fd: int, holder: dict):
        self._fd, self.holder = fd, holder

    @classmethod
    def acquire(cls, path: Path) -> FlockLock:
        import fcntl

        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # non-inheritable (PEP 446)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raw = os.pread(fd, 4096, 0).decode(errors="replace").strip()
            os.close(fd)
            try:
                holder = json.loads(raw)
            except ValueError:
                holder = {"pid": raw} if raw else {}
            raise IndexLockedError(
                f"index {path.parent} is being written by another run ({_describe(holder)}); the lock "
                "is released the moment that process ends, even if it is killed: wait for it to "
                "finish, or use another --index directory"
            ) from None
        except OSError as e:
            os.close(fd)
            raise IndexLockedError(
                f"cannot flock {path}: {e}; on a network or FUSE filesystem use the lease lock "
                "(LockConfig(mode='lease'))"
            ) from e
        holder = owner_record()
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        return cls(fd, holder)

    def check(self) -> None:
        if self._fd < 0:
            raise IndexLockedError("this writer has already released its lock; open a new writer")

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the description drops the flock
            self._fd = -1


class LeaseLock:
    """A renewed, expiring lease in ``INDEX/.lease/<gen>.json`` (see module docstring)."""

    mode = "lease"

    def __init__(self, dir: Path, gen: int, holder: dict, cfg: LockConfig):
        self.dir, self.gen, self.holder, self.cfg = dir, gen, holder, cfg
        self._lost: str = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{dir}", daemon=True)
        self._thread.start()

    # -- acquiring -------------------------------------------------------------

    @classmethod
    def acquire(cls, dir: Path, cfg: LockConfig, now: float | None = None) -> LeaseLock:
        dir.mkdir(parents=True, exist_ok=True)
        now = time.time() if now is None else now
        gen, current = newest_lease(dir)
        if current is not None and float(current.get("expires_at", 0)) > now:
            raise IndexLockedError(
                f"index {dir.parent} is being written by another run ({_describe(current)}); its lease "
                f"expires at {utc_iso(float(current['expires_at']))} unless renewed. If that process is "
                "gone the next run after that time takes over; otherwise wait for it to finish, or use "
                "another --index directory"
            )
        if current is not None and not current.get("released_at"):  # its holder died or hung
            log.warning("lease %d on %s expired at %s (%s): taking over", gen, dir.parent,
                        utc_iso(float(current.get("expires_at", 0))), _describe(current))
        holder = {**owner_record(), "expires_at": now + cfg.lease_sec}
        mine = gen + 1
        if not _create_if_absent(dir / f"{mine:012d}.json", json.dumps(holder)):
            _, winner = newest_lease(dir)
            raise IndexLockedError(
                f"index {dir.parent}: another run ({_describe(winner or {})}) took the expired lease "
                "at the same moment; wait for it to finish, or use another --index directory"
            )
        for old in dir.glob("*.json"):  # generations before ours are history
            if _gen_of(old) is not None and _gen_of(old) < mine:
                old.unlink(missing_ok=True)
        return cls(dir, mine, holder, cfg)

    # -- holding ---------------------------------------------------------------

    @property
    def renew_sec(self) -> float:
        return self.cfg.renew_sec or self.cfg.lease_sec / 4

    def renew(self, now: float | None = None) -> None:
        """Push the expiry forward; marks the lease lost if a newer generation exists."""
        now = time.time() if now is None else now
        gen, _ = newest_lease(self.dir)
        if gen != self.gen:
            self._lost = f"run in generation {gen} took it over"
            return
        if now > float(self.holder["expires_at"]):
            self._lost = f"it expired at {utc_iso(float(self.holder['expires_at']))} before it was renewed"
            return
        self.holder = {**self.holder, "expires_at": now + self.cfg.lease_sec}
        _replace(self.dir / f"{self.gen:012d}.json", json.dumps(self.holder))

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew_sec):
            try:
                self.renew()
            except OSError as e:  # keep trying; check() fails once the lease has run out
                log.warning("could not renew lease %s: %s", self.dir, e)
            if self._lost:
                return

    def check(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if not self._lost:
            gen, _ = newest_lease(self.dir)
            if gen != self.gen:
                self._lost = f"a run in generation {gen} took it over"
            elif now > float(self.holder["expires_at"]):
                self._lost = f"it expired at {utc_iso(float(self.holder['expires_at']))}"
        if self._lost:
            raise IndexLockedError(
                f"this run lost its lease on index {self.dir.parent} ({self._lost}); nothing after "
                "its last commit was published. Run the index again; raise lease_sec if the run "
                "stalls for longer than that"
            )

    def release(self) -> None:
        """Mark the lease expired (the file stays, so generation numbers only grow)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=5)
        if not self._lost and newest_lease(self.dir)[0] == self.gen:
            _replace(self.dir / f"{self.gen:012d}.json", json.dumps({**self.holder, "expires_at": 0,
                                                                     "released_at": utc_iso()}))

    def stop_renewing(self) -> None:
        """Test hook: behave like a hung holder (the lease then runs out)."""
        self._stop.set()


def newest_lease(dir: Path) -> tuple[int, dict | None]:
    """(generation, record) of the newest lease file; (0, None) when there is none."""
    gens = sorted((g, p) for p in dir.glob("*.json") if (g := _gen_of(p)) is not None)
    for g, p in reversed(gens):
        try:
            return g, json.loads(p.read_text())
        except (OSError, ValueError):  # unreadable or vanished: look at the one before
            continue
    return (gens[-1][0] if gens else 0), None


def _gen_of(p: Path) -> int | None:
    return int(p.stem) if p.stem.isdigit() else None


def _create_if_absent(path: Path, text: str) -> bool:
    """Atomically create ``path`` with ``text``; False if it exists. Uses link(2), atomic on NFS."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links (some FUSE mounts): O_EXCL, atomic wherever it is honoured
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
