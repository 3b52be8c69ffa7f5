"""`groundzero eval` reproduces the official QVHighlights evaluation on the real sample file."""

import json

import pytest
from typer.testing import CliRunner

from groundzero.cli.main import app
from tests.conftest import SHARED
from tests.data.test_metrics import _official_mr_figures

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
    assert r.exit_code == 2 and "g.jsonl: cannot open" in r.stderr and r.stderr.count("\n") == 1
    gt = tmp_path / "g.jsonl"
    gt.write_text(json.dumps({"qid": 1, "query": "x", "vid": "v", "duration": 10, "relevant_windows": [[1, 2]]}))
    r = CliRunner().invoke(app, ["eval", str(tmp_path / "p.jsonl"), "--gt", str(gt)])
    assert r.exit_code == 2 and "does not exist" in r.stderr and r.stderr.count("\n") == 1
    r = CliRunner().invoke(app, ["eval", "--gt", str(gt)])
    assert r.exit_code == 2 and "--index" in r.stderr and r.stderr.count("\n") == 1


def test_eval_of_a_submission_file(tmp_path):
    from groundzero.data.annotations import read_annotations
    from groundzero.data.submission import evaluate_submission

    gt, preds = tmp_path / "g.jsonl", tmp_path / "p.jsonl"
    gt.write_text("\n".join(json.dumps(r) for r in [
        {"qid": 1, "query": "a", "vid": "v", "duration": 60, "relevant_windows": [[10, 20]]},
        {"qid": 2, "query": "b", "vid": "v", "duration": 60, "relevant_windows": []},  # left out
    ]))
    preds.write_text("\n".join(json.dumps(r) for r in [
        {"qid": 1, "query": "a", "vid": "v", "pred_relevant_windows": [[10, 20, 0.9]]},
        {"qid": 7, "query": "c", "vid": "v", "pred_relevant_windows": [[0, 5, 0.1]]},  # not in the truth
    ]))
    m = evaluate_submission(preds, read_annotations(gt))
    assert m["MR-full-R1@0.7"] == 100.0 and m["MR-full-mAP"] == 100.0
    r = CliRunner().invoke(app, ["eval", str(preds), "--gt", str(gt)])
    assert r.exit_code == 0 and "p.jsonl vs g.jsonl (1 queries)" in r.stdout, r.output
