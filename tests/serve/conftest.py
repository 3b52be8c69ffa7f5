"""A tiny real archive, indexed once by the real CLI, served by the real app on loopback.

Layout of the archive (folders are the collections the page filters on)::

    lectures/a.mp4   red 20 s, blue 25 s, green 20 s   (65 s)
    lectures/b.mp4   white 20 s, black 20 s             (40 s)
    court/c.mp4      orange 30 s, purple 30 s           (60 s)
    notes.txt        not a video: in the catalog as failed
"""

from __future__ import annotations

import os
import shutil

import httpx
import pytest
from typer.testing import CliRunner

from tests import media

GOOD = {
    "lectures/a.mp4": [("red", 20), ("blue", 25), ("green", 20)],
    "lectures/b.mp4": [("white", 20), ("black", 20)],
    "court/c.mp4": [("orange", 30), ("purple", 30)],
}
TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="session")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-archive")
    for rel, segs in GOOD.items():
        media.make_color_segments(root / rel, segs)  # moov at the end: a browser needs Range to play it
    media.make_text_file(root / "notes.txt")
    return root


@pytest.fixture(scope="session")
def index_dir(archive, tmp_path_factory, tiny_model_dir, ray_session):
    from groundzero.cli.main import app

    index = tmp_path_factory.mktemp("serve-idx") / "index"
    r = CliRunner().invoke(app, ["index", str(archive), "--index", str(index), "--model", str(tiny_model_dir),
                                 "--device", "cpu", "--json"])
    assert r.exit_code == 3, r.output  # 3: notes.txt failed, the rest indexed
    return index


def make_cfg(index_dir, **kw):
    from groundzero.search.service.config import ServeConfig

    return ServeConfig(index_dir=str(index_dir), device="cpu", **{"reload_every_sec": -1, **kw})


@pytest.fixture(scope="session")
def state(index_dir):
    from groundzero.search.service.state import IndexState

    return IndexState(make_cfg(index_dir).validate())


@pytest.fixture(scope="session")
def base_url(index_dir, state):
    """The app without a token, as `groundzero serve` runs it on loopback."""
    from groundzero.search.service.app import create_app
    from groundzero.search.service.server import BackgroundServer

    with BackgroundServer(create_app(make_cfg(index_dir), state=state)) as url:
        yield url.rstrip("/")


@pytest.fixture(scope="session")
def token_url(index_dir, state):
    """The same index behind an access token."""
    from groundzero.search.service.app import create_app
    from groundzero.search.service.server import BackgroundServer

    with BackgroundServer(create_app(make_cfg(index_dir, token=TOKEN), state=state)) as url:
        yield url.rstrip("/")


@pytest.fixture(scope="session")
def client(base_url):
    with httpx.Client(base_url=base_url, timeout=60) as c:
        yield c


@pytest.fixture(scope="session")
def videos(index_dir):
    """rel_path -> catalog row."""
    from groundzero.store.catalog import read_catalog
    from groundzero.store.manifest import require_manifest

    layout, m = require_manifest(index_dir)
    return {r["rel_path"]: r for r in read_catalog(layout, m)}


ARTIFACTS = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory):
    """Where pictures for people go: $GZ_ARTIFACTS if set, else a temporary folder."""
    d = os.environ.get("GZ_ARTIFACTS")
    if d:
        os.makedirs(d, exist_ok=True)
        return d
    return str(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture
def save_artifact(request):
    """``save_artifact(path, what)``: list a written file in the run's summary."""
    return lambda path, what: request.config.stash.setdefault(ARTIFACTS, []).append((what, path))


def pytest_terminal_summary(terminalreporter, config):
    for what, path in config.stash.get(ARTIFACTS, []):
        terminalreporter.write_line(f"{what}: {path}")


def copy_index(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


# -- a second archive with captions, for the text channels (the one above has none: its tests
# count its videos and rank its colours without any text in the way) --------------------------

#: talk/deposition.mp4's sidecar captions (SubRip): speakers as NAME: prefixes, markup-like text
DEPOSITION_SRT = """1
00:00:01,000 --> 00:00:03,500
Q: Please look at exhibit 12.

2
00:00:05,000 --> 00:00:08,000
A: That is the contract I signed in Boston.

3
00:00:09,000 --> 00:00:11,500
MR. SMITH: Objection & move to strike: 3 < 4.
"""
#: the cues as (start_sec, end_sec, text, speaker)
DEPOSITION_CUES = [(1.0, 3.5, "Please look at exhibit 12.", "Q"),
                   (5.0, 8.0, "That is the contract I signed in Boston.", "A"),
                   (9.0, 11.5, "Objection & move to strike: 3 < 4.", "MR. SMITH")]


@pytest.fixture(scope="session")
def text_index(tmp_path_factory, tiny_model_dir, ray_session):
    """``talk/deposition.mp4`` (12 s) with ``talk/deposition.srt`` beside it, and ``silent.mp4`` with no text."""
    from groundzero.cli.main import app

    root = tmp_path_factory.mktemp("text-archive")
    media.make_testsrc(root / "talk" / "deposition.mp4", 12)
    (root / "talk" / "deposition.srt").write_text(DEPOSITION_SRT, encoding="utf-8")
    media.make_testsrc(root / "silent.mp4", 4)
    index = tmp_path_factory.mktemp("text-idx") / "index"
    r = CliRunner().invoke(app, ["index", str(root), "--index", str(index), "--model", str(tiny_model_dir),
                                 "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    return index


@pytest.fixture(scope="session")
def text_rows(text_index):
    """rel_path -> catalog row of the captioned archive."""
    from groundzero.store.catalog import read_catalog
    from groundzero.store.manifest import require_manifest

    layout, m = require_manifest(text_index)
    return {r["rel_path"]: r for r in read_catalog(layout, m)}


@pytest.fixture(scope="session")
def text_state(text_index):
    from groundzero.search.service.state import IndexState

    return IndexState(make_cfg(text_index).validate())


@pytest.fixture(scope="session")
def text_url(text_index, text_state):
    """The app over the captioned archive."""
    from groundzero.search.service.app import create_app
    from groundzero.search.service.server import BackgroundServer

    with BackgroundServer(create_app(make_cfg(text_index), state=text_state)) as url:
        yield url.rstrip("/")
