"""`groundzero eval` reproduces the official QVHighlights evaluation on the real sample file."""

import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import SHARED
from tests.model.test_metrics import _official_mr_figures

QVH = SHARED / "data" / "qvhighlights"


@pytest.mark.skipif(not QVH.is_dir(), reason="../shared/data/qvhighlights is not present")
def test_eval_reproduces_official_metrics():
    r = CliRunner().invoke(app, ["eval", str(QVH / "sample_val_preds.jsonl"),
                                 "--gt", str(QVH / "highlight_val_release.jsonl"), "--json"])
    assert r.exit_code == 0, r.output
    ours = json.loads(r.stdout)
    official = _official_mr_figures(json.loads((QVH / "sample_val_preds_metrics_raw.json").read_text()))
    assert len(official) == 84
    assert {k: round(ours[k], 2) for k in official} == {k: round(float(v), 2) for k, v in official.items()}


def test_eval_missing_file_is_one_line(tmp_path):
    r = CliRunner().invoke(app, ["eval", str(tmp_path / "p.jsonl"), "--gt", str(tmp_path / "g.jsonl")])
    assert r.exit_code == 2 and "does not exist" in r.stderr and r.stderr.count("\n") == 1
