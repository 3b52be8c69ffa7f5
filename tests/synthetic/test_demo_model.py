"""The shipped demo model (model name ``demo``) really searches: the default model, end to end.

A small held-out synthetic archive is generated, indexed with no --model (the demo
backbone, and with it the demo head's context tokens), and every annotated query is
searched corpus-wide. The figures asserted are far below what bench/accuracy.py measures
on the full test split, so they catch a broken or untrained shipped model, not noise.
"""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from groundzero.cli.main import app
from groundzero.model.backbone import Backbone
from groundzero.model.checkpoint import read_config
from groundzero.plugins import named_model
from groundzero.synthetic.clip_check import ClipCheck
from groundzero.synthetic.events import object_event
from groundzero.synthetic.render import render_frame


def test_the_demo_backbone_tells_captions_apart():
    b = Backbone("demo", device="cpu")
    size = (b.image_size, b.image_size)
    captions = ["a red circle standing still", "a blue square standing still", "a green triangle standing still"]
    frames = np.stack([
        render_frame([object_event(shape, colour, "still", 0.0, 10.0)], 5.0, size)
        for shape, colour in (("circle", "red"), ("square", "blue"), ("triangle", "green"))
    ])
    sims = b.embed_images(frames) @ b.embed_texts(captions).T  # (3, 3)
    assert (sims.argmax(axis=1) == np.arange(3)).all(), sims


def test_the_demo_head_matches_the_backbone_and_is_calibrated():
    from groundzero.model.identity import read_identity

    bundle = named_model("demo")
    meta = read_config(bundle.head_dir)
    assert meta["backbone"]["fingerprint"] == read_identity("demo")[1].fingerprint
    assert 0.0 < meta["found_threshold"] < 1.0
    # the shipped backbone was trained on clips, and the build chose a clip-check weight on val
    assert meta["rescorer"]["name"] == "clip-check" and meta["rescorer"]["weight"] > 0
    assert meta["rescorer_calibration"]["n_queries"] > 0
    assert ClipCheck(Backbone("demo", device="cpu"), meta["rescorer"]).adapter.shape == (128, 128)


@pytest.mark.slow
@pytest.mark.e2e
def test_default_model_finds_held_out_moments(tmp_path, ray_session):
    runner = CliRunner()
    archive = tmp_path / "archive"
    r = runner.invoke(app, ["synth", str(archive), "--train-videos", "0", "--val-videos", "0", "--test-videos", "2",
                            "--minutes", "3", "--queries-per-video", "6", "--json"])
    assert r.exit_code == 0, r.output
    index = tmp_path / "index"
    r = runner.invoke(app, ["index", str(archive / "test"), "--index", str(index), "--model", "demo", "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["eval", "--index", str(index), "--gt", str(archive / "test.jsonl"), "--per-query",
                            "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    rows = m["per_query"]
    assert all(row["hit"] is not None for row in rows)
    with_moment = [row for row in rows if row["truth"]]
    assert len(with_moment) >= 6
    # the head was used (proposal recall is only reported with one) and finds most moments
    assert "proposal-R@1" in m
    assert m["within-R1@0.5"] >= 0.5 and m["corpus-R1@0.5"] >= 0.4, m
