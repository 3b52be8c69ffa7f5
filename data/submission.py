"""QVHighlights submission files: write, read, and score one against ground truth."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from groundzero.data.annotations import iter_jsonl
from groundzero.data.metrics import qvhighlights_metrics, require_field, windows_array
from groundzero.errors import ConfigError

SUBMISSION_FIELDS = ("qid", "query", "vid", "pred_relevant_windows")


def write_submission(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write a QVHighlights submission jsonl.

    Each row needs ``qid``, ``query``, ``vid`` and ``pred_relevant_windows``
    (``[[start, end, score], ...]``, best first); other keys (e.g.
    ``pred_saliency_scores``) are written as given. numpy scalars and arrays
    are converted to plain JSON numbers and lists.
    """
    path = Path(path)
    lines = [
        json.dumps(_submission_row(row, f"row {i}"), default=_json_default)
        for i, row in enumerate(rows)
    ]
    try:
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot write submission ({e.strerror})") from e


def read_submission(path: str | Path) -> list[dict[str, Any]]:
    """Read a QVHighlights submission jsonl written by :func:`write_submission` (or anyone).

    Returns the rows as parsed; raises ConfigError with ``file:line`` when a
    line is not JSON, lacks a required field or has malformed windows.
    """
    path = Path(path)
    return [_submission_row(obj, f"{path}:{line_no}") for line_no, obj in iter_jsonl(path)]


def _submission_row(row: Any, where: str) -> dict[str, Any]:
    """Validate one submission row; windows become plain ``[[s, e, score], ...]`` lists."""
    for key in SUBMISSION_FIELDS:
        require_field(row, key, where)
    out = dict(row)
    out["pred_relevant_windows"] = windows_array(row["pred_relevant_windows"], 3, where).tolist()
    return out


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def evaluate_submission(predictions_path: str | Path, queries: Sequence[Any]) -> dict[str, float]:
    """The official QVHighlights metrics of a submission file against ground-truth queries.

    ``queries``: :class:`~groundzero.data.annotations.MomentQuery` (``qid``, ``windows``), e.g.
    from ``read_annotations``. Queries without a true window are left out (as in
    :func:`qvhighlights_metrics`); predictions for qids not among the rest are ignored.
    Raises ConfigError for a missing or malformed file, or a query without a prediction.
    """
    path = Path(predictions_path)
    if not path.is_file():
        raise ConfigError(f"predictions file {path} does not exist")
    gts = [{"qid": q.qid, "relevant_windows": [list(w) for w in q.windows]}
           for q in queries if q.windows]
    qids = {str(g["qid"]) for g in gts}
    preds = [p for p in read_submission(path) if str(p["qid"]) in qids]
    return qvhighlights_metrics(preds, gts)
