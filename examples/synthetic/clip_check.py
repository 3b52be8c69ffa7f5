"""The clip check: the demo backbone's clip embedding re-scores the head's candidate spans.

A re-scorer plugin (:mod:`groundzero.plugins`, entry point ``clip-check``): the demo head's
``config.json`` declares ``"rescorer": {"name": "clip-check", "weight": w}``.

A backbone trained on two-frame clips (:func:`groundzero.synthetic.siglip_train.train_siglip`
with items) saves a (D, D) clip term A beside its weights (:data:`CLIP_ADAPTER_FILE`). It embeds
a whole span in the text space from its first third and its last third,

    c = normalize( (x_a + x_b) / 2 + A (x_b - x_a) ),   x_a, x_b = mean embeddings of the two thirds,

and the backbone's own sigmoid turns ``cos(c, q)`` into a match probability p. Each
candidate's score becomes ``score · p^w`` and its probability that the moment is there
at all is multiplied by p. w is chosen on the val split by
:func:`groundzero.synthetic.calibrate.calibrate_clip_weight`. Backbones without a clip term
cannot be checked; a head declaring the check on such a backbone is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from groundzero.errors import ConfigError, ModelNotFoundError
from groundzero.model.backbone import Backbone

#: Optional (D, D) clip term A beside a backbone trained on two-frame clips.
CLIP_ADAPTER_FILE = "clip_adapter.safetensors"


def load_clip_adapter(model_dir: Path, dim: int) -> np.ndarray | None:
    """float32 (D, D) A from ``model_dir/clip_adapter.safetensors``, or None when there is none."""
    path = Path(model_dir) / CLIP_ADAPTER_FILE
    if not path.is_file():
        return None
    from safetensors.numpy import load_file

    weight = load_file(str(path)).get("weight")
    if weight is None or weight.shape != (dim, dim):
        raise ModelNotFoundError(f"{path} must hold a ({dim}, {dim}) 'weight' for this {dim}-d backbone, got "
                                 f"{None if weight is None else weight.shape}; rebuild the backbone or remove the file")
    return weight.astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def embed_clips(adapter: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Embed clips from the frame embeddings of their beginnings and ends, in the text space.

    Args:
        adapter: float32 (D, D) the clip term A.
        first, last: float (S, D) mean frame embeddings of each clip's first and last part.
    Returns:
        float32 (S, D), L2-normalised ``(x_a + x_b) / 2 + A (x_b - x_a)`` with x_a, x_b the
        L2-normalised ``first`` and ``last``.
    """
    xa, xb = _unit(np.asarray(first, np.float32)), _unit(np.asarray(last, np.float32))
    return _unit((xa + xb) / 2 + (xb - xa) @ adapter.T)


def span_frames(spans_sec: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    """Seconds ``[start, end)`` (S, 2) -> int64 frame ranges ``[a, b)`` (S, 2), each at least one frame.

    >>> span_frames(np.array([[2.0, 5.0], [9.6, 9.7]]), 1.0, 10).tolist()
    [[2, 5], [9, 10]]
    """
    s = np.asarray(spans_sec, np.float64).reshape(-1, 2)
    a = np.clip(np.round(s[:, 0] * fps).astype(np.int64), 0, max(n_frames - 1, 0))
    b = np.clip(np.round(s[:, 1] * fps).astype(np.int64), a + 1, max(n_frames, 1))
    return np.stack([a, b], axis=1)


def clip_match(backbone: Backbone, adapter: np.ndarray, query: np.ndarray, frames: np.ndarray,
               ranges: np.ndarray) -> np.ndarray:
    """The backbone's match probability of each span's clip embedding with the query.

    Args:
        adapter: float32 (D, D) the clip term A.
        query: float32 (D,) L2-normalised sentence embedding.
        frames: float32 (T, D) the video's frame embeddings (rows outside ``ranges`` unused).
        ranges: int64 (S, 2) frame ranges ``[a, b)`` with ``0 <= a < b <= T``.
    Returns:
        float64 (S,) probabilities in (0, 1).
    """
    if len(ranges) == 0:
        return np.zeros(0)
    first, last = [], []
    for a, b in np.asarray(ranges, np.int64):
        third = max(1, (b - a) // 3)
        first.append(frames[a:a + third].mean(0))
        last.append(frames[b - third:b].mean(0))
    clips = embed_clips(adapter, np.stack(first), np.stack(last))  # (S, D)
    return backbone.match_probability(clips @ np.asarray(query, np.float32))


def checked_scores(scores: np.ndarray, match: np.ndarray, weight: float) -> np.ndarray:
    """``score · p^w`` (S,): the head's scores (S,) reweighted by clip match probabilities (S,)."""
    scores = np.asarray(scores, np.float64)
    return scores if weight == 0 else scores * np.power(np.asarray(match, np.float64), weight)


class ClipCheck:
    """The re-scorer (:class:`groundzero.plugins.Rescorer`): ``score · p^w``, found-probability · p.

    Args:
        backbone: the loaded backbone; its model directory must hold :data:`CLIP_ADAPTER_FILE`.
        params: ``{"weight": w}`` (w >= 0; 0 leaves scores as they are but still scales presence).
    """

    def __init__(self, backbone: Backbone, params: dict):
        self.backbone = backbone
        self.weight = float(params.get("weight", 0.0))
        if not 0.0 <= self.weight <= 100.0:
            raise ConfigError(f"clip-check weight must be in [0, 100], got {self.weight}")
        adapter = load_clip_adapter(backbone.model_dir, backbone.embed_dim)
        if adapter is None:
            raise ConfigError(f"the grounding head declares the clip check, but backbone {backbone.identity.name!r} "
                              f"has no {CLIP_ADAPTER_FILE} (it was not trained on clips); remove \"rescorer\" "
                              "from the head's config.json or use the backbone the head was built for")
        self.adapter = adapter

    def rescore(self, query: np.ndarray, frames: np.ndarray, spans_sec: np.ndarray, scores: np.ndarray,
                fps: float) -> tuple[np.ndarray, np.ndarray]:
        if len(scores) == 0:
            return np.asarray(scores, np.float64), np.ones(0)
        match = clip_match(self.backbone, self.adapter, query, frames, span_frames(spans_sec, fps, len(frames)))
        return checked_scores(scores, match, self.weight), match
