"""On a Ray cluster the driver (often a CPU-only head) decides the embed actors' device:
the cluster's GPUs count, not only the driver's own."""

import pytest
import torch

from groundzero.errors import ConfigError
from groundzero.indexer.ray_runtime import embed_device


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only driver case")
def test_explicit_cuda_is_trusted_only_when_joining_a_cluster(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ConfigError, match="no CUDA device"):
        embed_device("cuda")
    assert embed_device("auto").type == "cpu" and embed_device("cpu").type == "cpu"
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")  # a CPU head whose workers have GPUs
    assert embed_device("cuda") == torch.device("cuda")
    assert embed_device("cpu").type == "cpu"
