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


def test_cuda_n_selects_that_gpu_under_a_local_ray():
    """--device cuda:N: a local Ray sees only GPU N, and the actor Ray places on it uses "cuda"."""
    from groundzero.errors import ConfigError
    from groundzero.indexer.ray_runtime import actor_device, gpu_index, visible_devices

    assert gpu_index("cuda:3") == 3 and gpu_index("cuda") is None and gpu_index("auto") is None
    assert visible_devices(3, None) == "3" and visible_devices(1, "4, 6,7") == "6"
    with pytest.raises(ConfigError, match="shows 2 GPUs"):
        visible_devices(2, "0,1")
    assert actor_device("cuda:3", [3]) == "cuda"  # Ray's CUDA_VISIBLE_DEVICES: its GPU is cuda:0 inside
    assert actor_device("cuda:3", []) == "cuda:3" and actor_device("cpu", []) == "cpu"
