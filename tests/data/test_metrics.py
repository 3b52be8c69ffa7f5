"""Evaluation metrics: the official QVHighlights figures, and hand-worked cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from groundzero.data.annotations import iter_jsonl
from groundzero.data.metrics import (
    greedy_true_positives,
    query_average_precision,
    qvhighlights_metrics,
    voc_average_precision,
)
from groundzero.data.recall import (
    corpus_recall_at_k,
    not_found_precision_recall,
    proposal_recall_at_k,
    recall_at_k,
)
from groundzero.data.submission import read_submission, write_submission
from groundzero.errors import ConfigError

QVH = Path(__file__).resolve().parents[3] / "shared" / "data" / "qvhighlights"
needs_qvh = pytest.mark.skipif(
    not (QVH / "sample_val_preds_metrics_raw.json").exists(),
    reason=f"QVHighlights files not found under {QVH}",
)


def _official_mr_figures(raw: dict) -> dict[str, float]:
    """Every MR-* figure of the official output, under our flat key names."""
    out = {k: v for k, v in raw["brief"].items() if k.startswith("MR-")}
    for bucket in ("full", "short", "middle", "long"):
        for t, v in raw[bucket]["MR-mAP"].items():
            out[f"MR-{bucket}-mAP" if t == "average" else f"MR-{bucket}-mAP@{t}"] = v
        for t, v in raw[bucket]["MR-R1"].items():
            out[f"MR-{bucket}-R1@{t}"] = v
    return out


@pytest.fixture(scope="module")
def val_gt() -> list[dict]:
    return [obj for _, obj in iter_jsonl(QVH / "highlight_val_release.jsonl")]


# --------------------------------------------------------------------------- conformance


@needs_qvh
def test_reproduces_every_official_mr_figure(val_gt):
    preds = read_submission(QVH / "sample_val_preds.jsonl")
    ours = qvhighlights_metrics(preds, val_gt)
    official = _official_mr_figures(
        json.loads((QVH / "sample_val_preds_metrics_raw.json").read_text())
    )
    assert (
        len(official) == 84
    )  # 4 buckets x (10 + average mAP, 10 R1); the 8 brief keys are among them
    assert {k: ours[k] for k in official} == official
    assert (ours["MR-full-R1@0.5"], ours["MR-full-R1@0.7"], ours["MR-full-mAP"]) == (
        53.94,
        34.84,
        32.2,
    )
    assert (ours["MR-full-mAP@0.5"], ours["MR-full-mAP@0.75"]) == (54.96, 31.01)


@needs_qvh
def test_ground_truth_as_predictions_on_val(val_gt):
    preds = [
        {"qid": g["qid"], "pred_relevant_windows": [[s, e, 1.0] for s, e in g["relevant_windows"]]}
        for g in val_gt
    ]
    m = qvhighlights_metrics(preds, val_gt)
    assert m["MR-full-R1@0.5"] == m["MR-full-R1@0.95"] == 100.0
    assert m["MR-full-mAP"] == 99.76  # 13 queries have more than 10 GT windows (data README)


# ------------------------------------------------------------------- hand-worked QVHighlights


def _qvh(pred_windows: list[list[float]], gt_windows: list[list[float]]) -> dict[str, float]:
    return qvhighlights_metrics(
        [{"qid": 1, "pred_relevant_windows": pred_windows}],
        [{"qid": 1, "relevant_windows": gt_windows}],
    )


def test_gt_as_predictions_gives_full_marks():
    gts = [
        {"qid": i, "relevant_windows": w}
        for i, w in enumerate([[[0, 4]], [[10, 40], [50, 60]], [[2, 150]]])
    ]
    preds = [
        {"qid": g["qid"], "pred_relevant_windows": [[*w, 0.5] for w in g["relevant_windows"]]}
        for g in gts
    ]
    m = qvhighlights_metrics(preds, gts)
    assert m["MR-full-R1@0.5"] == m["MR-full-R1@0.7"] == 100.0
    assert m["MR-full-mAP"] == m["MR-full-mAP@0.5"] == m["MR-full-mAP@0.75"] == 100.0
    assert m["MR-long-mAP"] == m["MR-long-R1@0.95"] == 100.0


def test_r1_takes_the_first_window_not_the_best_scored():
    m = _qvh([[20, 30, 0.1], [0, 10, 0.9]], [[0, 10]])
    assert m["MR-full-R1@0.5"] == 0.0  # top-1 is the first listed window
    assert m["MR-full-mAP"] == 100.0  # mAP re-sorts by score


def test_iou_exactly_at_threshold_counts():
    m = _qvh([[0, 10, 1.0]], [[0, 20]])  # IoU = 0.5
    assert m["MR-full-R1@0.5"] == 100.0 and m["MR-full-R1@0.55"] == 0.0
    assert m["MR-full-mAP@0.5"] == 100.0 and m["MR-full-mAP@0.55"] == 0.0


def test_score_ties_keep_the_listed_order():
    assert _qvh([[20, 30, 0.5], [0, 10, 0.5]], [[0, 10]])["MR-full-mAP"] == 50.0
    assert _qvh([[0, 10, 0.5], [20, 30, 0.5]], [[0, 10]])["MR-full-mAP"] == 100.0


def test_only_the_first_ten_windows_count_for_map():
    wrong = [[100, 110, 0.5]] * 10
    assert _qvh(wrong + [[0, 10, 0.9]], [[0, 10]])["MR-full-mAP"] == 0.0
    assert _qvh(wrong[:9] + [[0, 10, 0.9]], [[0, 10]])["MR-full-mAP"] == 100.0


def test_duplicate_on_a_matched_window_is_a_false_positive():
    gt = np.array([[0.0, 10.0], [20.0, 30.0]])
    pred = np.array([[0, 10, 0.9], [0, 10, 0.8], [20, 30, 0.7]], dtype=float)
    assert greedy_true_positives(pred[:, :2], gt, [0.5]).tolist() == [[True, False, True]]
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> AP = 1/2 * 1 + 1/2 * 2/3
    np.testing.assert_allclose(query_average_precision(pred, gt, [0.5]), [5 / 6])
    assert _qvh(pred.tolist(), gt.tolist())["MR-full-mAP@0.5"] == 83.33


def test_greedy_match_falls_back_to_the_next_unmatched_window():
    gt = np.array([[0.0, 10.0], [0.0, 12.0]])
    pred = np.array([[0.0, 10.0], [0.0, 10.0]])  # IoU 1.0 and 0.833 with both
    assert greedy_true_positives(pred, gt, [0.5, 0.9]).tolist() == [[True, True], [True, False]]


def test_voc_ap_is_interpolated_from_the_right():
    # precision rises back to 2/3 at full recall: the interpolated curve is 1 then 2/3.
    assert voc_average_precision(
        np.array([1.0, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0])
    ) == pytest.approx(5 / 6)
    assert voc_average_precision(np.array([0.0, 0.5]), np.array([0.0, 1.0])) == pytest.approx(0.5)


def test_empty_prediction_list_scores_zero():
    gts = [{"qid": "a", "relevant_windows": [[0, 10]]}, {"qid": "b", "relevant_windows": [[0, 10]]}]
    preds = [
        {"qid": "a", "pred_relevant_windows": []},
        {"qid": "b", "pred_relevant_windows": [[0, 10, 1]]},
    ]
    m = qvhighlights_metrics(preds, gts)
    assert m["MR-full-R1@0.5"] == 50.0 and m["MR-full-mAP"] == 50.0


def test_length_buckets_keep_their_gt_windows_and_all_predictions():
    gts = [
        {"qid": 1, "relevant_windows": [[0, 4], [50, 100]]},
        {"qid": 2, "relevant_windows": [[0, 60]]},
    ]
    preds = [
        {"qid": 1, "pred_relevant_windows": [[50, 100, 0.9], [0, 4, 0.8]]},
        {"qid": 2, "pred_relevant_windows": [[0, 60, 0.9]]},
    ]
    m = qvhighlights_metrics(preds, gts)
    assert m["MR-short-R1@0.5"] == 0.0  # query 1's first window is long; query 2 is not in "short"
    assert m["MR-short-mAP"] == 50.0  # [0, 4] found at rank 2 -> precision 1/2
    assert m["MR-long-R1@0.5"] == 100.0 and m["MR-long-mAP"] == 100.0
    assert math.isnan(m["MR-middle-mAP"]) and math.isnan(m["MR-middle-R1@0.5"])


def test_qids_must_match_and_may_mix_int_and_str():
    gts = [{"qid": 7, "relevant_windows": [[0, 10]]}]
    assert (
        qvhighlights_metrics([{"qid": "7", "pred_relevant_windows": [[0, 10, 1]]}], gts)[
            "MR-full-mAP"
        ]
        == 100.0
    )
    with pytest.raises(ConfigError, match="same queries"):
        qvhighlights_metrics([{"qid": 8, "pred_relevant_windows": [[0, 10, 1]]}], gts)
    with pytest.raises(ConfigError, match="start, end, score|3 numbers"):
        qvhighlights_metrics([{"qid": 7, "pred_relevant_windows": [[0, 10]]}], gts)


# --------------------------------------------------------------------------- recall@k family


def test_recall_at_k_hand_worked():
    preds = [
        [(0, 10), (20, 30)],  # GT (20, 30): hit at rank 2
        [(0, 5)],  # fewer than k predictions; IoU 0.5 with (0, 10)
        [],  # no prediction: a miss
        [(1, 2)],  # no GT: excluded
    ]
    gts = [[(20, 30)], [(0, 10)], [(0, 10)], []]
    r = recall_at_k(preds, gts, ks=(1, 5), ious=(0.5, 0.7))
    assert r == {"R1@0.5": 1 / 3, "R1@0.7": 0.0, "R5@0.5": 2 / 3, "R5@0.7": 1 / 3, "n": 3.0}
    assert recall_at_k(preds, gts, ks=(1,), ious=(0.5,), strict=True)["R1@0.5"] == 0.0


def test_recall_at_k_rejects_misaligned_inputs():
    with pytest.raises(ConfigError, match="align"):
        recall_at_k([[(0, 1)]], [])


def test_proposal_recall_at_k():
    r = proposal_recall_at_k([[3, 1, 2], [0, 5], [4]], [{1}, {9}, set()], ks=(1, 2, 5))
    assert r == {"R@1": 0.0, "R@2": 0.5, "R@5": 0.5, "n": 2.0}


def test_corpus_recall_needs_the_right_video_and_span():
    ranked = [
        [("v2", 0, 10), ("v1", 0, 10)],  # right span in the wrong video first, then right
        [("v3", 0, 4)],  # right video, IoU 0.4
    ]
    gts = [[("v1", 0, 10)], [("v3", 0, 10)]]
    r = corpus_recall_at_k(ranked, gts, ks=(1, 5), ious=(0.3, 0.5))
    assert r == {"R1@0.3": 0.5, "R1@0.5": 0.0, "R5@0.3": 1.0, "R5@0.5": 0.5, "n": 2.0}


def test_not_found_precision_recall():
    r = not_found_precision_recall([False, False, True, True], [False, True, False, True])
    assert (r["precision"], r["recall"], r["f1"]) == (0.5, 0.5, 0.5)
    assert (r["n"], r["n_pred_not_found"], r["n_gt_not_found"]) == (4.0, 2.0, 2.0)
    never = not_found_precision_recall([True, True], [False, True])
    assert math.isnan(never["precision"]) and never["recall"] == 0.0


# --------------------------------------------------------------------------- submission files


def test_submission_round_trip_with_numpy_values(tmp_path):
    rows = [
        {
            "qid": np.int64(3),
            "query": "q",
            "vid": "v_0.0_150.0",
            "pred_relevant_windows": np.array([[0.0, 10.0, 0.9]], dtype=np.float32),
            "pred_saliency_scores": np.array([0.5, -0.25]),
        }
    ]
    path = tmp_path / "sub.jsonl"
    write_submission(path, rows)
    back = read_submission(path)
    assert back == [
        {
            "qid": 3,
            "query": "q",
            "vid": "v_0.0_150.0",
            "pred_relevant_windows": [[0.0, 10.0, pytest.approx(0.9)]],
            "pred_saliency_scores": [0.5, -0.25],
        }
    ]


def test_read_submission_reports_file_and_line(tmp_path):
    path = tmp_path / "sub.jsonl"
    path.write_text(
        '{"qid": 1, "query": "q", "vid": "v", "pred_relevant_windows": [[0, 1, 1]]}\n'
        '{"qid": 2, "query": "q", "vid": "v"}\n'
    )
    with pytest.raises(ConfigError, match=r"sub\.jsonl:2: missing field 'pred_relevant_windows'"):
        read_submission(path)
    with pytest.raises(ConfigError, match="missing field 'vid'"):
        write_submission(
            tmp_path / "out.jsonl", [{"qid": 1, "query": "q", "pred_relevant_windows": []}]
        )
