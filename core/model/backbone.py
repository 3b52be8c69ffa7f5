"""SigLIP / SigLIP 2 backbone adapter: the only place that touches transformers.

Loads a checkpoint with ``from_pretrained`` from a local directory or a hub id
(resolved through the local Hugging Face cache, downloading only when the
network allows), and exposes the three calls the rest of GroundZero needs:

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

import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.errors import ConfigError, ModelNotFoundError, UnsupportedModelError

log = logging.getLogger(__name__)

#: The real backbone for real archives (needs the network once, or a local copy).
SO400M_ID = "google/siglip2-so400m-patch14-384"

_WEIGHT_SUFFIXES = (".safetensors", ".bin")
#: Optional (D, D) clip term A beside a backbone trained on two-frame clips
#: (``core.model.siglip_train.train_siglip``): a clip a -> b embeds as (x_a + x_b) / 2 + A (x_b - x_a).
CLIP_ADAPTER_FILE = "clip_adapter.safetensors"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass(frozen=True)
class ModelIdentity:
    """What an index records about the model that built it.

    ``fingerprint`` is a SHA-256 over the weight files' names and bytes, so two
    copies of the same checkpoint agree and any retrained or different model
    does not. ``name`` is what the user passed (hub id or path), for messages.
    """

    name: str
    fingerprint: str
    embed_dim: int
    image_size: int
    text_max_len: int

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "embed_dim": self.embed_dim,
            "image_size": self.image_size,
            "text_max_len": self.text_max_len,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ModelIdentity":
        return cls(
            name=str(d["name"]),
            fingerprint=str(d["fingerprint"]),
            embed_dim=int(d["embed_dim"]),
            image_size=int(d["image_size"]),
            text_max_len=int(d["text_max_len"]),
        )


def resolve_model_dir(name_or_path: str) -> Path:
    """Return a local directory holding the checkpoint.

    A path that exists is used as is. Anything else is treated as a hub id and
    resolved with ``huggingface_hub.snapshot_download`` (which reads the local
    cache first, so ``HF_HUB_OFFLINE=1`` works once the model is cached).
    """
    if not name_or_path or not name_or_path.strip():
        raise ModelNotFoundError("no model given: pass --model with a directory or a hub id")
    p = Path(name_or_path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ModelNotFoundError(
                f"model path {p} is a file; pass the checkpoint directory "
                "(the one holding config.json and model.safetensors)"
            )
        if not (p / "config.json").is_file():
            raise ModelNotFoundError(
                f"model directory {p} has no config.json; pass a directory written by "
                "save_pretrained (config.json + model.safetensors + tokenizer files)"
            )
        return p
    if not _HUB_ID.fullmatch(name_or_path):
        raise ModelNotFoundError(
            f"model directory {name_or_path} does not exist; pass an existing checkpoint "
            f"directory or a hub id such as {SO400M_ID}"
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=name_or_path))
    except Exception as e:  # network, auth, missing repo: all actionable the same way
        raise ModelNotFoundError(
            f"{name_or_path!r} is not a local directory, and loading it as a hub id from the "
            "Hugging Face hub or its local cache failed "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); on a machine "
            "without network, copy the checkpoint directory here and pass its path with --model"
        ) from e


def fingerprint_weights(model_dir: Path) -> str:
    """SHA-256 over (file name, bytes) of every weight file, in name order."""
    files = sorted(f for f in model_dir.iterdir() if f.is_file() and f.name.endswith(_WEIGHT_SUFFIXES))
    if not files:
        raise ModelNotFoundError(f"model directory {model_dir} holds no weight files (*.safetensors)")
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def pick_device(device: str | None = None) -> torch.device:
    """``None``/"auto" -> CUDA when present, else CPU; otherwise the named device."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device} asked for, but torch sees no CUDA device; use --device cpu")
    return torch.device(device)


def read_identity(name_or_path: str) -> tuple[Path, "ModelIdentity"]:
    """Resolve a checkpoint and read its identity without loading the weights.

    Refuses architectures GroundZero cannot use (see the module docstring).
    """
    from transformers import AutoConfig

    model_dir = resolve_model_dir(name_or_path)
    try:
        config = AutoConfig.from_pretrained(model_dir)
    except Exception as e:
        raise ModelNotFoundError(f"cannot read the model config in {model_dir}: {e}") from e
    if config.model_type != "siglip":
        hint = (" (NaFlex checkpoints are not supported yet; use a fixed-resolution one)"
                if config.model_type == "siglip2" else "")
        raise UnsupportedModelError(
            f"model {name_or_path} is a {config.model_type!r} checkpoint; GroundZero needs a "
            f"fixed-resolution SigLIP / SigLIP 2 dual encoder such as {SO400M_ID}{hint}"
        )
    vc, tc = config.vision_config, config.text_config
    is_local = Path(name_or_path).expanduser().exists()
    identity = ModelIdentity(
        name=str(model_dir.resolve()) if is_local else name_or_path,
        fingerprint=fingerprint_weights(model_dir),
        embed_dim=int(getattr(tc, "projection_size", None) or tc.hidden_size),
        image_size=int(vc.image_size),
        text_max_len=int(tc.max_position_embeddings),
    )
    return model_dir, identity


