"""Rebuild the bundled default model (core/bundled/siglip-tiny-random) from scratch.

    .venv/bin/python scripts/build_bundled_model.py

A tiny SigLIP with the real transformers architecture and *random* weights
(seed 0): it runs the whole pipeline offline but has no semantics. The output
is deterministic, so rebuilding changes no bytes of the weights.
"""

from __future__ import annotations

import shutil

from core.model.backbone import bundled_model_dir
from core.model.tiny import TinySiglipConfig, build_tiny_siglip

if __name__ == "__main__":
    out = bundled_model_dir()
    shutil.rmtree(out, ignore_errors=True)
    build_tiny_siglip(out, TinySiglipConfig(image_size=64, patch_size=16, hidden_size=64, intermediate_size=128,
                                            num_layers=2, num_heads=2, text_max_len=16, seed=0))
    print(out)
