"""How an index run stops short: on a full disk, or on a signal.

* **A full disk** (or quota) while the index is written: :func:`is_disk_full` recognises it
  (the errno of an OSError, FAISS's RuntimeError text), and :func:`disk_full_error` is the one
  message: what ran out, the file being written, what the run had written and about how much
  more it needs, what to do. The run deletes what it wrote since its last commit first
  (:meth:`groundzero.store.writer.IndexWriter.discard_uncommitted`).
* **A signal**: inside :func:`stop_on_signals` (the CLI), SIGTERM raises :class:`RunStopped`
  and SIGINT KeyboardInterrupt in the main thread, so the run stops as on Ctrl-C: it
  publishes what finished, records itself ``aborted``, and Ray shuts down as the process exits.
  Never in the middle of a commit (:func:`uninterrupted`): a commit cut half-way could not
  safely be made again on the way out.
"""

from __future__ import annotations

import errno
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from groundzero.errors import DiskFullError
from groundzero.store.cleanup import disk_full_errno
from groundzero.store.writer import IndexWriter


def is_disk_full(e: BaseException, writer: IndexWriter | None) -> bool:
    """Whether ``e`` is the index's disk (or quota) being full. Ray's own full disk (its object
    store spilling to /tmp) is not: it fails inside Ray, while the writer writes nothing."""
    return disk_full_errno(e) is not None and (writer is not None and writer.writing is not None
                                               or not _raised_by_ray(e))


def _raised_by_ray(e: BaseException | None) -> bool:
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if type(e).__module__.split(".")[0] == "ray":
            return True
        e = e.__cause__ or e.__context__
    return False


def disk_full_error(e: BaseException, where: str | Path, writer: IndexWriter | None = None,
                    videos_left: int = 0,
                    remedy: str = " or pass --index on a larger one, then run again: videos committed so far are kept",
                    ) -> DiskFullError:
    """The one message for a full disk or quota: what ran out, the file being written, what the
    run had written and about how much more it needs, what to do (``remedy`` follows "free space
    on that disk")."""
    quota = disk_full_errno(e) == errno.EDQUOT
    path = writer.writing if writer is not None and writer.writing is not None else getattr(e, "filename", None)
    path = path or where
    facts = []
    if writer is not None:
        facts.append(f"the run had written {_size(writer.bytes_written)}")
        needed = writer.space_needed(videos_left) if videos_left > 0 else 0
        if needed:
            facts.append(f"it needs about {_size(needed)} more for {videos_left} "
                         f"video{'s' if videos_left != 1 else ''}")
    else:
        needed = 0
    free = None if quota else _free_bytes(Path(path))
    if free is not None:
        facts.append(f"{_size(free)} free now")
    what = "disk quota exceeded" if quota else "no space left on device"
    fix = "free space or raise the quota" if quota else "free space on that disk"
    detail = f" ({'; '.join(facts)})" if facts else ""
    return DiskFullError(f"{what} while writing {path}{detail}; {fix}{remedy}", path=str(path),
                         written_bytes=writer.bytes_written if writer is not None else 0, needed_bytes=needed)


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _free_bytes(path: Path) -> int | None:
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None



class RunStopped(KeyboardInterrupt):
    """The run was asked to stop by a signal (SIGTERM): raised in the main thread, like Ctrl-C's
    KeyboardInterrupt, so the run stops the same way (publishes what finished, records itself
    ``aborted``; Ray shuts down as the process exits). ``signum``: the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


_shielded = 0  #: depth of uninterrupted() blocks (the main thread's)
_deferred: list[BaseException] = []  #: a stop signal that arrived inside one


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside: SIGTERM raises :class:`RunStopped` and SIGINT KeyboardInterrupt in the main
    thread, but not in the middle of a commit (a commit cut half-way could not safely be made
    again): one arriving there is raised as soon as the commit is done. For a command line;
    a no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        exc = RunStopped(signum) if signum == signal.SIGTERM else KeyboardInterrupt()
        if _shielded:
            _deferred[:] = _deferred or [exc]
            return
        raise exc

    # a signal the caller ignores (SIGINT of a background job) stays ignored
    before = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)
              if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)  # None: a handler set outside Python


@contextmanager
def uninterrupted(raise_deferred: bool = True) -> Iterator[None]:
    """A stop signal (:func:`stop_on_signals`) arriving inside is raised when the block ends
    (not at all with ``raise_deferred=False``, or when the block raised anyway)."""
    global _shielded
    _shielded += 1
    ok = False
    try:
        yield
        ok = True
    finally:
        _shielded -= 1
        if not _shielded:
            pending, _deferred[:] = list(_deferred), []
            if ok and pending and raise_deferred:
                raise pending[0]
