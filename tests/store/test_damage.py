"""Damaged index files give a clear error naming the file (never a traceback), and
``verify`` reports each kind of damage as a finding.

One small real index (two planted videos, the tiny model) is written once; each test
damages a copy of it the way disks and people do: a file cut short, a manifest emptied or
overwritten with garbage, a catalog gone, a manifest edited to point outside the index,
16 bytes flipped inside a frames file's embedding values (the file still reads).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from groundzero.cli.main import app
from groundzero.errors import GroundZeroError, IndexDamagedError
from groundzero.store.catalog import read_catalog
from groundzero.store.check import errors, verify_index
from groundzero.store.manifest import require_manifest
from tests.planted import plant_index


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, tiny_model_dir) -> Path:
    """Two videos of 120 s (one frame row group each, 4 proposals each): every search reads them all."""
    root = tmp_path_factory.mktemp("damage") / "pristine"
    q = np.random.default_rng(7).normal(size=32)
    plant_index(root, tiny_model_dir, q, durations=[120, 120], target_video=0, target_start=30, target_end=50)
    assert verify_index(root, deep=True) == []
    return root


@pytest.fixture(scope="module")
def backbone(tiny_model_dir):
    from groundzero.model.backbone import Backbone

    return Backbone(str(tiny_model_dir), device="cpu")


def _copy(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "index", ignore=shutil.ignore_patterns(".lock")))


def _first_video(root: Path) -> dict:
    layout, m = require_manifest(root)
    return min((r for r in read_catalog(layout, m) if r["status"] == "indexed"), key=lambda r: r["video_seq"])


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_embedding_bytes(path: Path) -> None:
    """Flip 16 bytes inside the embedding values of a frames file so that it still reads (no
    decompression or structural error), but with other embedding values."""
    before = pq.read_table(path)
    md = pq.ParquetFile(path).metadata
    col = next(i for i in range(md.num_columns) if md.schema.column(i).path == "embedding.list.element")
    chunk = md.row_group(0).column(col)
    start, size = chunk.data_page_offset, chunk.total_compressed_size
    data = path.read_bytes()
    for off in range(start + size // 2, start + size - 16, 61):  # past the page header, into the values
        bad = bytearray(data)
        bad[off : off + 16] = bytes(b ^ 0x5A for b in bad[off : off + 16])
        path.write_bytes(bytes(bad))
        try:
            after = pq.read_table(path)  # a plain read, as any reader does: no page checksums checked
        except Exception:  # noqa: BLE001, S112 - this offset broke decompression: try another
            continue
        if after.column("embedding") != before.column("embedding") and \
                after.drop(["embedding"]).equals(before.drop(["embedding"])):
            return
    raise AssertionError("no offset found whose flip still reads")


def _set_manifest(root: Path, **fields) -> None:
    for p in (root / "manifest.json", *sorted((root / "manifests").glob("*.json"))[-1:]):
        d = json.loads(p.read_text())
        d.update(fields)
        p.write_text(json.dumps(d))


# (name, damage(root) -> the name the error must show, commands that must fail: s(earch) l(ist) v(erify))
def _faiss(root):
    _, m = require_manifest(root)
    _truncate(root / m.faiss_file)
    return Path(m.faiss_file).name, "sv"


def _frames(root):
    f = _first_video(root)["frames_file"]
    _truncate(root / f)
    return Path(f).name, "sv"


def _proposals(root):
    f = _first_video(root)["proposals_file"]
    _truncate(root / f)
    return Path(f).name, "sv"


def _manifest_empty(root):
    (root / "manifest.json").write_bytes(b"")
    return "manifest.json", "slv"


def _manifest_not_utf8(root):
    (root / "manifest.json").write_bytes(b"\xff\xfe\x00\x9c garbage \x80\x81")
    return "manifest.json", "slv"


def _manifest_not_json(root):
    (root / "manifest.json").write_bytes(b'{"format_version": 1, "version": 1, "catalog_fi')
    return "manifest.json", "slv"


def _catalog_truncated(root):
    _, m = require_manifest(root)
    _truncate(root / m.catalog_file)
    return Path(m.catalog_file).name, "slv"


def _catalog_missing(root):
    _, m = require_manifest(root)
    (root / m.catalog_file).unlink()
    return Path(m.catalog_file).name, "slv"


def _faiss_outside(root):
    _set_manifest(root, faiss_file="../../../etc/passwd")
    return "../../../etc/passwd", "slv"


def _frames_outside(root):
    _, m = require_manifest(root)
    t = pq.read_table(root / m.catalog_file)
    rows = t.to_pylist()
    rows[0]["frames_file"] = "../../../etc/passwd"
    pq.write_table(type(t).from_pylist(rows, schema=t.schema), root / m.catalog_file)
    return "../../../etc/passwd", "slv"


def _bit_rot(root):
    f = _first_video(root)["frames_file"]
    flip_embedding_bytes(root / f)
    return Path(f).name, "sv"


DAMAGE = [_faiss, _frames, _proposals, _manifest_empty, _manifest_not_utf8, _manifest_not_json,
          _catalog_truncated, _catalog_missing, _faiss_outside, _frames_outside, _bit_rot]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__.strip("_"))
def test_damage_is_a_clear_error_and_a_finding(damage, pristine, tmp_path, backbone):
    from groundzero.search.searcher import Searcher

    root = _copy(pristine, tmp_path)
    seq = _first_video(root)["video_seq"]
    name, must_fail = damage(root)

    # verify: never raises, an error finding that names the file
    problems = verify_index(root, deep=True)
    assert errors(problems), problems
    assert any(name in p.message for p in errors(problems)), problems

    # search: opening the index, or reading the video's frames, is a GroundZeroError naming the file
    with pytest.raises(GroundZeroError) as e:
        s = Searcher(root, device="cpu", backbone=backbone)
        s.video_data(seq)  # every frame of the damaged video (what a query shortlisting it reads)
        s.search("a person walks into the room")
    assert isinstance(e.value, IndexDamagedError), e.value
    assert name in str(e.value) and "groundzero catalog verify" in str(e.value)

    # the CLI: one `error:` line naming the file, no traceback
    runner = CliRunner()
    commands = {"s": ["search", "a person walks into the room", "--index", str(root), "--device", "cpu"],
                "l": ["catalog", "list", "--index", str(root)],
                "m": ["catalog", "summary", "--index", str(root)],
                "v": ["catalog", "verify", "--index", str(root)]}
    for key, args in commands.items():
        r = runner.invoke(app, args)
        assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.exception)
        assert "Traceback" not in r.output
        if key in must_fail or (key == "m" and "l" in must_fail):
            assert r.exit_code != 0, (args, r.output)
        if r.exit_code != 0:
            lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
            assert lines and any(name in ln for ln in lines), (args, r.output)
            if key != "v":
                assert len(lines) == 1, r.output
                assert r.exit_code == IndexDamagedError.exit_code


def test_serve_health_reports_a_snapshot_damaged_in_service(pristine, tmp_path, backbone):
    from fastapi.testclient import TestClient

    from groundzero.search.service.app import create_app
    from groundzero.search.service.config import ServeConfig
    from groundzero.search.service.state import IndexState

    root = _copy(pristine, tmp_path)
    cfg = ServeConfig(index_dir=str(root), device="cpu", reload_every_sec=-1).validate()
    state = IndexState(cfg, backbone=backbone)
    client = TestClient(create_app(cfg, state=state))
    assert client.get("/api/health").json()["reload_error"] == ""

    frames = _first_video(root)["frames_file"]
    _truncate(root / frames)
    r = client.get("/api/search", params={"q": "a person walks into the room"})
    assert r.status_code == 503 and Path(frames).name in r.json()["detail"]
    health = client.get("/api/health").json()
    assert Path(frames).name in health["reload_error"] and "damaged" in health["reload_error"]
    assert Path(frames).name in state.damage

    # a file gone (garbage collection of a superseded snapshot, or deleted): restart, says the service
    proposals = _first_video(root)["proposals_file"]
    shutil.copyfile(pristine / frames, root / frames)  # (the frames file repaired)
    state._snap.searcher._cache.clear()
    (root / proposals).unlink()
    r = client.get("/api/search", params={"q": "another query"})
    assert r.status_code == 503 and "lost files" in r.json()["detail"] and Path(proposals).name in r.json()["detail"]
    assert "lost files" in client.get("/api/health").json()["reload_error"]


def test_serve_refuses_to_start_on_a_damaged_index_and_reports_a_damaged_new_snapshot(
        pristine, tmp_path, backbone):
    from groundzero.search.service.config import ServeConfig
    from groundzero.search.service.state import IndexState

    root = _copy(pristine, tmp_path)
    cfg = ServeConfig(index_dir=str(root), device="cpu", reload_every_sec=-1).validate()
    state = IndexState(cfg, backbone=backbone)

    # a newer snapshot whose FAISS file is cut short: the old one stays in service, health says why
    from groundzero.store.writer import IndexWriter

    _, m = require_manifest(root)
    with IndexWriter.open(root, m.model, m.params) as w:
        w._dirty = True
        m2 = w.commit("next")
    _truncate(root / m2.faiss_file)
    state._reload()
    assert state.snapshot().version == m.version
    assert Path(m2.faiss_file).name in state.reload_error

    with pytest.raises(IndexDamagedError, match=Path(m2.faiss_file).name):
        IndexState(cfg, backbone=backbone)  # `groundzero serve` prints this as one error line
    r = CliRunner().invoke(app, ["serve", "--index", str(root), "--device", "cpu", "--port", "0"])
    assert r.exit_code == IndexDamagedError.exit_code and "Traceback" not in r.output
    assert Path(m2.faiss_file).name in r.output


def test_verify_reports_every_damaged_file_at_once(pristine, tmp_path):
    root = _copy(pristine, tmp_path)
    _, m = require_manifest(root)
    rows = sorted((r for r in read_catalog(*require_manifest(root)) if r["status"] == "indexed"),
                  key=lambda r: r["video_seq"])
    _truncate(root / m.faiss_file)
    _truncate(root / rows[0]["proposals_file"])
    flip_embedding_bytes(root / rows[1]["frames_file"])
    found = " ".join(p.message for p in errors(verify_index(root, deep=True)))
    for f in (m.faiss_file, rows[0]["proposals_file"], rows[1]["frames_file"]):
        assert Path(f).name in found, found
