"""S3 fixtures: a real S3 API over HTTP (moto's server mode on a free loopback port) behind a
fault-injecting proxy (:mod:`tests.s3.faults`), small generated videos, fresh buckets."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import pytest

from groundzero.store.s3 import S3Config, make_client
from tests import media
from tests.s3.faults import FaultProxy

# Fake credentials and a region for the whole session, set at import (collection) time so that
# Ray's worker processes, started later by the ray_session fixture, inherit them too.
for _k, _v in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
               ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true")):
    os.environ.setdefault(_k, _v)
os.environ.pop("AWS_PROFILE", None)


CLIPS = {  # name -> colour segments (seconds); tiny and fast to encode
    "a.mp4": [("red", 3), ("blue", 2)],
    "b.mp4": [("green", 4)],
    "c.mp4": [("white", 2), ("black", 2)],
    "b2.mp4": [("yellow", 2), ("purple", 4)],  # a new version of b.mp4
    "d.mp4": [("orange", 3)],
    "e.mp4": [("red", 2), ("green", 2)],
}


@pytest.fixture(scope="session")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request log lines
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def proxy(moto_endpoint):
    p = FaultProxy(moto_endpoint).start()
    yield p
    p.stop()


@pytest.fixture
def faults(proxy):
    """The proxy with no faults and an empty request log; cleared again afterwards."""
    proxy.clear()
    yield proxy
    proxy.clear()


@pytest.fixture
def s3cfg(proxy) -> S3Config:
    """Everything under test talks to S3 through the fault proxy; retries are quick."""
    return S3Config(endpoint_url=proxy.endpoint, max_attempts=4, connect_timeout_sec=5, read_timeout_sec=30)


@pytest.fixture(scope="session")
def direct(moto_endpoint):
    """A client straight to moto, for test setup and checks (never sees injected faults)."""
    return make_client(S3Config(endpoint_url=moto_endpoint))


@pytest.fixture
def bucket(direct) -> str:
    name = f"gz-{uuid.uuid4().hex[:12]}"
    direct.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clips")
    return {name: media.make_color_segments(root / name, segs, size=(64, 48), fps=5)
            for name, segs in CLIPS.items()}


def upload(client, bucket: str, key: str, path_or_bytes) -> None:
    body = Path(path_or_bytes).read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    client.put_object(Bucket=bucket, Key=key, Body=body)
