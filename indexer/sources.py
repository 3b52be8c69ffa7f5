"""Archive listing: which files are candidate videos, and what identifies their content.

An archive is a local folder or an S3 prefix (``s3://bucket/prefix``). Every
regular, non-hidden file under it is a candidate (a file that is not a video
gets a clear per-file failure in the catalog rather than being silently
skipped); ``exclude`` globs drop other files such as ``*.json``.

Subtitle files (``.srt``, ``.vtt``) are never candidates: one beside a video with the same stem
(``talk.srt``, or with a language, ``talk.en.vtt``) is that video's *sidecar*
(:attr:`VideoEntry.sidecars`, read by :mod:`groundzero.indexer.transcripts`), and its size and
mtime are part of the video's listing (:attr:`VideoEntry.sidecar_stamp`), so a caption file
added or edited later re-indexes the video. A subtitle file with no video is left out.

What each listing knows cheaply, and the planner (:mod:`groundzero.indexer.pipeline`)
compares with the catalog to skip unchanged videos:

* local file: size and mtime (``content_id`` stays empty; the planner hashes a
  file only when its mtime moved and its size did not);
* S3 object: size, LastModified and the ETag, as ``content_id = "etag:<etag>"``.
  The ETag changes whenever the object is rewritten with other bytes; for a
  multipart upload it depends on the part size too, so re-uploading the same
  bytes with another tool may re-index a video (never the opposite).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import replace
from pathlib import Path

from groundzero.errors import ConfigError
from groundzero.indexer.transcripts import SUBTITLE_EXTENSIONS, sidecar_key
from groundzero.store.s3 import S3Config, S3Url, is_s3_url, make_client, s3_error
from groundzero.store.writer import VideoEntry


def list_archive(archive: str, exclude: tuple[str, ...] = (), s3: S3Config | None = None) -> list[VideoEntry]:
    """Entries of a local folder or an ``s3://bucket/prefix`` archive, sorted by path, each
    video with its subtitle sidecars (module docstring)."""
    if is_s3_url(archive):
        return list_s3(archive, exclude, s3 or S3Config())
    return list_local(archive, exclude)


def is_subtitle(rel: str) -> bool:
    """Subtitle files are sidecars of a video, never videos themselves."""
    return rel.lower().endswith(SUBTITLE_EXTENSIONS)


def attach_sidecars(entries: list[VideoEntry]) -> list[VideoEntry]:
    """The videos of ``entries`` (sorted by path), each with the subtitle files beside it that are
    its sidecars (:func:`groundzero.indexer.transcripts.sidecar_key`: ``dir/talk.srt``,
    ``dir/talk.en.vtt`` for ``dir/talk.mp4``), best first.

    >>> e = [VideoEntry("/a/t.mp4", "t.mp4", 1, 2), VideoEntry("/a/t.en.srt", "t.en.srt", 3, 4),
    ...      VideoEntry("/a/x.vtt", "x.vtt", 5, 6)]
    >>> [(v.rel_path, v.sidecars, v.sidecar_stamp) for v in attach_sidecars(e)]
    [('t.mp4', ('/a/t.en.srt',), 't.en.srt:3:4')]
    """
    subs_by_folder: dict[str, list[VideoEntry]] = {}
    for e in entries:
        if is_subtitle(e.rel_path):
            subs_by_folder.setdefault(e.rel_path.rpartition("/")[0], []).append(e)
    out = []
    for e in entries:
        if is_subtitle(e.rel_path):
            continue
        folder, _, name = e.rel_path.rpartition("/")
        keyed = [(k, s) for s in subs_by_folder.get(folder, ())
                 if (k := sidecar_key(name, s.rel_path.rpartition("/")[2])) is not None]
        mine = [s for _, s in sorted(keyed, key=lambda ks: ks[0])]
        if mine:
            stamp = ";".join(f"{s.rel_path.rpartition('/')[2]}:{s.size_bytes}:{s.content_id or s.mtime_ns}"
                             for s in mine)
            e = replace(e, sidecars=tuple(s.uri for s in mine), sidecar_stamp=stamp)
        out.append(e)
    return out


def _excluded(rel: str, exclude: tuple[str, ...]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(name, pat) for pat in exclude)


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
            if _excluded(rel, exclude):
                continue
            try:
                st = path.stat()
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:  # dangling symlink or vanished file: the decoder reports it
                size, mtime = 0, 0
            out.append(VideoEntry(uri=str(path), rel_path=rel, size_bytes=size, mtime_ns=mtime))
    return attach_sidecars(out)


def list_s3(archive: str, exclude: tuple[str, ...] = (), cfg: S3Config | None = None,
            client=None) -> list[VideoEntry]:
    """Entries for every candidate object under ``s3://bucket/prefix``, sorted by key.

    Lists with the ``ListObjectsV2`` paginator (``cfg.list_page_size`` keys per
    request, retried per ``cfg``). ``uri`` is ``s3://bucket/key``; ``rel_path`` the
    key below the prefix. Folder markers (keys ending in "/") and hidden names
    (any path part starting with ".") are skipped. Raises :class:`ConfigError` when
    nothing is listed (a mistyped prefix would otherwise remove every video of the
    archive from the index) and :class:`RemoteStoreError` when listing fails.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    cfg = cfg or S3Config()
    url = S3Url.parse(archive)
    client = client or make_client(cfg)
    out: list[VideoEntry] = []
    try:
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=url.bucket, Prefix=url.prefix, PaginationConfig={"PageSize": cfg.list_page_size})
        for page in pages:
            for obj in page.get("Contents", []):
                key = obj["Key"]
                rel = key[len(url.prefix):]
                if not rel or key.endswith("/") or any(part.startswith(".") for part in rel.split("/")):
                    continue
                if _excluded(rel, exclude):
                    continue
                mtime_ns = int(obj["LastModified"].timestamp() * 1e9)
                etag = str(obj.get("ETag", "")).strip('"')
                out.append(VideoEntry(uri=url.uri(key), rel_path=rel, size_bytes=int(obj["Size"]),
                                      mtime_ns=mtime_ns, content_id=f"etag:{etag}" if etag else ""))
    except (BotoCoreError, ClientError) as e:
        raise s3_error(e, "listing", str(url), cfg) from e
    if not out:
        raise ConfigError(f"no objects under {url} (after --exclude); check the bucket and prefix")
    return attach_sidecars(sorted(out, key=lambda e: e.rel_path))
