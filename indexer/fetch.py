"""Fetch stage: give the decoder a local file for any archive entry.

A local file is decoded where it is. An S3 object is **downloaded to a temporary
file** inside the decode task, decoded, and deleted when the task is done with
it. Why not hand ffmpeg a presigned HTTPS URL (ffmpeg reads http)?

* Retries: a download goes through botocore's retry policy (``SlowDown``, 5xx,
  dropped connections; :mod:`groundzero.store.s3`). ffmpeg's http reader has none of
  it: a 503 half-way through an hour of video would end as ``decode_failed``,
  indistinguishable from a corrupt file, and the whole decode would start over.
* Diagnosis: the decoder classifies bad files from the bytes (zero length, an
  mp4 whose index is missing, ...; :mod:`groundzero.indexer.decode`). On a local copy that
  works as for any local file, and a failed download gets its own reason,
  ``fetch_failed``, which the next run retries by itself.
* Seeks: an mp4 written without ``faststart`` keeps its index at the end, so
  ffmpeg over http issues extra range requests; a presigned URL also expires,
  and with temporary credentials (roles, SSO) it dies with them, possibly in
  the middle of a long decode.
* Consistency: the download checks it gets the version that was listed
  (``HEAD`` with ``If-Match: <ETag>``; s3transfer then pins every ranged GET to
  that ETag), so an object overwritten during the run fails cleanly
  ("changed during the run") instead of indexing bytes that the catalog's ETag
  does not describe.

The cost is local disk for one video per concurrent decode task (``tmp_dir``,
default the system temp dir) and reading each video's bytes once before
decoding starts rather than while it runs.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath

from groundzero.errors import DecodeError
from groundzero.store.s3 import (
    S3Config,
    error_code,
    is_s3_url,
    make_client,
    split_uri,
    transfer_config,
)

log = logging.getLogger(__name__)


@contextmanager
def local_copy(uri: str, content_id: str = "", s3: S3Config | None = None,
               tmp_dir: str | None = None) -> Iterator[str]:
    """Yield a local path holding ``uri``'s bytes; a temporary download for ``s3://`` uris.

    ``content_id`` ``"etag:<ETag>"`` pins the download to the listed version. Raises
    :class:`DecodeError` with reason ``fetch_failed`` (and a message saying why and
    what to do) when the object cannot be downloaded.
    """
    if not is_s3_url(uri):
        yield uri
        return
    cfg = s3 or S3Config()
    bucket, key = split_uri(uri)
    with tempfile.TemporaryDirectory(prefix="gz-fetch-", dir=tmp_dir) as d:
        path = os.path.join(d, "video" + PurePosixPath(key).suffix)
        _download(bucket, key, path, content_id, cfg, uri)
        yield path


def _download(bucket: str, key: str, path: str, content_id: str, cfg: S3Config, uri: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    client = make_client(cfg)
    try:
        if content_id.startswith("etag:"):
            # s3transfer takes no If-Match of ours, but pins its ranged GETs to the ETag of its own
            # HEAD: checking the listed ETag first makes the download that version (or fail).
            client.head_object(Bucket=bucket, Key=key, IfMatch='"' + content_id[len("etag:"):] + '"')
        client.download_file(bucket, key, path, Config=transfer_config(cfg))
    except ClientError as e:
        raise DecodeError("fetch_failed", _why(uri, error_code(e), str(e))) from None
    except (BotoCoreError, OSError) as e:
        raise DecodeError("fetch_failed", f"{uri} could not be downloaded ({type(e).__name__}: {e}); "
                                          "the next run tries it again") from None


def _why(uri: str, code: str, detail: str) -> str:
    if code in ("404", "NoSuchKey", "NotFound"):
        return f"{uri} was deleted or renamed after it was listed; the next run drops it from the index"
    if code in ("412", "PreconditionFailed"):
        return f"{uri} changed after it was listed; the next run indexes its new version"
    if code in ("403", "AccessDenied", "Forbidden"):
        return (f"{uri} cannot be read (access denied); give the indexing credentials s3:GetObject "
                "on it (and kms:Decrypt if it is KMS-encrypted), or add it to --exclude")
    return f"{uri} could not be downloaded ({code or 'error'}: {detail}); the next run tries it again"
