"""Configuration of a from-scratch SigLIP (:mod:`groundzero.synthetic.siglip_train`): sizes, optimisation, init.

Also the constants shared with the checkpoint it saves: SigLIP's image normalisation
(written to ``preprocessor_config.json``) and the tokenizer's special tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from groundzero.errors import ConfigError

#: SigLIP's image normalisation, written to preprocessor_config.json and read back by Backbone.
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)
#: Special tokens, in id order: <pad> = 0, <unk> = 1, </s> = 2 (as model/tiny.py).
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
