"""Train a small SigLIP dual encoder from scratch on (frame, caption) pairs.

Builds the real transformers ``SiglipModel`` from a small config, trains it with
SigLIP's pairwise sigmoid loss (Zhai et al. 2023), and saves an ordinary
``save_pretrained`` directory (config.json, model.safetensors, tokenizer files,
preprocessor_config.json) that :class:`core.model.backbone.Backbone` loads like
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
from its own caption. :func:`sigmoid_loss` takes that mask explicitly.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import ConfigError
from core.model.backbone import CLIP_ADAPTER_FILE, _pooled, pick_device

log = logging.getLogger(__name__)

#: SigLIP's image normalisation, written to preprocessor_config.json and read back by Backbone.
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)
#: Special tokens, in id order: <pad> = 0, <unk> = 1, </s> = 2 (as core/model/tiny.py).
SPECIAL_TOKENS = ("<pad>", "<unk>", "</s>")


@dataclass(frozen=True)
class SiglipTrainConfig:
    """Model sizes and optimisation of a from-scratch SigLIP (defaults: ~1.3-1.4 M parameters)."""

    image_size: int = 64  #: input frames are (S, S, 3) with S = image_size
    patch_size: int = 8
    hidden_size: int = 128  #: width of both towers and of the joint embedding
    num_layers: int = 4  #: transformer blocks per tower
    num_heads: int = 4
    intermediate_size: int = 256  #: MLP width
    text_max_len: int = 16  #: tokens per caption, </s> included
    vocab_size: int = 1024  #: upper bound; the trained word-level vocabulary may be smaller
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3  #: peak AdamW learning rate, after linear warm-up, then cosine to 0
    weight_decay: float = 0.1  #: on matrices only (not biases, norms, logit scale/bias)
    warmup_steps: int = 100
    grad_clip: float = 1.0  #: max global gradient norm; 0 disables clipping
    val_fraction: float = 0.1  #: held-out share of the images for retrieval accuracy
    seed: int = 0
    device: str = "auto"  #: "auto" -> CUDA when available (bf16 autocast), else CPU
    init_logit_scale: float = math.log(10.0)  #: log t; SigLIP paper init t = 10
    init_logit_bias: float = -10.0  #: b; SigLIP paper init
    #: initial vision position embeddings: "sincos-2d" (fixed 2-D sine-cosine table of MAE / the
    #: big_vision ViTs, then learned) or "random" (transformers' default init). See build_siglip.
    vision_pos_init: str = "sincos-2d"

    def validate(self) -> SiglipTrainConfig:
        """Raise :class:`ConfigError` naming the first out-of-range field."""
        checks = [
            (self.image_size % self.patch_size == 0, "image_size must be a multiple of patch_size",
             (self.image_size, self.patch_size)),
            (self.hidden_size % self.num_heads == 0, "hidden_size must be a multiple of num_heads",
             (self.hidden_size, self.num_heads)),
            (min(self.patch_size, self.num_layers, self.num_heads, self.intermediate_size) >= 1,
             "patch_size, num_layers, num_heads, intermediate_size must be >= 1",
             (self.patch_size, self.num_layers, self.num_heads, self.intermediate_size)),
            (self.text_max_len >= 2, "text_max_len must be >= 2 (one word + </s>)", self.text_max_len),
            (self.vocab_size > len(SPECIAL_TOKENS), "vocab_size must exceed the 3 special tokens",
             self.vocab_size),
            (self.epochs >= 1 and self.batch_size >= 2, "epochs must be >= 1 and batch_size >= 2",
             (self.epochs, self.batch_size)),
            (self.lr > 0 and self.weight_decay >= 0 and self.warmup_steps >= 0 and self.grad_clip >= 0,
             "lr must be > 0; weight_decay, warmup_steps, grad_clip >= 0",
             (self.lr, self.weight_decay, self.warmup_steps, self.grad_clip)),
            (0.0 <= self.val_fraction < 1.0, "val_fraction must be in [0, 1)", self.val_fraction),
            (self.vision_pos_init in ("sincos-2d", "random"), 'vision_pos_init must be "sincos-2d" or "random"',
             self.vision_pos_init),
            (self.vision_pos_init != "sincos-2d" or self.hidden_size % 4 == 0,
             "hidden_size must be a multiple of 4 for vision_pos_init='sincos-2d'", self.hidden_size),
        ]
        for ok, what, got in checks:
            if not ok:
                raise ConfigError(f"SiglipTrainConfig: {what}, got {got}")
        return self


# ---------------------------------------------------------------- tokenizer


def train_tokenizer(texts: list[str], out_dir: str | Path | None, vocab_size: int = 1024,
                    max_len: int = 16, add_eos: bool = True):
    """Train a lower-casing word-level tokenizer on ``texts`` and save it to ``out_dir``.

    Word-level rather than BPE: the captions come from a closed synthetic
    vocabulary, so one token per word wastes no positions of the 16, and a query
    word is either known exactly or ``<unk>`` — never split into pieces whose
    embeddings the model never learnt in that combination. It is also what
    ``core/model/tiny.py`` builds (``add_eos=False`` reproduces its vocabulary), so
    tiny.py could call this instead of its inline copy.

    Ids: ``<pad>`` 0, ``<unk>`` 1, ``</s>`` 2, then words by decreasing count (ties
    alphabetical), at most ``vocab_size`` entries in all. With ``add_eos`` every
    sequence ends in ``</s>`` (kept under truncation), as SigLIP's own tokenizers do.

    Returns:
        a ``PreTrainedTokenizerFast`` (``AutoTokenizer.from_pretrained(out_dir)`` loads it).
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    pad, unk, eos = SPECIAL_TOKENS
    tok = Tokenizer(models.WordLevel(unk_token=unk))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(list(texts), trainers.WordLevelTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS)))
    if add_eos:
        eos_id = tok.token_to_id(eos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"$A {eos}", pair=f"$A {eos} $B {eos}", special_tokens=[(eos, eos_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=pad, unk_token=unk, eos_token=eos,
                                   model_max_length=max_len)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        fast.save_pretrained(out_dir)
    return fast


def tokenize(tokenizer, texts: list[str], max_len: int) -> torch.Tensor:
    """Token ids exactly as ``Backbone._tokenize`` makes them: int64 (N, max_len)."""
    enc = tokenizer([t.lower() for t in texts], padding="max_length", truncation=True,
                    max_length=max_len, return_tensors="pt")
    return enc["input_ids"]


def caption_classes(tokenizer, captions: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct captions, as the model sees them (equal token ids = equal caption).

    Returns:
        ids: int64 (C, max_len), one row per distinct caption.
        cls: int64 (N,), index into ``ids`` of each caption.
    """
    strings, str_cls = np.unique(np.asarray(captions, dtype=object).astype(str), return_inverse=True)
    ids, inv = torch.unique(tokenize(tokenizer, list(strings), max_len), dim=0, return_inverse=True)
    return ids, inv[torch.from_numpy(str_cls.reshape(-1))]


# ---------------------------------------------------------------- model


def sincos_2d(grid: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 2-D sine-cosine position table of a ``grid x grid`` patch grid: (grid², dim).

    Row ``r * grid + c`` is patch (row r, column c) in the order SigLIP's patch
    embedding flattens them. Columns: [sin(c·ω), cos(c·ω), sin(r·ω), cos(r·ω)] with
    ω_i = temperature^(-i / (dim / 4)), i = 0…dim/4 - 1 (MAE's table; ``dim % 4 == 0``).
    """
    r, c = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                          indexing="ij")
    omega = temperature ** (-torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))  # (dim/4,)
    oc, orow = c.reshape(-1, 1) * omega, r.reshape(-1, 1) * omega  # (grid², dim/4) each
    return torch.cat([oc.sin(), oc.cos(), orow.sin(), orow.cos()], dim=1)


def build_siglip(cfg: SiglipTrainConfig, vocab_size: int, eos_token_id: int = 2):
    """A freshly initialised ``SiglipModel`` with the paper's logit scale/bias init.

    The vision position embeddings start as :func:`sincos_2d` (``cfg.vision_pos_init``)
    and stay learnable: same architecture and checkpoint format, another init. With
    transformers' random init a from-scratch tiny ViT trained on these captions does
    not learn where a shape is: a linear probe of a mover's x position from its
    embeddings gives R² ≈ 0 after the demo build's 846 steps (-0.045), and a temporal
    model cannot then tell "moving left" from "moving right". With the sine-cosine
    start the same recipe gives R² ≈ 0.8 (``bench/backbone_probe.py``; README,
    "Synthetic archive with known answers").
    """
    from transformers import SiglipConfig, SiglipModel

    common = {"hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
              "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads}
    config = SiglipConfig(
        text_config=dict(common, vocab_size=vocab_size, max_position_embeddings=cfg.text_max_len,
                         projection_size=cfg.hidden_size, pad_token_id=0, bos_token_id=None,
                         eos_token_id=eos_token_id),
        vision_config=dict(common, image_size=cfg.image_size, patch_size=cfg.patch_size),
    )
    torch.manual_seed(cfg.seed)
    model = SiglipModel(config)
    with torch.no_grad():
        model.logit_scale.fill_(cfg.init_logit_scale)
        model.logit_bias.fill_(cfg.init_logit_bias)
        if cfg.vision_pos_init == "sincos-2d":
            table = model.vision_model.embeddings.position_embedding.weight  # (grid², hidden)
            table.copy_(sincos_2d(cfg.image_size // cfg.patch_size, cfg.hidden_size))
    return model


def preprocessor_config(image_size: int) -> dict:
    """The ``preprocessor_config.json`` fields tiny.py writes (Backbone reads mean/std)."""
    return {
        "image_processor_type": "SiglipImageProcessor",
        "do_resize": True, "size": {"height": image_size, "width": image_size},
        "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": list(IMAGE_MEAN), "image_std": list(IMAGE_STD),
    }


def normalise_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (N, S, S, 3) -> float32 (N, 3, S, S), the same ops as ``Backbone.image_features``."""
    mean = torch.tensor(IMAGE_MEAN, dtype=torch.float32, device=frames.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, dtype=torch.float32, device=frames.device).view(1, 3, 1, 1)
    x = frames.permute(0, 3, 1, 2).float().div(255.0)  # (N, 3, S, S) in [0, 1]
    return (x - mean) / std


def image_embeddings(model, frames: torch.Tensor) -> torch.Tensor:
    """uint8 (N, S, S, 3) on the model's device -> pooled image features (N, D), unnormalised."""
    return _pooled(model.get_image_features(pixel_values=normalise_frames(frames)))


def text_embeddings(model, input_ids: torch.Tensor) -> torch.Tensor:
    """int64 (N, L) -> pooled text features (N, D), unnormalised; no attention mask, as Backbone."""
    return _pooled(model.get_text_features(input_ids=input_ids))


# ---------------------------------------------------------------- loss


def sigmoid_loss(img_emb: torch.Tensor, txt_emb: torch.Tensor, logit_scale: torch.Tensor | float,
                 logit_bias: torch.Tensor | float, positives: torch.Tensor | None = None) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss (Zhai et al. 2023, Algorithm 1).

    z_ij = t · <x_i, y_j> + b with t = exp(logit_scale) and x, y L2-normalised here;
    label l_ij = +1 for a positive pair, -1 otherwise;
    loss = -(1 / B) · Σ_ij log σ(l_ij · z_ij)  (sum over all B² pairs divided by B).

    Args:
        img_emb: (B, D) image features (normalised here).
        txt_emb: (B, D) text features, row i the caption of image i (normalised here).
        logit_scale: log t, as stored in ``SiglipModel.logit_scale``.
        logit_bias: b, as ``SiglipModel.logit_bias``.
        positives: bool (B, B), True where image i and caption j match; default the
            diagonal. Pass :func:`positive_mask` of the caption classes so that equal
            captions in one batch count as positives.
    Returns:
        scalar float32 loss.
    """
    x = F.normalize(img_emb.float(), dim=-1)
    y = F.normalize(txt_emb.float(), dim=-1)
    scale = torch.as_tensor(logit_scale, dtype=torch.float32, device=x.device).exp()
    logits = scale * x @ y.T + torch.as_tensor(logit_bias, dtype=torch.float32, device=x.device)  # (B, B)
    if positives is None:
        positives = torch.eye(len(x), dtype=torch.bool, device=x.device)
    labels = positives.float() * 2 - 1  # (B, B): +1 / -1
    return -F.logsigmoid(labels * logits).sum() / len(x)


def positive_mask(caption_cls: torch.Tensor) -> torch.Tensor:
    """int64 (B,) caption classes -> bool (B, B), True where the two captions are equal."""
    return caption_cls[:, None] == caption_cls[None, :]


# ---------------------------------------------------------------- training


def train_siglip(images: np.ndarray, captions: list[str], out_dir: str | Path,
                 cfg: SiglipTrainConfig = SiglipTrainConfig(),
                 on_epoch: Callable[[int, dict], None] | None = None,
                 groups: np.ndarray | None = None, items: np.ndarray | None = None) -> dict:
    """Train a SigLIP from scratch on (image or clip, caption) pairs and save it to ``out_dir``.

    Clips: an item of two frames a -> b is embedded as

        c = (x_a + x_b) / 2 + A (x_b - x_a),   x = L2-normalised image features (D,)

    with A a (D, D) matrix, zero at the start, trained with the towers and saved
    beside them (:data:`~core.model.backbone.CLIP_ADAPTER_FILE`; search uses it to check
    candidate spans, ``search/verify.py``). A single frame (a = b) is its own
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
    if adapter is not None:  # the clip term A: Backbone.embed_clips, read by search's span check (search/verify.py)
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


def item_embeddings(model, adapter: torch.nn.Module | None, frames: torch.Tensor,
                    pairs: torch.Tensor) -> torch.Tensor:
    """Embed items: int64 (B, 2) frame indices into uint8 (N, S, S, 3) ``frames`` -> (B, D).

    Without an adapter (no clips) the image features of ``pairs[:, 0]``, unnormalised;
    with one, ``(x_a + x_b) / 2 + A (x_b - x_a)`` of the L2-normalised features (see
    :func:`train_siglip`). Each distinct frame of the batch goes through the tower once.
    """
    if adapter is None:
        return image_embeddings(model, frames[pairs[:, 0]])
    uniq, inv = torch.unique(pairs.reshape(-1), return_inverse=True)
    x = F.normalize(image_embeddings(model, frames[uniq]).float(), dim=-1)[inv].view(len(pairs), 2, -1)
    return (x[:, 0] + x[:, 1]) / 2 + adapter(x[:, 1] - x[:, 0])


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
