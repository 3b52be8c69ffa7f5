"""`groundzero index --precision int8` end to end: the embed actors run the int8 ONNX Runtime tower,
the index records it, a later run keeps it (auto) or is refused (another precision)."""

from __future__ import annotations

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


def test_int8_index_run(tmp_path, tiny_model_dir, ray_session):
    archive, index = tmp_path / "archive", tmp_path / "index"
    media.make_testsrc(archive / "a.mp4", 8)
    args = ["index", str(archive), "--index", str(index), "--model", str(tiny_model_dir), "--device", "cpu",
            "--no-reuse-still"]
    r = CliRunner().invoke(app, [*args, "--precision", "int8"])
    assert r.exit_code == 0, r.output
    layout, m = require_manifest(index)
    assert m.model.runtime == "onnx-int8"
    # the stored embeddings are the int8 tower's (nearer it than float32's), stored as half floats
    (frames_file,) = [row[0] for row in connect(layout, m).execute("SELECT frames_file FROM videos").fetchall()]
    _, stored = read_frames(layout.path(frames_file))
    frames = decode_frames(archive / "a.mp4", DecodeConfig(fps=1.0, size=32))
    int8 = Backbone(str(tiny_model_dir), device="cpu", int8_images=True).embed_images(frames)
    fp32 = Backbone(str(tiny_model_dir), device="cpu").embed_images(frames)
    assert np.abs(stored - int8).max() < 2e-3 < np.abs(stored - fp32).max()
    # another precision is refused; auto keeps int8 for the new video
    media.make_color_segments(archive / "b.mp4", [("red", 3), ("blue", 3)])
    r = CliRunner().invoke(app, [*args, "--precision", "fp32"])
    assert r.exit_code != 0 and "onnx-int8" in r.output and "Traceback" not in r.output, r.output
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    _, m = require_manifest(index)
    assert m.model.runtime == "onnx-int8" and m.n_videos == 2
