"""Listing an S3 archive (paginated, retried) and fetching one video for the decoder."""

import math
from pathlib import Path

import pytest

from groundzero.errors import ConfigError, DecodeError, RemoteStoreError
from groundzero.indexer.fetch import local_copy
from groundzero.indexer.sources import list_archive, list_s3
from groundzero.store.s3 import S3Config
from tests.s3.conftest import upload

pytestmark = pytest.mark.s3

KEYS = ["archive/a.mp4", "archive/b.mp4", "archive/sub/c.mp4", "archive/sub/d.mov", "archive/notes.json",
        "archive/.DS_Store", "archive/sub/.cache/x.mp4", "archive/sub/", "archive2/other.mp4", "top.mp4"]


def test_listing_is_paginated_and_keeps_only_candidates(faults, s3cfg, direct, bucket):
    for i, key in enumerate(KEYS):
        upload(direct, bucket, key, b"v" * (i + 1))
    cfg = S3Config(**{**s3cfg.__dict__, "list_page_size": 2})
    entries = list_archive(f"s3://{bucket}/archive", exclude=("*.json",), s3=cfg)
    assert [e.rel_path for e in entries] == ["a.mp4", "b.mp4", "sub/c.mp4", "sub/d.mov"]
    a = entries[0]
    assert a.uri == f"s3://{bucket}/archive/a.mp4" and a.size_bytes == 1 and a.mtime_ns > 0
    etag = direct.head_object(Bucket=bucket, Key="archive/a.mp4")["ETag"].strip('"')
    assert a.content_id == f"etag:{etag}"
    # 8 keys under archive/ at 2 per page: 4 ListObjectsV2 requests, following continuation tokens
    lists = faults.requests("GET", r"list-type=2")
    assert len(lists) == math.ceil(8 / 2) and sum("continuation-token" in p for _, p, _ in lists) == 3


def test_throttled_listing_is_retried(faults, s3cfg, direct, bucket):
    upload(direct, bucket, "archive/a.mp4", b"a")
    slow = faults.inject("GET", r"list-type=2", status=503, code="SlowDown", times=1)
    err = faults.inject("GET", r"list-type=2", status=500, code="InternalError", times=1)
    assert [e.rel_path for e in list_s3(f"s3://{bucket}/archive", cfg=s3cfg)] == ["a.mp4"]
    assert slow.served == 1 and err.served == 1  # throttled, then a server error, then retried fine
    assert [s for _, _, s in faults.requests("GET", r"list-type=2")] == [503, 500, 200]


def test_listing_errors_say_what_to_do(faults, s3cfg, direct, bucket):
    with pytest.raises(RemoteStoreError, match="bucket does not exist"):
        list_s3("s3://no-such-bucket-gz/archive", cfg=s3cfg)
    with pytest.raises(ConfigError, match="no objects under"):
        list_s3(f"s3://{bucket}/empty", cfg=s3cfg)
    faults.inject("GET", r"list-type=2", status=503, times=-1)
    with pytest.raises(RemoteStoreError, match="kept answering SlowDown .* after 2 attempts"):
        list_s3(f"s3://{bucket}/archive", cfg=S3Config(**{**s3cfg.__dict__, "max_attempts": 2}))
    with pytest.raises(ConfigError, match="names no bucket"):
        list_s3("s3:///archive", cfg=s3cfg)


def test_fetch_downloads_the_listed_version_or_fails_with_a_reason(faults, s3cfg, direct, bucket):
    upload(direct, bucket, "archive/a.mp4", b"first version")
    (entry,) = list_s3(f"s3://{bucket}/archive", cfg=s3cfg)
    slow = faults.inject("GET", r"/archive/a\.mp4", status=503, times=1)  # throttled, then retried
    with local_copy(entry.uri, entry.content_id, s3cfg) as path:
        assert Path(path).read_bytes() == b"first version"
    assert slow.served == 1
    assert not Path(path).exists()  # the temporary download is gone
    with local_copy("/some/local/file.mp4") as path:  # local files are used in place
        assert path == "/some/local/file.mp4"

    upload(direct, bucket, "archive/a.mp4", b"second version")  # overwritten after listing
    with pytest.raises(DecodeError, match="changed after it was listed") as e, \
            local_copy(entry.uri, entry.content_id, s3cfg):
        pass
    assert e.value.reason == "fetch_failed"
    direct.delete_object(Bucket=bucket, Key="archive/a.mp4")
    with pytest.raises(DecodeError, match="deleted or renamed"), local_copy(entry.uri, "", s3cfg):
        pass
    upload(direct, bucket, "archive/a.mp4", b"x")
    faults.inject("*", r"/archive/a\.mp4", status=403, code="AccessDenied", times=-1)
    with pytest.raises(DecodeError, match="access denied"), local_copy(entry.uri, "", s3cfg):
        pass