class Backbone:
    """A frozen SigLIP dual encoder, in eval mode, on one device.

    Args:
        name_or_path: local checkpoint directory or hub id.
        device: "auto" (CUDA if present), "cpu", "cuda", "cuda:1", ...
        dtype: None -> bfloat16 on CUDA, float32 on CPU.
    """

    def __init__(self, name_or_path: str, device: str | None = "auto", dtype: torch.dtype | None = None):
        from transformers import AutoModel, AutoTokenizer

        model_dir, self.identity = read_identity(name_or_path)
        self.device = pick_device(device)
        self.dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        try:
            self.model = AutoModel.from_pretrained(model_dir, dtype=self.dtype).to(self.device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        except Exception as e:
            raise ModelNotFoundError(f"cannot load the model or tokenizer from {model_dir}: {e}") from e
        self.model.requires_grad_(False)
        self.model_dir = model_dir
        self.image_size: int = self.identity.image_size
        self.text_max_len: int = self.identity.text_max_len
        self.clip_adapter = _clip_adapter(model_dir, self.embed_dim)
        mean, std = _image_norm(model_dir)
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        log.info("backbone %s on %s (%s), embed_dim=%d", name_or_path, self.device, self.dtype, self.embed_dim)

    @property
    def embed_dim(self) -> int:
        return self.identity.embed_dim

    @property
    def logit_scale_bias(self) -> tuple[float, float]:
        """SigLIP's learned (scale, bias): p(match) = sigmoid(scale * cos + bias)."""
        return float(self.model.logit_scale.exp()), float(self.model.logit_bias)

    def embed_clips(self, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Embed clips from the frame embeddings of their beginnings and ends, in the text space.

        Args:
            first, last: float (S, D) mean frame embeddings of each clip's first and last part.
        Returns:
            float32 (S, D), L2-normalised ``(x_a + x_b) / 2 + A (x_b - x_a)`` with x_a, x_b the
            L2-normalised ``first`` and ``last`` and A :attr:`clip_adapter` (the term this
            backbone was trained with; see ``core.model.siglip_train.train_siglip``).
        Raises:
            ConfigError: the backbone has no clip adapter (it was not trained on clips).
        """
        if self.clip_adapter is None:
            raise ConfigError(f"backbone {self.identity.name!r} has no {CLIP_ADAPTER_FILE}: it was not trained "
                              "on two-frame clips, so it cannot embed a clip")
        xa, xb = _unit(np.asarray(first, np.float32)), _unit(np.asarray(last, np.float32))
        return _unit((xa + xb) / 2 + (xb - xa) @ self.clip_adapter.T)

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
        feats = _pooled((model or self.model).get_image_features(pixel_values=x))  # (N, D)
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
        feats = _pooled(self.model.get_text_features(input_ids=enc["input_ids"]))  # (Q, D)
        return _l2norm(feats)

    @torch.inference_mode()
    def encode_text_tokens(self, texts: list[str], layers: tuple[int, ...] = (-1,)) -> tuple[np.ndarray, np.ndarray]:
        """Token-level text states for word-level attention.

        Args:
            texts: Q sentences.
            layers: which of the text tower's states to concatenate per word: -1 = its output (the last
                layer after the final LayerNorm, RGNet's word features), 0 = the input embeddings (token +
                position), k = the output of block k. States other than -1 are layer-normalised (no
                affine), so every part has unit scale. A tower trained on single frames merges the words
                a frame cannot show ("left" / "right": cosine 0.41 at layer 0, 0.98 at the output on the
                demo backbone), and the earlier layers still tell them apart.

        Returns:
            states: float32 (Q, L, Dt * len(layers)) (L = text_max_len).
            mask: bool (Q, L), True at real (non-padding) tokens.
        """
        if not layers:
            raise ConfigError("text layers: name at least one (-1 = the text tower's output)")
        enc = self.tokenize(texts)
        out = self.model.text_model(input_ids=enc["input_ids"], output_hidden_states=layers != (-1,))
        parts = []
        for k in layers:
            if k == -1:
                parts.append(out.last_hidden_state)
            elif 0 <= k < len(out.hidden_states):
                h = out.hidden_states[k]
                parts.append(torch.nn.functional.layer_norm(h.float(), h.shape[-1:]))
            else:
                raise ConfigError(f"text layer {k}: this text tower has layers 0..{len(out.hidden_states) - 1} "
                                  f"(and -1, its output)")
        states = torch.cat([x.float() for x in parts], dim=-1).cpu().numpy()
        mask = enc.get("attention_mask")
        if mask is None:
            mask = enc["input_ids"] != self.tokenizer.pad_token_id
        return states, mask.bool().cpu().numpy()


def _pooled(out) -> torch.Tensor:
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


def bundled_model_dir() -> Path:
    """The demo backbone shipped inside the package: the default when ``--model`` is not given.

    A small SigLIP (the real transformers architecture, 64 px, 128-d embeddings)
    trained by ``scripts/build_demo_model.py`` on the synthetic archive's frames and
    captions (``core.synth``): it knows shapes, colours, positions, titles and
    backgrounds, nothing of real video. Use :data:`SO400M_ID` (or a local copy
    of it) for real archives.
    """
    return Path(__file__).resolve().parent.parent / "bundled" / "demo" / "backbone"


def bundled_head_dir() -> Path:
    """The demo grounding head trained on :func:`bundled_model_dir`'s index of the synthetic
    train split; indexing with the bundled backbone uses it by default."""
    return Path(__file__).resolve().parent.parent / "bundled" / "demo" / "head"


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _clip_adapter(model_dir: Path, dim: int) -> np.ndarray | None:
    """float32 (D, D) A from ``model_dir/clip_adapter.safetensors``, or None when there is none."""
    path = model_dir / CLIP_ADAPTER_FILE
    if not path.is_file():
        return None
    from safetensors.numpy import load_file

    weight = load_file(str(path)).get("weight")
    if weight is None or weight.shape != (dim, dim):
        raise ModelNotFoundError(f"{path} must hold a ({dim}, {dim}) 'weight' for this {dim}-d backbone, got "
                                 f"{None if weight is None else weight.shape}; rebuild the backbone or remove the file")
    return weight.astype(np.float32)
