"""The bundled demo model: a small SigLIP trained on the synthetic archive, and its grounding head.

Registered as the model name ``demo`` (:mod:`groundzero.plugins`); rebuilt by
``python -m groundzero.synthetic.build --install``.
"""

from __future__ import annotations

from pathlib import Path

from groundzero.plugins import ModelBundle

BUNDLED = Path(__file__).resolve().parent / "bundled"


def demo_model() -> ModelBundle:
    """The demo backbone (real transformers SigLIP, 64 px, 128-d) and its head.

    It knows shapes, colours, positions, titles and backgrounds, nothing of real video.
    """
    return ModelBundle(backbone_dir=BUNDLED / "backbone", head_dir=BUNDLED / "head")
