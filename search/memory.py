"""Keeping a long-lived search process's memory bounded.

Each video a search opens gets a (T, D) frame array (16.6 MB for an hour of 1152-d frames), freed
when the frame cache evicts it. glibc serves allocations that large with ``mmap`` and, on freeing
one, raises its mmap threshold to that size, so afterwards every allocation up to 16.6 MB (the row
groups a search decodes, its score arrays) comes from the heap, which fragments and is not given
back: at 1,000 hours of 1152-d frames a process held 1.83 GB after 20 queries, against 1.17 GB with
the threshold fixed (``bench/search_scale.py``; ``docs/RESULTS.md``).
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  #: glibc's mallopt parameter number


def return_large_frees(threshold: int = 1 << 20) -> bool:
    """From now on, allocations of at least ``threshold`` bytes are mapped and unmapped on their own
    (glibc ``mallopt(M_MMAP_THRESHOLD)``, which also stops glibc from raising the threshold). The
    whole process is affected. Returns False where there is no glibc (nothing changes)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, int(threshold)))
