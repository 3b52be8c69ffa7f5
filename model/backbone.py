"""SigLIP / SigLIP 2 backbone adapter: the only place that touches transformers.

Loads a checkpoint with ``from_pretrained`` from a local directory, a hub id or a
registered model name (:mod:`groundzero.model.identity`), and exposes the three calls the rest of GroundZero needs:

* :meth:`Backbone.embed_images` — index time: frames -> L2-normalised pooled image features.
* :meth:`Backbone.embed_texts` — query time: sentences -> L2-normalised pooled text features.
* :meth:`Backbone.encode_text_tokens` — query time: token-level text states for
  word-level attention in the grounding model.

Fixed-resolution checkpoints (``model_type`` ``siglip``; all of Google's
``siglip-*`` and ``siglip2-*-patchNN-RES`` releases, So400m included) are
supported. NaFlex checkpoints (``siglip2-*-naflex``, ``model_type`` ``siglip2``)
take variable-resolution patch inputs and are refused with a clear message.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from groundzero.errors import ConfigError, ModelNotFoundError
from groundzero.model.identity import CPU_MODEL_ID, SO400M_ID, read_identity

log = logging.getLogger(__name__)

def pick_device(device: str | None = None) -> torch.device:
    """``None``/"auto" -> CUDA when present, else CPU; otherwise the named device."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA device; use cpu")
    return torch.device(device)


def default_model(device: str | None = "auto") -> str:
    """The model a new index uses when none is named: SigLIP 2 So400m where the embed device is a
    CUDA GPU, else SigLIP 2 base at 224 px, a size a CPU can index."""
    gpu = str(device or "auto").startswith("cuda") or (device in (None, "", "auto") and torch.cuda.is_available())
    return SO400M_ID if gpu else CPU_MODEL_ID


