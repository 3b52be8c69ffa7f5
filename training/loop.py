"""The training loop: AdamW, step LR schedule, gradient clipping, seeded, resumable.

RGNet's optimisation (notes §4): AdamW(lr, weight decay 1e-4), MultiStepLR(γ 0.1),
gradient-norm clip 0.1, no warm-up. Contrastive pairs (notes §9 point 2): we follow
the released code — in-batch negatives over the B² (query, window) pairs of the
batch's *positive* items, whatever their videos — rather than the paper's
same-video batches; same-video negatives still enter through the negative windows
(confidence and all-background decoder targets), drawn uniformly as in RGNet
(:mod:`groundzero.training.data`). ``retrieval_group`` G splits the batch's positives into
consecutive chunks of G, each its own G x G contrastive matrix (:func:`retrieval_groups`).

Schedule (notes §9 point 4): RGNet's Ego4D recipe is NaQ pre-training then a 1e-5
finetune with λ_cont = 0; NaQ is not available to us, so there is one stage with an
explicit learning rate (1e-4, the released scripts' value), λ_cont = 1 (``LossWeights``)
and one LR drop at 80 % of the epochs (the scripts drop at 120/150 and 25/35).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from groundzero.errors import ConfigError
from groundzero.model.checkpoint import load_model, load_optimizer, save_model, save_optimizer
from groundzero.model.context_tokens import info_nce
from groundzero.model.grounder import GroundingModel
from groundzero.model.losses import build_criterion
from groundzero.training.data import GroundingDataset, collate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-4
    lr_drop: tuple[int, ...] = (80,)  #: epochs at which the LR is multiplied by 0.1
    grad_clip: float = 0.1
    seed: int = 2020
    context_token_weight: float = 1.0  #: weight of the context tokens' InfoNCE
    #: positives per retrieval-contrastive group: None = every positive of the batch against every
    #: other (RGNet's B x B encoder passes); G = chunks of G (G x G each), about B / G times cheaper
    retrieval_group: int | None = None
    neg_fraction: float = 0.2  #: share of positive queries served as a negative window (GroundingDataset)
    save_every: int = 1  #: write the resumable checkpoint every this many epochs (and after the last)
    #: on CUDA, run forward passes and losses under bf16 autocast (weights and optimizer stay float32)
    amp: bool = True
    device: str = "cpu"

    def validate(self) -> TrainConfig:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}", field="epochs")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}", field="batch_size")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}", field="lr")
        if self.retrieval_group is not None and self.retrieval_group < 2:
            raise ConfigError(f"retrieval_group must be >= 2 (or None: all positives), got {self.retrieval_group}",
                              field="retrieval_group")
        return self


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(model: GroundingModel, data: GroundingDataset, cfg: TrainConfig, out_dir: str | Path,
          resume: bool = False, on_epoch: Callable[[int, dict], None] | None = None,
          extra: dict | None = None, image_encoder: torch.nn.Module | None = None) -> list[dict]:
    """Train, saving a resumable checkpoint to ``out_dir`` after every epoch.

    Returns the per-epoch mean of every loss. With ``resume``, continues from the
    epoch recorded in ``out_dir`` (weights, optimizer and scheduler restored).
    ``image_encoder`` (LoRA mode): a module mapping uint8 frames (N, S, S, 3) to (N, D)
    embeddings, trained jointly; the dataset then serves frames instead of embeddings.
    Resuming a LoRA run is not supported (its adapter is not checkpointed per epoch).
    """
    cfg.validate()
    out = Path(out_dir)
    seed_everything(cfg.seed)
    dev = torch.device(cfg.device)
    criterion = build_criterion(model.cfg.loss)
    params = list(model.parameters())
    if image_encoder is not None:
        if resume:
            raise ConfigError("resume is not supported with LoRA fine-tuning; start the run again", field="resume")
        params += [p for p in image_encoder.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.lr_drop), gamma=0.1)
    start, history = 0, []
    if resume and (out / "trainer_state.json").is_file():
        loaded, _ = load_model(out, dev)
        model.load_state_dict(loaded.state_dict())
        state = load_optimizer(out, opt, sched)
        start, history = int(state["epoch"]), list(state["history"])
        torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
    model.to(dev)
    if on_epoch:
        on_epoch(start, {})  # training starts (resumed runs: from epoch ``start``)
    g = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(start, cfg.epochs):
        data.set_epoch(epoch)
        g.manual_seed(cfg.seed + epoch)
        loader = torch.utils.data.DataLoader(data, batch_size=cfg.batch_size, shuffle=True, generator=g,
                                             collate_fn=collate)
        model.train()
        sums: dict[str, float] = {}
        n = 0
        for batch in loader:
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda" and cfg.amp):
                if image_encoder is not None:
                    batch = _embed_frames(image_encoder, batch)
                losses = _step_losses(model, criterion, batch, dev, cfg)
                total = criterion.total({k: v for k, v in losses.items() if k != "loss_context_tokens"})
                total = total + cfg.context_token_weight * losses.get("loss_context_tokens", 0.0)
            opt.zero_grad(set_to_none=True)
            total.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            sums["loss_total"] = sums.get("loss_total", 0.0) + float(total.detach())
            n += 1
        sched.step()
        record = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], **{k: v / max(n, 1) for k, v in sums.items()}}
        history.append(record)
        if (epoch + 1) % cfg.save_every == 0 or epoch + 1 == cfg.epochs:
            save_model(out, model, extra={**(extra or {}), "train": {**asdict(cfg), "lr_drop": list(cfg.lr_drop)}})
            save_optimizer(out, opt, sched, {"epoch": epoch + 1, "history": history,
                                             "torch_rng": torch.get_rng_state().tolist()})
        if on_epoch:
            on_epoch(epoch + 1, record)
    (out / "history.json").write_text(json.dumps(history, indent=2))
    return history


def retrieval_groups(present: torch.Tensor, group: int | None) -> list[torch.Tensor]:
    """Index groups of a batch's positives for the retrieval-contrastive loss: consecutive chunks
    of ``group`` positives, each a (<= G,) long tensor of batch rows; a group of one (no negative
    to contrast with) is dropped.

    Args:
        present: (B,) 1 for a positive item.
        group: positives per group; None = all positives in one group (RGNet's B x B matrix).
    """
    pos = torch.nonzero(present > 0).flatten()
    chunks = torch.split(pos, group or max(len(pos), 1))
    return [c for c in chunks if len(c) > 1]


def _embed_frames(image_encoder: torch.nn.Module, batch: dict) -> dict:
    """LoRA mode: replace the batch's uint8 frames (B, T, S, S, 3) by their embeddings (B, T, D)."""
    frames, mask = batch["video"], batch["video_mask"]
    feats = image_encoder(frames[mask])  # (N_valid, D), differentiable through the adapters
    video = feats.new_zeros(mask.shape + feats.shape[-1:])  # (B, T, D)
    video[mask.to(feats.device)] = feats
    return {**batch, "video": video}


def same_sentence(text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, B) bool: samples i and j carry the same sentence (equal word states and masks).

    Args:
        text: (B, L, Dt) word states; mask: (B, L) bool.
    """
    eq_mask = (mask[:, None] == mask[None]).all(-1)  # (B, B)
    eq_text = (text[:, None] == text[None]).flatten(2).all(-1)  # (B, B)
    return eq_mask & eq_text


def _step_losses(model: GroundingModel, criterion, batch: dict, dev: torch.device, cfg: TrainConfig) -> dict:
    v, vm = batch["video"].to(dev), batch["video_mask"].to(dev)
    t, tm = batch["text"].to(dev), batch["text_mask"].to(dev)
    targets = {k: (x.to(dev) if torch.is_tensor(x) else x) for k, x in batch["targets"].items()}
    targets["span_labels"] = [{"spans": d["spans"].to(dev)} for d in targets["span_labels"]]
    outputs = model(v, vm, t, tm)
    pos = torch.nonzero(targets["present"] > 0).flatten()
    groups = retrieval_groups(targets["present"], cfg.retrieval_group)
    losses = criterion(outputs, targets)
    if groups:
        losses["loss_contrastive"] = sum(
            len(g) * criterion.contrastive_loss(model.retrieval_matrix(v[g], vm[g], t[g], tm[g]),
                                                same_sentence(t[g], tm[g]))
            for g in groups
        ) / sum(len(g) for g in groups)
    if len(pos) > 1 and cfg.context_token_weight > 0:
        tokens = model.context_tokens(v[pos], vm[pos])
        losses["loss_context_tokens"] = info_nce(tokens, batch["pooled"].to(dev)[pos])
    return losses
