"""bench/gpu_check.py runs end to end: a smoke run on the CPU, the full check on a CUDA GPU when present."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


def _run(workdir: Path, *args: str) -> dict:
    r = subprocess.run([sys.executable, str(SCRIPT), "--workdir", str(workdir), *args],
                       capture_output=True, text=True, timeout=1800, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((workdir / "gpu_check.json").read_text())


@pytest.mark.slow
def test_smoke_run_on_the_cpu(tmp_path):
    rep = _run(tmp_path, "--size", "tiny", "--minutes", "0.5", "--resolution", "160x90", "--device", "cpu",
               "--batch-size", "16", "--head-epochs", "1")
    assert rep["n_indexed"] == 1 and rep["frames"] == 30 and rep["frames_per_s"] > 0
    assert len(rep["head_loss"]) == 1 and rep["top_spans"] and rep["cpu_gpu_top1_equal"] is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_so400m_on_the_gpu(tmp_path):
    rep = _run(tmp_path)
    assert rep["n_indexed"] == 1 and rep["mfu"] is not None and rep["mfu"] > 0
    assert rep["cpu_gpu_top1_equal"] == 1.0, rep["top_spans"]
