"""S3 access shared by the indexer (listing an archive, fetching videos) and the store (indexes on S3).

Every boto3 client is built here, so every caller behaves the same:

* **credentials** — boto3's standard chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``
  / ``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` and the shared config files, SSO, container and
  instance roles). GroundZero never takes keys as arguments. On a Ray cluster each node's
  decode tasks resolve the chain on that node (give the worker nodes a role or the variables).
* **endpoint** — :attr:`S3Config.endpoint_url` (``--endpoint-url``), else ``AWS_ENDPOINT_URL_S3``,
  else ``AWS_ENDPOINT_URL``, else AWS itself. S3-compatible stores (MinIO, Ceph RGW, R2, moto)
  work through it; MinIO behind a plain host name may need ``addressing_style="path"``.
* **retries** — botocore's ``standard`` mode: up to :attr:`S3Config.max_attempts` attempts in
  all (default ``AWS_MAX_ATTEMPTS``, else 8; mode ``AWS_RETRY_MODE``, else standard), with
  jittered exponential backoff, on 5xx answers, ``SlowDown`` / throttling errors and dropped
  connections.

The driver resolves the endpoint once (:meth:`S3Config.resolved`) and hands the frozen config
to Ray workers, so a worker started before ``AWS_ENDPOINT_URL`` was set still talks to the
same store. :func:`s3_error` turns botocore's exceptions into :class:`RemoteStoreError`
messages that say what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from groundzero.errors import ConfigError, RemoteStoreError

SCHEME = "s3://"
RETRY_MODES = ("standard", "adaptive", "legacy")


def is_s3_url(value: object) -> bool:
    """Whether ``value`` names an S3 location (``s3://bucket/prefix``)."""
    return str(value).startswith(SCHEME)


@dataclass(frozen=True)
class S3Url:
    """A bucket and a key prefix that is empty or ends with "/" (a "folder")."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> S3Url:
        """``s3://bucket/some/prefix`` -> ``S3Url("bucket", "some/prefix/")``.

        The prefix is taken as a folder: ``s3://b/archive`` covers ``archive/x.mp4``,
        never ``archive2/x.mp4``.
        """
        if not is_s3_url(url):
            raise ConfigError(f"{url!r} is not an S3 location; write it as s3://bucket/prefix")
        bucket, _, prefix = str(url)[len(SCHEME):].partition("/")
        if not bucket or "*" in bucket:
            raise ConfigError(f"{url!r} names no bucket; write it as s3://bucket/prefix")
        prefix = prefix.strip("/")
        return cls(bucket, prefix + "/" if prefix else "")

    def key(self, rel: str) -> str:
        """The object key of ``rel`` (a path relative to the prefix)."""
        return self.prefix + rel.lstrip("/")

    def uri(self, key: str) -> str:
        """``s3://bucket/key`` for a full object key."""
        return f"{SCHEME}{self.bucket}/{key}"

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}"


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b.mp4`` -> ``("bucket", "a/b.mp4")`` (an object, not a prefix)."""
    bucket, _, key = uri[len(SCHEME):].partition("/")
    return bucket, key


@dataclass(frozen=True)
class S3Config:
    """How to reach S3 (see the module docstring for the credential chain)."""

    endpoint_url: str | None = None  #: e.g. http://minio:9000; None: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL / AWS
    region: str | None = None  #: None: the standard chain (AWS_REGION, AWS_DEFAULT_REGION, config file)
    max_attempts: int | None = None  #: attempts per request in all (1 = no retry); None: AWS_MAX_ATTEMPTS, else 8
    retry_mode: str | None = None  #: standard | adaptive | legacy; None: AWS_RETRY_MODE, else standard
    connect_timeout_sec: float = 10.0
    read_timeout_sec: float = 60.0
    list_page_size: int = 1000  #: keys per ListObjectsV2 page (S3's maximum is 1000)
    addressing_style: str = "auto"  #: auto | path | virtual
    transfer_threads: int = 8  #: parallel requests for one large upload / download, and for pulls

    def validate(self) -> S3Config:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ConfigError(f"S3 max_attempts must be >= 1, got {self.max_attempts}", field="max_attempts")
        if self.retry_mode is not None and self.retry_mode not in RETRY_MODES:
            raise ConfigError(f"S3 retry_mode must be one of {', '.join(RETRY_MODES)}, got {self.retry_mode!r}",
                              field="retry_mode")
        if not 1 <= self.list_page_size <= 1000:
            raise ConfigError(f"S3 list_page_size must be in [1, 1000], got {self.list_page_size}",
                              field="list_page_size")
        if self.addressing_style not in ("auto", "path", "virtual"):
            raise ConfigError(f"S3 addressing_style must be auto, path or virtual, got {self.addressing_style!r}",
                              field="addressing_style")
        if self.endpoint_url and not self.endpoint_url.startswith(("http://", "https://")):
            raise ConfigError(f"endpoint_url must start with http:// or https://, got {self.endpoint_url!r}",
                              field="endpoint_url")
        if min(self.connect_timeout_sec, self.read_timeout_sec) <= 0:
            name = "connect_timeout_sec" if self.connect_timeout_sec <= 0 else "read_timeout_sec"
            raise ConfigError(f"S3 {name} must be > 0 seconds, got {getattr(self, name)}", field=name)
        if self.transfer_threads < 1:
            raise ConfigError(f"S3 transfer_threads must be >= 1, got {self.transfer_threads}",
                              field="transfer_threads")
        return self

    def resolved(self) -> S3Config:
        """This config with what was not given taken from the environment (then the defaults)."""
        env = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
        try:
            attempts = self.max_attempts or int(os.environ.get("AWS_MAX_ATTEMPTS") or 8)
        except ValueError:
            raise ConfigError(f"AWS_MAX_ATTEMPTS must be a whole number, got {os.environ['AWS_MAX_ATTEMPTS']!r}") \
                from None
        return replace(self, endpoint_url=self.endpoint_url or env, max_attempts=attempts,
                       retry_mode=self.retry_mode or os.environ.get("AWS_RETRY_MODE") or "standard")


def make_client(cfg: S3Config) -> Any:
    """A boto3 S3 client: standard credential chain, ``cfg``'s endpoint and retry policy."""
    import boto3
    from botocore.config import Config

    cfg = cfg.resolved().validate()
    config = Config(
        retries={"total_max_attempts": cfg.max_attempts, "mode": cfg.retry_mode},
        connect_timeout=cfg.connect_timeout_sec, read_timeout=cfg.read_timeout_sec,
        s3={"addressing_style": cfg.addressing_style},
        max_pool_connections=max(10, cfg.transfer_threads),
    )
    return boto3.session.Session().client("s3", endpoint_url=cfg.endpoint_url, region_name=cfg.region,
                                          config=config)


