"""LoRA mode's frames: the annotated videos decoded from the archive (LoRA trains on pixels).

``lora_frames_loader(archive)`` is the ``lora_frames`` argument of
:func:`groundzero.training.job.train_head`; the index only supplies which videos and
at what rate (its fps), the archive the pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from groundzero.errors import ConfigError

if TYPE_CHECKING:
    from groundzero.training.job import FramesLoader


def lora_frames_loader(archive: str | Path | None) -> FramesLoader:
    """A ``FramesLoader`` over the local folder ``archive`` (the videos the index was built from).

    The loader maps (backbone, video ids, fps) to (the backbone's LoRA image encoder, video id ->
    uint8 frames (T, S, S, 3)); a video id is a file's name without its extension. Raises
    ConfigError (``field="archive"``) when ``archive`` is None; the loader raises ConfigError
    for an annotated, indexed video that is not in the archive.
    """
    if archive is None:
        raise ConfigError("LoRA fine-tuning reads video frames: pass archive, the folder of the "
                          "indexed videos", field="archive")
    root = Path(archive)

    def load(backbone, vids: set[str], fps: float):
        from groundzero.indexer.decode import DecodeConfig, iter_frames
        from groundzero.indexer.sources import list_local
        from groundzero.model.identity import image_resample
        from groundzero.model.lora import LoraImageEncoder

        if backbone.naflex:  # frames of each video have their own shape; LoRA batches frames of many videos
            from groundzero.errors import UnsupportedModelError

            raise UnsupportedModelError(f"LoRA fine-tuning needs a fixed-resolution SigLIP checkpoint; "
                                        f"{backbone.identity.name} is a NaFlex one (train a head instead)")
        files = {Path(e.rel_path).stem: e.uri for e in list_local(root)}
        frames = {}
        for vid in sorted(vids):
            if vid not in files:
                raise ConfigError(f"LoRA: video {vid} is in the index but not under archive {root}",
                                  field="archive")
            dcfg = DecodeConfig(fps=fps, size=backbone.image_size, resample=image_resample(backbone.model_dir))
            chunks = list(iter_frames(files[vid], dcfg))  # the frames indexing gave the backbone
            frames[vid] = np.concatenate([c.frames for c in chunks])  # (T, S, S, 3) uint8
        return LoraImageEncoder(backbone), frames

    return load
