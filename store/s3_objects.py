"""The S3 calls of one index: objects under ``s3://bucket/prefix/`` named by index-relative paths.

:class:`S3Objects` reads, lists, creates, deletes and transfers the objects of one
``s3://bucket/prefix`` index, downloading into (and uploading from) its local cache
(an :class:`~groundzero.store.layout.IndexLayout`). What the objects mean — snapshots,
``LATEST``, run records — is :mod:`groundzero.store.s3_index`'s business. Every S3
failure comes out as :class:`~groundzero.errors.RemoteStoreError` (via
:func:`~groundzero.store.s3.s3_error`) saying what failed where, except a lost race
in :meth:`S3Objects.create` (:class:`~groundzero.errors.IndexLockedError`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from groundzero.errors import IndexLockedError, RemoteStoreError
from groundzero.store.layout import IndexLayout
from groundzero.store.s3 import S3Config, S3Url, error_code, is_not_found, s3_error, transfer_config


class S3Objects:
    """The objects of the index at ``url``, with ``layout`` as the local cache they transfer to and from."""

    def __init__(self, url: S3Url, cfg: S3Config, client, layout: IndexLayout):
        self.url, self.cfg, self.client, self.layout = url, cfg, client, layout

    # -- single objects --------------------------------------------------------

    def get(self, rel: str, missing_ok: bool = False) -> str | None:
        """The text of ``rel``; None when it is absent and ``missing_ok``."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.url.bucket, Key=self.url.key(rel))["Body"].read().decode()
        except (BotoCoreError, ClientError) as e:
            if missing_ok and is_not_found(e):
                return None
            raise s3_error(e, "reading", self.url.uri(self.url.key(rel)), self.cfg) from e

    def put(self, rel: str, text: str) -> None:
        """Write ``rel`` (a JSON document), replacing any object of that name."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.url.bucket, Key=self.url.key(rel), Body=text.encode(),
                                   ContentType="application/json")
        except (BotoCoreError, ClientError) as e:
            raise s3_error(e, "writing", self.url.uri(self.url.key(rel)), self.cfg) from e

    def create(self, rel: str, text: str) -> None:
        """Create ``rel`` only if absent (If-None-Match: *): of two writers exactly one succeeds."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.url.key(rel)
        try:
            self.client.put_object(Bucket=self.url.bucket, Key=key, Body=text.encode(), IfNoneMatch="*",
                                   ContentType="application/json")
        except ClientError as e:
            if error_code(e) not in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                raise s3_error(e, "publishing", self.url.uri(key), self.cfg) from e
            if self.get(rel) == text:  # our own earlier attempt succeeded, its answer was lost
                return
            raise IndexLockedError(
                f"{self.url}: another writer published {rel} first; this run's snapshot was not published. "
                "Make sure one run at a time writes this index, then run again") from e
        except BotoCoreError as e:
            raise s3_error(e, "publishing", self.url.uri(key), self.cfg) from e

    def delete(self, rels: list[str]) -> None:
        """Delete ``rels`` (old snapshots' objects), 1,000 per request."""
        from botocore.exceptions import BotoCoreError, ClientError

        for i in range(0, len(rels), 1000):  # DeleteObjects takes at most 1,000 keys
            keys = [{"Key": self.url.key(r)} for r in rels[i : i + 1000]]
            try:
                out = self.client.delete_objects(Bucket=self.url.bucket, Delete={"Objects": keys, "Quiet": True})
            except (BotoCoreError, ClientError) as e:
                raise s3_error(e, "deleting old snapshot files under", str(self.url), self.cfg) from e
            if out.get("Errors"):
                err = out["Errors"][0]
                raise RemoteStoreError(f"{self.url}: could not delete {len(out['Errors'])} old objects, e.g. "
                                       f"{err.get('Key')}: {err.get('Code')} {err.get('Message')}; "
                                       "the next run tries again")

    # -- listing ---------------------------------------------------------------

    def list_keys(self, sub: str, start_after: str = "") -> list[str]:
        """Keys (full S3 keys) under ``sub``, after ``start_after``."""
        return [o["Key"] for o in self._iter_objects(sub, start_after)]

    def list_objects(self, sub: str) -> dict[str, float]:
        """Index-relative path -> last-modified time (epoch seconds) of every object under ``sub``."""
        n = len(self.url.key(""))
        return {o["Key"][n:]: o["LastModified"].timestamp() for o in self._iter_objects(sub)}

    def _iter_objects(self, sub: str, start_after: str = "") -> list[dict]:
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs = {"Bucket": self.url.bucket, "Prefix": self.url.key(sub),
                  "PaginationConfig": {"PageSize": self.cfg.list_page_size}}
        if start_after:
            kwargs["StartAfter"] = start_after
        try:
            return [o for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs)
                    for o in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as e:
            raise s3_error(e, "listing", self.url.uri(self.url.key(sub)), self.cfg) from e

    # -- transfers to and from the cache ---------------------------------------

    def download_missing(self, rels: set[str]) -> None:
        """Download the files of ``rels`` the cache lacks, in parallel."""
        missing = sorted(r for r in rels if not self.layout.path(r).exists())
        self.parallel(self.download, missing)

    def download(self, rel: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        dest = self.layout.path(rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:  # s3transfer writes a temporary name and renames it: a cache file is whole or absent
            self.client.download_file(self.url.bucket, self.url.key(rel), str(dest), Config=transfer_config(self.cfg))
        except (BotoCoreError, ClientError) as e:
            if is_not_found(e):
                raise RemoteStoreError(
                    f"{self.url}: the published snapshot names {rel}, which is missing from S3; the index "
                    "was damaged (a lifecycle rule or a manual delete?): rebuild it into a new prefix") from e
            raise s3_error(e, "downloading", self.url.uri(self.url.key(rel)), self.cfg) from e

    def upload(self, path: Path, rel: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.upload_file(str(path), self.url.bucket, self.url.key(rel), Config=transfer_config(self.cfg))
        except (BotoCoreError, ClientError) as e:
            raise s3_error(e, "uploading", self.url.uri(self.url.key(rel)), self.cfg) from e
        except Exception as e:  # s3transfer wraps client errors in S3UploadFailedError
            cause = e.__cause__ or e.__context__
            if isinstance(cause, (BotoCoreError, ClientError)):
                raise s3_error(cause, "uploading", self.url.uri(self.url.key(rel)), self.cfg) from e
            raise s3_error(e, "uploading", self.url.uri(self.url.key(rel)), self.cfg) from e

    def parallel(self, fn, items: list) -> None:
        """``fn(item)`` for every item, on ``cfg.transfer_threads`` threads; the first error is raised."""
        if len(items) <= 1:
            for it in items:
                fn(it)
            return
        with ThreadPoolExecutor(max_workers=self.cfg.transfer_threads) as pool:
            for f in [pool.submit(fn, it) for it in items]:
                f.result()
