"""Train a small SigLIP dual encoder from scratch on (frame, caption) pairs.

Builds the real transformers ``SiglipModel`` from a small config, trains it with
SigLIP's pairwise sigmoid loss (Zhai et al. 2023), and saves an ordinary
``save_pretrained`` directory (config.json, model.safetensors, tokenizer files,
preprocessor_config.json) that :class:`groundzero.model.backbone.Backbone` loads like
any other checkpoint. Used to ship the demo backbone trained on synthetic frames.

Train/inference parity: images are normalised exactly as ``Backbone.image_features``
does ((x / 255 - 0.5) / 0.5) and captions are tokenised exactly as
``Backbone._tokenize`` does (lower-cased, ``padding="max_length"``, only
``input_ids`` passed, so the text tower sees the same padded sequence and its
last-position pooler reads the same slot). No augmentation: a horizontal flip
would contradict "moving left/right" captions, and the synthetic frames need none.

Repeated captions: two frames of one batch with the same caption (after
tokenisation, so "A red circle" and "a red  circle" are one caption) are a
positive pair, not a negative one; otherwise the loss would push a frame away
from its own caption. :func:`~groundzero.synthetic.siglip_model.sigmoid_loss` takes
that mask explicitly.

Modules: :mod:`~groundzero.synthetic.siglip_config` (sizes and optimisation),
:mod:`~groundzero.synthetic.siglip_tokenizer` (the word-level tokenizer),
:mod:`~groundzero.synthetic.siglip_model` (the model, its embeddings and loss), and this
one (the data split, the training loop, held-out accuracy, saving).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from groundzero.errors import ConfigError
from groundzero.model.backbone import pick_device
from groundzero.synthetic.clip_check import CLIP_ADAPTER_FILE
from groundzero.synthetic.siglip_config import SiglipTrainConfig
from groundzero.synthetic.siglip_model import (
    build_siglip,
    image_embeddings,
    item_embeddings,
    positive_mask,
    preprocessor_config,
    sigmoid_loss,
    text_embeddings,
)
from groundzero.synthetic.siglip_tokenizer import caption_classes, train_tokenizer

log = logging.getLogger(__name__)


def train_siglip(images: np.ndarray, captions: list[str], out_dir: str | Path,
                 cfg: SiglipTrainConfig = SiglipTrainConfig(),  # noqa: B008 (frozen dataclass)
                 on_epoch: Callable[[int, dict], None] | None = None,
                 groups: np.ndarray | None = None, items: np.ndarray | None = None) -> dict:
    """Train a SigLIP from scratch on (image or clip, caption) pairs and save it to ``out_dir``.

    Clips: an item of two frames a -> b is embedded as

        c = (x_a + x_b) / 2 + A (x_b - x_a),   x = L2-normalised image features (D,)

    with A a (D, D) matrix, zero at the start, trained with the towers and saved
    beside them (:data:`~groundzero.model.backbone.CLIP_ADAPTER_FILE`; search uses it to check
    candidate spans, ``groundzero.synthetic.clip_check``). A single frame (a = b) is its own
    embedding, as at index time. The sigmoid loss then asks the text tower to
    place "moving left" and "moving right" where the frames' change tells them
    apart, which single frames never can; a clip and its time reversal in one
    batch (``frames_and_captions(reverse_fraction=)``) differ only in the sign
    of that change.

    Args:
        images: uint8 (N, S, S, 3) RGB, S = ``cfg.image_size``.
        captions: M strings (M = N without ``items``), caption i describing item i (repeats allowed).
        out_dir: written with config.json, model.safetensors, tokenizer files,
            preprocessor_config.json and siglip_train.json (config + history); with clips
            also :data:`CLIP_ADAPTER_FILE` (A).
        on_epoch: called after each epoch with (epoch starting at 1, that epoch's record).
        groups: int64 (M,) or None; items with equal ids (consecutive indices, e.g. the
            contrast pairs of ``frames_and_captions``) are held out together and shuffled
            as one unit, so they share a batch (except where a batch boundary cuts one).
        items: int64 (M, 2) or None; item i shows frame ``items[i, 0]`` then ``items[i, 1]``
            (equal for a single frame). None: every image is one single-frame item.
    Returns:
        history: ``loss`` (per-epoch mean training loss), ``val_accuracy`` (per epoch:
        share of held-out single frames whose best-scoring caption among the distinct
        held-out captions is their own; None without a held-out split),
        ``val_reverse_accuracy`` (per epoch: share of held-out clips that have their time
        reversal in their group and score their own caption above the reversed one's;
        None without such pairs), ``epoch_sec``, ``lr`` (at the end of each epoch),
        ``n_train``, ``n_val``, ``n_val_captions``, ``n_clips``, ``steps``, ``device``,
        ``logit_scale`` (t) and ``logit_bias`` at the end.
    """
    cfg.validate()
    items = _check_data(images, captions, cfg, items)
    out = Path(out_dir)
    dev = pick_device(cfg.device)
    tokenizer = train_tokenizer(captions, out, cfg.vocab_size, cfg.text_max_len)
    ids, cls = caption_classes(tokenizer, captions, cfg.text_max_len)  # (C, L), (M,)
    gen = torch.Generator().manual_seed(cfg.seed)
    units = _units(len(items), groups)
    train_units, val_units = _split(len(units), cfg.val_fraction, gen)
    train_idx, val_idx = _gather(units, train_units), _gather(units, val_units)
    model = build_siglip(cfg, len(tokenizer), tokenizer.eos_token_id).to(dev).train()
    n_clips = int((items[:, 0] != items[:, 1]).sum())
    adapter = None
    if n_clips:  # no clips: no adapter, and the run is the single-frame one exactly
        adapter = torch.nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=False).to(dev)
        torch.nn.init.zeros_(adapter.weight)
    frames = torch.from_numpy(np.ascontiguousarray(images)).to(dev)  # uint8 (N, S, S, 3)
    pairs = torch.from_numpy(items).to(dev)  # (M, 2)
    ids, cls = ids.to(dev), cls.to(dev)
    steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
    opt, sched = _optimizer(model, cfg, cfg.epochs * steps_per_epoch, adapter)
    reverse_of = _reverse_partners(items, groups, val_idx)
    single = val_idx[items[val_idx.numpy(), 0] == items[val_idx.numpy(), 1]].to(dev)  # held-out single frames
    history: dict = {"loss": [], "val_accuracy": [], "val_reverse_accuracy": [], "epoch_sec": [], "lr": []}
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        order = _gather(units, train_units[torch.randperm(len(train_units), generator=gen)])
        loss = _train_epoch(model, adapter, opt, sched, frames, pairs, ids, cls, order, cfg, dev)
        acc = _val_accuracy(model, frames[pairs[single, 0]], ids, cls[single], cfg.batch_size, dev) \
            if len(single) else None
        rev = _reverse_accuracy(model, adapter, frames, pairs, ids, cls, reverse_of, dev)
        record = {"epoch": epoch, "loss": loss, "val_accuracy": acc, "val_reverse_accuracy": rev,
                  "epoch_sec": time.perf_counter() - t0, "lr": sched.get_last_lr()[0]}
        for key, values in history.items():
            values.append(record[key])
        log.info("siglip epoch %d/%d: loss %.4f, held-out acc %s, reverse acc %s, %.1fs",
                 epoch, cfg.epochs, loss, acc, rev, record["epoch_sec"])
        if on_epoch is not None:
            on_epoch(epoch, record)
    history.update(n_train=len(train_idx), n_val=len(val_idx),
                   n_val_captions=int(torch.unique(cls[val_idx.to(dev)]).numel()), n_clips=n_clips,
                   steps=cfg.epochs * steps_per_epoch, device=str(dev),
                   logit_scale=model.logit_scale.exp().item(), logit_bias=model.logit_bias.item())
    _save(model.cpu().eval(), out, cfg, history)
    if adapter is not None:  # the clip term A: Backbone.embed_clips, read by the clip check (groundzero.synthetic.clip_check)
        from safetensors.torch import save_file

        save_file({"weight": adapter.weight.detach().cpu().contiguous()}, str(out / CLIP_ADAPTER_FILE))
    return history


def _check_data(images: np.ndarray, captions: list[str], cfg: SiglipTrainConfig,
                items: np.ndarray | None) -> np.ndarray:
    """Validate the data; returns the items, int64 (M, 2) (one per image when ``items`` is None)."""
    s = cfg.image_size
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 \
            or images.shape[1:] != (s, s, 3):
        got = (getattr(images, "dtype", type(images)), getattr(images, "shape", None))
        raise ConfigError(f"images must be uint8 (N, {s}, {s}, 3) for image_size={s}, got {got}")
    if items is None:
        items = np.repeat(np.arange(len(images), dtype=np.int64)[:, None], 2, axis=1)
    items = np.asarray(items)
    if items.ndim != 2 or items.shape[1] != 2 or not np.issubdtype(items.dtype, np.integer) \
            or (items.size and (items.min() < 0 or items.max() >= len(images))):
        raise ConfigError(f"items must be int (M, 2) indices into the {len(images)} images, got {items.shape}")
    if len(captions) != len(items):
        raise ConfigError(f"need one caption per item: {len(items)} items, {len(captions)} captions")
    if len(items) - _n_val(len(items), cfg.val_fraction) < 2:
        raise ConfigError(f"need at least 2 training items after the held-out split, got {len(items)} items")
    return items.astype(np.int64)


def _reverse_partners(items: np.ndarray, groups: np.ndarray | None, val_idx: torch.Tensor) -> torch.Tensor:
    """Held-out clips whose group holds their time reversal: int64 (P, 2) rows (clip, reversed clip)."""
    rows = []
    if groups is not None:
        val = set(val_idx.tolist())
        for i in sorted(val):
            for j in (i - 1, i + 1):
                if j in val and groups[j] == groups[i] and items[i, 0] != items[i, 1] \
                        and (items[j] == items[i][::-1]).all():
                    rows.append((i, j))
    return torch.tensor(rows, dtype=torch.int64).reshape(-1, 2)


def _units(n: int, groups: np.ndarray | None) -> list[torch.Tensor]:
    """The shuffling units: one int64 tensor of image indices per group (each image alone without groups)."""
    if groups is None:
        return list(torch.arange(n).reshape(-1, 1))
    groups = np.asarray(groups)
    if groups.shape != (n,) or (n and np.any(np.diff(groups) < 0)):
        raise ConfigError(f"groups must be (N,) = ({n},) non-decreasing ids, one per image; got {groups.shape}")
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]]) if n else np.empty(0, np.int64)
    return [torch.arange(a, b) for a, b in zip(starts, np.r_[starts[1:], n])]


def _gather(units: list[torch.Tensor], which: torch.Tensor) -> torch.Tensor:
    """Image indices of the units ``which`` (int64), in that order: int64 (M,)."""
    return torch.cat([units[int(u)] for u in which]) if len(which) else torch.empty(0, dtype=torch.int64)


def _n_val(n: int, val_fraction: float) -> int:
    return 0 if val_fraction == 0 else max(1, round(n * val_fraction))


def _split(n: int, val_fraction: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (train, held-out) index split: int64 (N - V,), (V,)."""
    perm = torch.randperm(n, generator=gen)
    n_val = _n_val(n, val_fraction)
    return perm[n_val:], perm[:n_val]


def _optimizer(model: torch.nn.Module, cfg: SiglipTrainConfig, total_steps: int,
               adapter: torch.nn.Module | None = None):
    """AdamW (decay on matrices only) + linear warm-up then cosine decay to 0, stepped per batch."""
    params = [*model.parameters(), *(adapter.parameters() if adapter is not None else ())]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]  # biases, norms, logit scale/bias
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _train_epoch(model, adapter, opt, sched, frames: torch.Tensor, pairs: torch.Tensor, ids: torch.Tensor,
                 cls: torch.Tensor, order: torch.Tensor, cfg: SiglipTrainConfig, dev: torch.device) -> float:
    """One pass over ``order`` (int64 item indices); returns the mean batch loss."""
    model.train()
    params = [*model.parameters(), *(adapter.parameters() if adapter is not None else ())]
    losses = []
    for start in range(0, len(order), cfg.batch_size):
        b = order[start:start + cfg.batch_size].to(dev)  # (B,)
        if len(b) < 2:  # a 1-pair batch has no negatives
            continue
        batch_cls = cls[b]  # (B,)
        # The text tower runs once per distinct caption in the batch; rows are then
        # gathered back to (B, D) — the same values as running it on all B captions.
        uniq, inv = torch.unique(batch_cls, return_inverse=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            img = item_embeddings(model, adapter, frames, pairs[b])  # (B, D)
            txt = text_embeddings(model, ids[uniq])[inv]  # (B, D)
        loss = sigmoid_loss(img, txt, model.logit_scale, model.logit_bias, positive_mask(batch_cls))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        losses.append(loss.item())
    return float(np.mean(losses))


@torch.inference_mode()
def _val_accuracy(model, frames: torch.Tensor, ids: torch.Tensor, cls: torch.Tensor,
                  batch_size: int, dev: torch.device) -> float:
    """Image -> text top-1 accuracy of uint8 (V, S, S, 3) frames among their V captions' distinct ones."""
    model.eval()
    uniq, target = torch.unique(cls, return_inverse=True)  # (U,), (V,)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        txt = F.normalize(text_embeddings(model, ids[uniq]).float(), dim=-1)  # (U, D)
        img = torch.cat([image_embeddings(model, frames[i:i + batch_size]).float()
                         for i in range(0, len(frames), batch_size)])  # (V, D)
    pred = (F.normalize(img, dim=-1) @ txt.T).argmax(dim=1)  # (V,)
    return float((pred == target).float().mean())


@torch.inference_mode()
def _reverse_accuracy(model, adapter, frames: torch.Tensor, pairs: torch.Tensor, ids: torch.Tensor,
                      cls: torch.Tensor, reverse_of: torch.Tensor, dev: torch.device) -> float | None:
    """Share of (clip, reversed clip) rows whose clip scores its own caption above the reversed one's."""
    if len(reverse_of) == 0 or adapter is None:
        return None
    model.eval()
    reverse_of = reverse_of.to(dev)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        clip = F.normalize(item_embeddings(model, adapter, frames, pairs[reverse_of[:, 0]]).float(), dim=-1)
        own = F.normalize(text_embeddings(model, ids[cls[reverse_of[:, 0]]]).float(), dim=-1)
        other = F.normalize(text_embeddings(model, ids[cls[reverse_of[:, 1]]]).float(), dim=-1)
    return float(((clip * own).sum(-1) > (clip * other).sum(-1)).float().mean())


def _save(model, out: Path, cfg: SiglipTrainConfig, history: dict) -> None:
    """Weights + config via save_pretrained, preprocessor config, and the run's record."""
    model.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor_config(cfg.image_size), indent=2))
    (out / "siglip_train.json").write_text(json.dumps({"config": asdict(cfg), "history": history}, indent=2))
