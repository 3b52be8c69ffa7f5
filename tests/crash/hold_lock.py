"""Hold an index's writer lock until killed: ``python -m tests.crash.hold_lock INDEX MODEL READY_FILE [MODE LEASE_SEC]``.

Writes READY_FILE (with its pid) once the lock is held, then sleeps.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def main() -> None:
    index, model, ready = sys.argv[1:4]
    mode = sys.argv[4] if len(sys.argv) > 4 else "flock"
    lease_sec = float(sys.argv[5]) if len(sys.argv) > 5 else 300.0

    from groundzero.data.proposals import ProposalConfig
    from groundzero.model.identity import read_identity
    from groundzero.store.lock import LockConfig
    from groundzero.store.manifest import IndexParams
    from groundzero.store.writer import IndexWriter

    _, ident = read_identity(model)
    IndexWriter.open(index, ident, IndexParams(1.0, ident.image_size, ProposalConfig()),
                     lock=LockConfig(mode=mode, lease_sec=lease_sec))
    Path(ready).write_text(str(os.getpid()))
    time.sleep(3600)


if __name__ == "__main__":
    main()