class Backbone:
    """A frozen SigLIP dual encoder, in eval mode, on one device.

    Args:
        name_or_path: local checkpoint directory, hub id or registered model name.
        device: "auto" (CUDA if present), "cpu", "cuda", "cuda:1", ...
        dtype: None -> bfloat16 on CUDA, float32 on CPU. The towers run in ``dtype``; SigLIP's
            ``logit_scale`` and ``logit_bias`` are read in float32 before the cast, so
            :meth:`match_probability` (and "not found") does not depend on the device.
    """

    def __init__(self, name_or_path: str, device: str | None = "auto", dtype: torch.dtype | None = None):
        from transformers import AutoModel, AutoTokenizer

        model_dir, self.identity = read_identity(name_or_path)
        self.device = pick_device(device)
        self.dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        try:
            model = AutoModel.from_pretrained(model_dir, dtype=torch.float32)
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        except Exception as e:
            raise ModelNotFoundError(f"cannot load the model or tokenizer from {model_dir}: {e}") from e
        # exp(scale) in bf16 is off by ~1.3% (109.95 -> 108.5), enough to flip "not found"
        self._logit_scale = float(model.logit_scale.detach().float().exp())
        self._logit_bias = float(model.logit_bias.detach().float())
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        # SigLIP pools the last position and was trained right-padded; some tokenizer configs
        # (Gemma's, SigLIP 2's) default to left padding, so the side is set here, not left to the files
        self.tokenizer.padding_side = "right"
        self.model.requires_grad_(False)
        self.model_dir = model_dir
        self.image_size: int = self.identity.image_size
        self.text_max_len: int = self.identity.text_max_len
        mean, std = _image_norm(model_dir)
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        log.info("backbone %s on %s (%s), embed_dim=%d", name_or_path, self.device, self.dtype, self.embed_dim)

    @property
    def embed_dim(self) -> int:
        return self.identity.embed_dim

    @property
    def logit_scale_bias(self) -> tuple[float, float]:
        """SigLIP's learned (scale, bias), float32 whatever the towers' dtype: p(match) = sigmoid(scale * cos + bias)."""
        return self._logit_scale, self._logit_bias

    def match_probability(self, cos: np.ndarray) -> np.ndarray:
        """SigLIP's own calibrated pairwise probability for cosine similarities."""
        scale, bias = self.logit_scale_bias
        return 1.0 / (1.0 + np.exp(-(scale * np.asarray(cos, dtype=np.float64) + bias)))

    @torch.inference_mode()
    def embed_images(self, frames: np.ndarray) -> np.ndarray:
        """Pooled, L2-normalised image features.

        Args:
            frames: uint8 (N, S, S, 3) RGB, already resized to ``image_size`` (S).
        Returns:
            float32 (N, D).
        """
        if frames.ndim != 4 or frames.shape[1:] != (self.image_size, self.image_size, 3):
            raise ConfigError(
                f"frames must be (N, {self.image_size}, {self.image_size}, 3) uint8 for this model, "
                f"got {tuple(frames.shape)}"
            )
        if len(frames) == 0:
            return np.zeros((0, self.embed_dim), np.float32)
        feats = self.image_features(torch.from_numpy(np.ascontiguousarray(frames)))
        return feats.float().cpu().numpy().astype(np.float32)

    def image_features(self, frames: torch.Tensor, model: torch.nn.Module | None = None) -> torch.Tensor:
        """Differentiable twin of :meth:`embed_images` (LoRA fine-tuning uses it).

        Args:
            frames: uint8 (N, S, S, 3) RGB tensor.
            model: the SigLIP model to run (default: this backbone's; a peft-wrapped one for LoRA).
        Returns:
            (N, D) L2-normalised features, float32, on this backbone's device.
        """
        x = frames.to(self.device).permute(0, 3, 1, 2).float().div(255.0)  # (N, 3, S, S) in [0, 1]
        x = ((x - self._mean) / self._std).to(self.dtype)
        feats = pooled_output((model or self.model).get_image_features(pixel_values=x))  # (N, D)
        return torch.nn.functional.normalize(feats.float(), dim=-1)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """The text tower's inputs: ``input_ids`` (and ``attention_mask`` where the tokenizer gives one),
        (Q, text_max_len) on the backbone's device."""
        # SigLIP was trained on lower-cased text padded to max length; its text
        # pooler reads the last position, so padding="max_length" is required.
        texts = [t.lower() for t in texts]
        enc = self.tokenizer(
            texts, padding="max_length", truncation=True, max_length=self.text_max_len, return_tensors="pt"
        )
        return {k: v.to(self.device) for k, v in enc.items()}

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Pooled, L2-normalised text features: float32 (Q, D)."""
        enc = self.tokenize(texts)
        feats = pooled_output(self.model.get_text_features(input_ids=enc["input_ids"]))  # (Q, D)
        return _l2norm(feats)

    @torch.inference_mode()
    def encode_text_tokens(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token-level text states for word-level attention: the text tower's last hidden state
        (after its final LayerNorm), RGNet's word features.

        Args:
            texts: Q sentences.

        Returns:
            states: float32 (Q, L, Dt) (L = text_max_len, Dt = the text tower's width).
            mask: bool (Q, L), True at real (non-padding) tokens.
        """
        enc = self.tokenize(texts)
        states = self.model.text_model(input_ids=enc["input_ids"]).last_hidden_state  # (Q, L, Dt)
        mask = enc.get("attention_mask")
        if mask is None:
            mask = enc["input_ids"] != self.tokenizer.pad_token_id
        return states.float().cpu().numpy(), mask.bool().cpu().numpy()


def pooled_output(out) -> torch.Tensor:
    """transformers 5 returns an output object; older releases a tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _l2norm(x: torch.Tensor) -> np.ndarray:
    x = x.float()
    return torch.nn.functional.normalize(x, dim=-1).cpu().numpy().astype(np.float32)


def _image_norm(model_dir: Path) -> tuple[list[float], list[float]]:
    """Per-channel mean/std from preprocessor_config.json (SigLIP default 0.5/0.5).

    Resizing is done by ffmpeg at decode time (bicubic, like SigLIP's processor),
    so only the rescale + normalise part of the processor is needed here.
    """
    path = model_dir / "preprocessor_config.json"
    mean, std = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]
    if path.is_file():
        cfg = json.loads(path.read_text())
        mean = list(cfg.get("image_mean", mean))
        std = list(cfg.get("image_std", std))
    if len(mean) != 3 or len(std) != 3 or any(not math.isfinite(s) or s <= 0 for s in std):
        raise ModelNotFoundError(f"{path} has an invalid image_mean/image_std")
    return mean, std
