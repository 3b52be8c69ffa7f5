"""A NaFlex checkpoint end to end: `groundzero index` (ffmpeg -> Ray Data -> Siglip2Model) keeps each
video's aspect ratio, records its patch budget, and `groundzero search` answers from it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from groundzero.cli.main import app
from groundzero.indexer.decode import DecodeConfig, decode_frames
from groundzero.model.backbone import Backbone
from groundzero.store.catalog import connect
from groundzero.store.manifest import require_manifest
from groundzero.store.tables import read_frames
from tests import media

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PATCHES = 24


@pytest.fixture(scope="module")
def naflex_dir(tmp_path_factory):
    from groundzero.model.tiny import TinySiglipConfig, build_tiny_siglip

    return build_tiny_siglip(tmp_path_factory.mktemp("models") / "tiny-naflex", TinySiglipConfig(naflex_patches=PATCHES))


@pytest.fixture(scope="module")
def indexed(naflex_dir, tmp_path_factory, ray_session):
    archive = tmp_path_factory.mktemp("archive")
    media.make_color_segments(archive / "wide.mp4", [("red", 6), ("blue", 6), ("green", 6)], size=(320, 180))
    media.make_half_split(archive / "tall.mp4", "yellow", "purple", size=(160, 120), seconds=8, rotate=90)
    index = tmp_path_factory.mktemp("idx") / "index"
    r = CliRunner().invoke(app, ["index", str(archive), "--index", str(index), "--model", str(naflex_dir),
                                 "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    return archive, index


def test_index_records_the_patch_budget(indexed, naflex_dir):
    _, index = indexed
    _, m = require_manifest(index)
    assert m.params.max_patches == PATCHES and m.model.patch_size == 8 and m.params.frame_size == 0


def test_frames_keep_their_aspect_ratio_and_embed_as_the_backbone_does(indexed, naflex_dir):
    archive, index = indexed
    layout, m = require_manifest(index)
    backbone = Backbone(str(naflex_dir), device="cpu")
    dcfg = DecodeConfig.for_model(naflex_dir, backbone.identity, fps=1.0, max_patches=PATCHES)
    rows = connect(layout, m).execute("SELECT rel_path, frames_file, n_frames FROM videos ORDER BY rel_path").fetchall()
    assert [r[0] for r in rows] == ["tall.mp4", "wide.mp4"]
    shapes = {}
    for rel, frames_file, n in rows:
        frames = decode_frames(archive / rel, dcfg)
        shapes[rel] = frames.shape[1:3]
        ts, emb = read_frames(layout.path(frames_file))
        assert len(ts) == n == len(frames)
        np.testing.assert_allclose(emb, backbone.embed_images(frames), atol=5e-3)  # stored as half floats
    (th, tw), (wh, ww) = shapes["tall.mp4"], shapes["wide.mp4"]
    assert th > tw and ww > wh  # portrait (a rotated phone clip) and 16:9, each kept


def test_search_answers_with_refinement(indexed):
    _, index = indexed
    r = CliRunner().invoke(app, ["search", "red", "--index", str(index), "--refine", "--json", "--top", "3"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)["hits"]
    assert hits and all(0 <= h["start_sec"] < h["end_sec"] for h in hits)


def test_another_patch_budget_is_refused(indexed, naflex_dir):
    archive, index = indexed
    r = CliRunner().invoke(app, ["index", str(archive), "--index", str(index), "--model", str(naflex_dir),
                                 "--device", "cpu", "--max-patches", "32"])
    assert r.exit_code != 0 and "max_patches" in r.output and "Traceback" not in r.output, r.output


def test_max_patches_is_refused_for_a_fixed_resolution_model(tmp_path, tiny_model_dir):
    media.make_color_segments(tmp_path / "a" / "v.mp4", [("red", 2)])
    r = CliRunner().invoke(app, ["index", str(tmp_path / "a"), "--index", str(tmp_path / "i"), "--model",
                                 str(tiny_model_dir), "--device", "cpu", "--max-patches", "64"])
    assert r.exit_code != 0 and "--max-patches" in r.output and "NaFlex" in r.output, r.output
