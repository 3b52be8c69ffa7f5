"""Archive listing: which files are candidate videos, and whether they changed.

Only local folders for now. Every regular, non-hidden file under the root is a
candidate (a file that is not a video gets a clear per-file failure in the
catalog rather than being silently skipped); ``exclude`` globs drop sidecar
files such as ``*.json`` or ``*.srt`` from consideration.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from core.errors import ConfigError
from core.store.writer import VideoEntry


def list_local(root: str | Path, exclude: tuple[str, ...] = ()) -> list[VideoEntry]:
    """Entries for every candidate file under ``root``, sorted by path.

    ``uri`` is the absolute path; ``rel_path`` the path relative to ``root``.
    Hidden files and directories (name starting with ".") are skipped. A
    dangling symlink is listed (size 0, mtime 0) so its failure is recorded.
    """
    base = Path(root).expanduser()
    if not base.exists():
        raise ConfigError(f"archive folder {base} does not exist; pass an existing folder of videos")
    if not base.is_dir():
        raise ConfigError(f"archive {base} is a file; pass the folder that holds the videos")
    base = base.resolve()
    out: list[VideoEntry] = []
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(base).as_posix()
            if any(fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(name, pat) for pat in exclude):
                continue
            try:
                st = path.stat()
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:  # dangling symlink or vanished file: the decoder reports it
                size, mtime = 0, 0
            out.append(VideoEntry(uri=str(path), rel_path=rel, size_bytes=size, mtime_ns=mtime))
    return out
