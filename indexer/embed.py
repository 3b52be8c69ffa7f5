"""The embed stage: a Ray Data callable class running the SigLIP image tower.

Ray builds one instance per actor (weights load once, in ``__init__``) and
calls it on batches of decoded rows. It can also be called directly on a
hand-built batch, without Ray, which is how the tests exercise it.
"""

from __future__ import annotations

import time

import numpy as np

from groundzero.model.backbone import Backbone


class EmbedFrames:
    """Batch in (numpy dict of columns)::

        video_id (N,) str, frame_idx (N,) int64, timestamp_sec (N,) float64,
        frame (N, S, S, 3) uint8, end_meta (N,) str  ("" for frame rows)
        (NaFlex: frame (N, L, p*p*3) uint8 patch sequences and spatial (N, 2) int64)

    Batch out: the same columns with ``frame`` replaced by ``embedding``
    (N, D) float32, L2-normalised, plus ``embed_s`` and ``embed_cpu_s`` (N,) float64: the call's
    wall and CPU seconds shared out over its rows (how busy the stage is, per video). End-of-video marker rows (non-empty
    ``end_meta``, see :mod:`groundzero.indexer.decode`) pass through with a zero embedding.
    """

    def __init__(self, model: str, device: str = "auto", max_batch: int = 64, precision: str | None = None,
                 threads: int | None = None):
        """``precision``: fp32 | bf16 | int8 (the run's, :func:`groundzero.indexer.embed_plan.with_precision`);
        None: the backbone's default. ``threads``: torch intra-op threads (the Ray CPUs this actor
        reserved; Ray starts actors with ``OMP_NUM_THREADS=1``); None leaves torch's setting."""
        import ray
        import torch

        from groundzero.indexer.ray_runtime import actor_device
        from groundzero.model.precision import torch_dtype

        if threads is not None:
            torch.set_num_threads(threads)
        gpus = ray.get_gpu_ids() if ray.is_initialized() else []  # inside an actor: the GPU Ray gave it
        dtype = torch_dtype(precision) if precision is not None else None
        self.backbone = Backbone(model, device=actor_device(device, gpus), dtype=dtype,
                                 int8_images=precision == "int8", threads=threads)
        self.max_batch = max_batch

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        wall, cpu = time.perf_counter(), time.process_time()
        frames = batch.pop("frame")
        spatial = batch.pop("spatial", None)
        is_frame = np.asarray([m == "" for m in batch["end_meta"]], bool)
        emb = np.zeros((len(frames), self.backbone.embed_dim), np.float32)
        idx = np.flatnonzero(is_frame)
        for s in range(0, len(idx), self.max_batch):
            sel = idx[s : s + self.max_batch]
            emb[sel] = self.backbone.embed_images(frames[sel]) if spatial is None else \
                self.backbone.embed_patches(frames[sel], spatial[sel])
        batch["embedding"] = emb
        n = max(len(frames), 1)
        batch["embed_s"] = np.full(len(frames), (time.perf_counter() - wall) / n)
        batch["embed_cpu_s"] = np.full(len(frames), (time.process_time() - cpu) / n)
        return batch
