"""LoRA adapters on the last blocks of the SigLIP vision tower (card stage 01).

The card fine-tunes SigLIP 2 So400m with LoRA on the query and value projections of
the last 4 vision transformer blocks (r = 4: 73,728 trainable parameters on So400m).
``target_modules=["q_proj", "v_proj"]`` alone would also hit the text tower, whose
modules have the same names, so the target is a regex limited to the vision
encoder's last ``n_blocks`` layers.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class LoraConfig:
    r: int = 4
    alpha: int = 8
    dropout: float = 0.0
    n_blocks: int = 4  #: adapt the last n vision blocks
    modules: tuple[str, ...] = ("q_proj", "v_proj")


def vision_target_regex(n_layers: int, cfg: LoraConfig) -> str:
    """Regex over module names matching ``modules`` in the vision encoder's last blocks."""
    first = max(0, n_layers - cfg.n_blocks)
    layers = "|".join(str(i) for i in range(first, n_layers))
    mods = "|".join(cfg.modules)
    return rf"vision_model\.encoder\.layers\.({layers})\.self_attn\.({mods})"


def add_vision_lora(siglip: nn.Module, cfg: LoraConfig = LoraConfig()) -> nn.Module:
    """Wrap a transformers ``SiglipModel`` with LoRA on its last vision blocks (peft).

    Everything else stays frozen; returns the peft model (``print_trainable_parameters``
    and ``save_pretrained`` work as usual, the adapter saved as safetensors).
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    n_layers = siglip.config.vision_config.num_hidden_layers
    peft_cfg = PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                              target_modules=vision_target_regex(n_layers, cfg))
    return get_peft_model(siglip, peft_cfg)


class LoraImageEncoder(nn.Module):
    """The backbone's image tower with LoRA adapters, as a trainable module.

    ``forward(frames uint8 (N, S, S, 3)) -> (N, D)`` L2-normalised embeddings, with
    gradients reaching only the adapters. :meth:`save_merged` writes a complete
    SigLIP checkpoint folder with the adapters merged in: a *new* backbone (new
    weights hash), so the archive must be indexed again with it.
    """

    def __init__(self, backbone, cfg: LoraConfig = LoraConfig()) -> None:
        super().__init__()
        self.backbone = backbone
        self.peft_model = add_vision_lora(backbone.model, cfg)
        self.peft_model.train()

    def forward(self, frames):
        return self.backbone.image_features(frames, model=self.peft_model)

    def save_merged(self, out_dir) -> None:
        """Merge the adapters into the tower and save the checkpoint, in the backbone's dtype.

        The merge ``W + (alpha / r) B A`` is computed in float32 and rounded to the backbone's
        dtype once: merged in bf16, the small LoRA update would be rounded away or distorted.
        """
        import shutil
        from pathlib import Path

        import torch

        out = Path(out_dir)
        dtype = next(self.peft_model.parameters()).dtype
        merged = self.peft_model.to(torch.float32).merge_and_unload().to(dtype)
        merged.save_pretrained(out)
        self.backbone.tokenizer.save_pretrained(out)
        pre = Path(self.backbone.model_dir) / "preprocessor_config.json"
        if pre.is_file():
            shutil.copy(pre, out / "preprocessor_config.json")
