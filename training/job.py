"""Training a grounding head from an index: annotations + stored frame embeddings -> checkpoint.

Shared by ``groundzero train`` and the synthetic demo build (``groundzero.synthetic.build``).
Only Parquet is read (no decoding), except in LoRA mode, where the caller supplies decoded frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from groundzero.data.annotations import read_annotations
from groundzero.errors import ConfigError
from groundzero.model.backbone import Backbone, pick_device
from groundzero.model.checkpoint import save_model
from groundzero.model.grounder import GroundingModel, GroundingModelConfig
from groundzero.model.identity import read_identity
from groundzero.store.training_set import video_frames_by_id
from groundzero.training.data import GroundingDataset, TextFeatures
from groundzero.training.loop import TrainConfig, train

#: LoRA mode: (backbone, video ids, fps) -> (trainable image encoder, vid -> uint8 frames (T, S, S, 3))
FramesLoader = Callable[[Backbone, set, float], tuple[torch.nn.Module, dict]]


@dataclass(frozen=True)
class HeadJob:
    index_dir: str
    annotations: str
    out: str
    fmt: str | None = None  #: annotation format; None = sniffed
    train: TrainConfig = field(default_factory=TrainConfig)
    size: str = "full"  #: model sizes: "full" (RGNet's), "small" (demo model), "tiny" (tests, smoke runs)
    device: str = "auto"
    resume: bool = False


@dataclass
class HeadResult:
    history: list[dict]
    n_queries: int
    missing_videos: list[str]
    backbone_dir: str | None = None  #: LoRA mode: the merged, fine-tuned backbone


def text_features(backbone: Backbone, queries: list, batch: int = 64) -> dict[str, TextFeatures]:
    """qid -> word states (L_q, Dt) of the query's real tokens and its pooled embedding (D,)."""
    out = {}
    for i in range(0, len(queries), batch):
        chunk = queries[i : i + batch]
        states, masks = backbone.encode_text_tokens([q.query for q in chunk])
        pooled = backbone.embed_texts([q.query for q in chunk])
        for q, s, m, p in zip(chunk, states, masks, pooled):
            out[q.qid] = TextFeatures(s[m], np.ones(int(m.sum()), bool), p)
    return out


def train_head(job: HeadJob, on_epoch: Callable[[int, dict], None] | None = None,
               lora_frames: FramesLoader | None = None) -> HeadResult:
    job.train.validate()  # before anything is read: a bad setting fails in a second, not after the text pass
    queries = read_annotations(job.annotations, job.fmt)
    manifest, videos = video_frames_by_id(job.index_dir, {q.vid for q in queries})
    if not videos:
        raise ConfigError(f"none of the {len({q.vid for q in queries})} videos named in {job.annotations} is in "
                          f"{job.index_dir}; index files named after the annotation's video ids first")
    backbone = Backbone(manifest.model.name, device=job.device)
    used = [q for q in queries if q.vid in videos]
    text = text_features(backbone, used)
    params = manifest.params
    encoder = None
    if lora_frames is not None:
        encoder, videos = lora_frames(backbone, set(videos), params.fps)
    data = GroundingDataset(used, videos, text, params.fps, params.proposals, seed=job.train.seed,
                            neg_fraction=job.train.neg_fraction)
    D, Dt = backbone.embed_dim, next(iter(text.values())).tokens.shape[1]
    cfg = GroundingModelConfig.preset(job.size, D, Dt)
    torch.manual_seed(job.train.seed)
    model = GroundingModel(cfg)
    tcfg = TrainConfig(**{**job.train.__dict__, "device": str(pick_device(job.device))})
    extra = {"backbone": manifest.model.to_dict(), "index_params": params.to_dict(),
             "annotations": str(job.annotations), "n_queries": len(used)}
    out = Path(job.out)
    history = train(model, data, tcfg, out, resume=job.resume, on_epoch=on_epoch, extra=extra,
                    image_encoder=encoder)
    result = HeadResult(history, len(used), data.missing)
    if encoder is not None:
        encoder.save_merged(out / "backbone")
        extra.update(backbone=read_identity(str(out / "backbone"))[1].to_dict(), lora=True)
        save_model(out, model, extra={**extra, "train": {"epochs": tcfg.epochs, "lr": tcfg.lr, "seed": tcfg.seed}})
        result.backbone_dir = str(out / "backbone")
    return result
