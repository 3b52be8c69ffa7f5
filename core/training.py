"""Training a grounding head from an index: annotations + stored frame embeddings -> checkpoint.

Shared by ``groundzero train`` and ``scripts/build_demo_model.py``. Only Parquet is
read (no decoding), except in LoRA mode, where the caller supplies decoded frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from core.errors import ConfigError
from core.model.annotations import read_annotations
from core.model.backbone import Backbone, pick_device, read_identity
from core.model.checkpoint import save_model
from core.model.grounder import GroundingModel, GroundingModelConfig
from core.model.train import TrainConfig, train
from core.model.train_data import GroundingDataset, TextFeatures
from core.store.training_set import video_frames_by_id

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
    #: text-tower states the head reads per word (``Backbone.encode_text_tokens``; -1 = its output)
    text_layers: tuple[int, ...] = (-1,)
    #: frame offsets of the head's motion input (``RGEncoderConfig.motion_offsets``); () = none
    motion_offsets: tuple[int, ...] = ()
    #: frame offsets of the context tokens' motion term (``GroundingModelConfig.context_motion_offsets``)
    context_motion_offsets: tuple[int, ...] = ()


@dataclass
class HeadResult:
    history: list[dict]
    n_queries: int
    missing_videos: list[str]
    backbone_dir: str | None = None  #: LoRA mode: the merged, fine-tuned backbone


def text_features(backbone: Backbone, queries: list, batch: int = 64,
                  layers: tuple[int, ...] = (-1,)) -> dict[str, TextFeatures]:
    """Word states of ``layers`` (real tokens only) and pooled embedding of every query."""
    out = {}
    for i in range(0, len(queries), batch):
        chunk = queries[i : i + batch]
        states, masks = backbone.encode_text_tokens([q.query for q in chunk], layers)
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
    text = text_features(backbone, used, layers=job.text_layers)
    params = manifest.params
    encoder, embeddings = None, videos
    if lora_frames is not None:
        encoder, videos = lora_frames(backbone, set(videos), params.fps)
    data = GroundingDataset(used, videos, text, params.fps, params.proposals, seed=job.train.seed,
                            neg_fraction=job.train.neg_fraction, hard_negatives=job.train.hard_negatives,
                            embeddings=embeddings, sentence_negatives=job.train.sentence_negatives,
                            sentence_pool=max(4, job.train.sentence_negatives))
    D, Dt = backbone.embed_dim, next(iter(text.values())).tokens.shape[1]
    cfg = GroundingModelConfig.preset(job.size, D, Dt)
    cfg = replace(cfg, text_layers=tuple(job.text_layers), context_motion_offsets=tuple(job.context_motion_offsets),
                  encoder=replace(cfg.encoder, motion_offsets=tuple(job.motion_offsets)))
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