def transfer_config(cfg: S3Config) -> Any:
    """s3transfer settings for upload_file / download_file (multipart above 64 MiB)."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=64 * 1024 * 1024, multipart_chunksize=64 * 1024 * 1024,
                          max_concurrency=cfg.transfer_threads)


def error_code(e: BaseException) -> str:
    """The S3 error code of a botocore ``ClientError`` ("NoSuchKey", "SlowDown", "404"...), else ""."""
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def is_not_found(e: BaseException) -> bool:
    return error_code(e) in ("NoSuchKey", "404", "NotFound")


def s3_error(e: BaseException, doing: str, where: str, cfg: S3Config | None = None) -> RemoteStoreError:
    """A :class:`RemoteStoreError` saying what failed (``doing`` ``where``) and what to do."""
    from botocore.exceptions import (
        ClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )
    from botocore.exceptions import (
        ConnectionError as BotoConnectionError,
    )

    endpoint = (cfg.resolved().endpoint_url if cfg else None) or "AWS S3"
    if isinstance(e, (NoCredentialsError, PartialCredentialsError)):
        return RemoteStoreError(
            f"{doing} {where}: no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or AWS_PROFILE), or run where an instance or container role provides them")
    if isinstance(e, BotoConnectionError):
        return RemoteStoreError(
            f"{doing} {where}: cannot reach {endpoint} ({e}); check --endpoint-url / AWS_ENDPOINT_URL "
            "and the network")
    if isinstance(e, ClientError):
        code = error_code(e)
        msg = e.response.get("Error", {}).get("Message", "")
        attempts = e.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
        if code == "NoSuchBucket":
            return RemoteStoreError(f"{doing} {where}: bucket does not exist at {endpoint}; "
                                    "check the bucket name and --endpoint-url")
        if code in ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return RemoteStoreError(f"{doing} {where}: access denied ({code}); give these credentials "
                                    "s3:ListBucket, s3:GetObject (and s3:PutObject for an index on S3)")
        if code in ("SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "503") \
                or code.startswith("5") or code in ("InternalError", "ServiceUnavailable"):
            return RemoteStoreError(f"{doing} {where}: S3 kept answering {code} ({msg or 'no message'}) "
                                    f"after {attempts + 1} attempts; run again later, or raise the retry "
                                    "budget (S3Config.max_attempts)")
        return RemoteStoreError(f"{doing} {where}: {code or 'error'}: {msg or e}")
    return RemoteStoreError(f"{doing} {where}: {type(e).__name__}: {e}")


def presigned_url(uri: str, expires_sec: int = 3600, client=None) -> str:
    """An HTTPS link to an ``s3://bucket/key`` object that a browser can fetch for a while.

    Signing is local (no request to S3); it needs AWS credentials in the usual places.
    """
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise ValueError(f"{uri!r} is not an s3://bucket/key uri")
    if client is None:
        import boto3

        client = boto3.client("s3")
    return client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                         ExpiresIn=expires_sec)
