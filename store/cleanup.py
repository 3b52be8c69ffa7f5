"""What an interrupted or failed run leaves behind, and how the next writer clears it.

A killed run leaves ``.*.tmp`` files of unfinished writes and a run record still ``running``;
the next writer, holding the lock, deletes the former (:func:`remove_tmp_files`) and marks the
latter ``aborted`` (:func:`mark_dead_runs`). A full disk or quota is recognised in whatever
exception carries it (:func:`disk_full_errno`).
"""

from __future__ import annotations

import errno
import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path

from groundzero.store.layout import IndexLayout
from groundzero.store.manifest import atomic_write

log = logging.getLogger(__name__)


def utc_now() -> str:
    """Now, as the store records times: ISO 8601 UTC to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def disk_full_errno(e: BaseException) -> int | None:
    """``errno.ENOSPC`` or ``errno.EDQUOT`` if ``e`` (or an exception it was raised from or while
    handling) says the disk or the user's quota is full; else None.

    An OSError carries the errno (Python, pyarrow); FAISS raises a RuntimeError whose message
    ends in ``(No space left on device)``.
    """
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return e.errno
        if isinstance(e, (OSError, RuntimeError)):
            for code in (errno.ENOSPC, errno.EDQUOT):
                if os.strerror(code) in str(e):
                    return code
        e = e.__cause__ or e.__context__
    return None


def tmp_files(layout: IndexLayout) -> list[Path]:
    """The ``.*.tmp`` files of interrupted writes, beside the store's files and run records."""
    dirs = (layout.root, layout.videos_dir, layout.vectors_dir, layout.catalog_dir, layout.manifests_dir,
            layout.runs_dir)
    return [p for d in dirs if d.is_dir() for p in sorted(d.glob(".*.tmp")) if p.is_file()]


def remove_tmp_files(layout: IndexLayout) -> int:
    """Delete the ``.*.tmp`` files a killed or failed run left (the caller holds the lock, so
    none is being written); returns their number."""
    n = 0
    for p in tmp_files(layout):
        try:
            p.unlink()
            n += 1
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("could not delete %s: %s", p, e)
    if n:
        log.info("deleted %d temporary files of interrupted writes", n)
    return n


def mark_dead_runs(layout: IndexLayout, finder: dict) -> list[str]:
    """Run records still ``running`` belong to runs that died (the caller holds the lock):
    mark them ``aborted``. Returns their run ids."""
    dead = []
    for p in sorted(layout.runs_dir.glob("*.json")):
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("status") == "running":
            rec.update(status="aborted", finished_at=rec.get("finished_at") or "",
                       message=(f"the run's process ended without finishing (killed or crashed); its work "
                                f"up to its last commit is kept. Found at {utc_now()} by pid "
                                f"{finder.get('pid')} on {finder.get('host')}"))
            atomic_write(p, json.dumps(rec, indent=2))
            dead.append(str(rec.get("run_id", p.stem)))
    if dead:
        log.warning("runs %s died before finishing; marked aborted", ", ".join(dead))
    return dead
