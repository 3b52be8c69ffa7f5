"""SigLIP / SigLIP 2 backbone adapter: the only place that touches transformers.

Loads a checkpoint with ``from_pretrained`` from a local directory, a hub id or a
registered model name (:mod:`groundzero.model.identity`), and exposes the three calls the rest of GroundZero needs:

* :meth:`Backbone.embed_images` — index time: frames -> L2-normalised pooled image features.
* :meth:`Backbone.embed_texts` — query time: sentences -> L2-normalised pooled text features.
* :meth:`Backbone.encode_text_tokens` — query time: token-level text states for
  word-level attention in the grounding model.

Fixed-resolution checkpoints (``model_type`` ``siglip``; all of Google's
``siglip-*`` and ``siglip2-*-patchNN-RES`` releases, So400m included) take square frames.
NaFlex checkpoints (``siglip2-*-naflex``, ``model_type`` ``siglip2``) take frames that keep
their aspect ratio, as sequences of patches (:mod:`groundzero.model.naflex`,
:meth:`Backbone.embed_patches`).

torch and transformers are imported when first needed. With ``numpy_text`` (a one-shot query on a
CPU) the text tower runs in NumPy (:mod:`groundzero.model.numpy_text`) and the torch model is loaded
only if something else is asked for.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from groundzero.errors import ConfigError, ModelNotFoundError
from groundzero.model.identity import CPU_MODEL_ID, SO400M_ID, read_identity

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: device nodes without which torch finds no GPU (NVIDIA, ROCm, WSL)
_GPU_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def pick_device(device: str | None = None) -> torch.device:
    """``None``/"auto" -> CUDA when present, else CPU; otherwise the named device."""
    import torch

    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA device; use cpu")
    return torch.device(device)


def surely_cpu(device: str | None) -> bool:
    """Whether ``device`` is the CPU, told without importing torch: "cpu", or "auto" on a machine
    without a GPU's device nodes (where torch could find none)."""
    if device in (None, "", "auto"):
        return not any(os.path.exists(p) for p in _GPU_NODES)
    return device == "cpu"


def default_model(device: str | None = "auto") -> str:
    """The model a new index uses when none is named: SigLIP 2 So400m where the embed device is a
    CUDA GPU, else SigLIP 2 base at 224 px, a size a CPU can index."""
    if str(device or "auto").startswith("cuda"):
        return SO400M_ID
    if device not in (None, "", "auto"):
        return CPU_MODEL_ID
    import torch

    return SO400M_ID if torch.cuda.is_available() else CPU_MODEL_ID


class Backbone:
    """A frozen SigLIP dual encoder, in eval mode, on one device.

    Args:
        name_or_path: local checkpoint directory, hub id or registered model name.
        device: "auto" (CUDA if present), "cpu", "cuda", "cuda:1", ...
        dtype: None -> bfloat16 on CUDA, float32 on CPU. The towers run in ``dtype``; SigLIP's
            ``logit_scale`` and ``logit_bias`` are read in float32 before the cast, so
            :meth:`match_probability` (and "not found") does not depend on the device.
        numpy_text: on a CPU in float32, run :meth:`embed_texts` in NumPy
            (:mod:`groundzero.model.numpy_text`, same weights, same result to float32 rounding),
            and load the torch model only when something else is asked for (images, token
            states, :attr:`model`, :attr:`tokenizer`): a one-shot query then imports neither torch
            nor transformers' model code. Ignored (torch, as always) on a GPU, in bf16, or for a
            checkpoint NumPy cannot run exactly. For one query at a time: a server keeps torch,
            whose threads it shares out.
        int8_images: :meth:`embed_images` runs the int8 ONNX Runtime tower
            (:mod:`groundzero.model.onnx_tower`, built on first use and cached); the torch model is
            then loaded only if something else is asked for. CPU and fixed-resolution checkpoints only.
        threads: the int8 tower's intra-op threads (None: ONNX Runtime's choice).
    """

    def __init__(self, name_or_path: str, device: str | None = "auto", dtype: torch.dtype | None = None,
                 *, numpy_text: bool = False, int8_images: bool = False, threads: int | None = None):
        model_dir, self.identity = read_identity(name_or_path)
        self.model_dir = model_dir
        self.image_size: int = self.identity.image_size  #: square frame side; 0 for NaFlex
        self.patch_size: int = self.identity.patch_size  #: NaFlex patch side; 0 for fixed resolution
        self.text_max_len: int = self.identity.text_max_len
        self._device_arg, self._dtype_arg = device, dtype
        self._device: torch.device | None = None
        self._model = self._tokenizer = None
        self._model_lock, self._tokenizer_lock = threading.Lock(), threading.Lock()
        #: the NumPy text tower and tokenizer (numpy_text); None: torch runs the text tower
        self._np_text = self._np_tokens = None
        if numpy_text and surely_cpu(device) and (dtype is None or str(dtype) == "torch.float32"):
            from groundzero.model.numpy_text import FastTokenizer, NumpyTextTower

            self._np_text = NumpyTextTower.load(model_dir)
            if self._np_text is not None:
                self._np_tokens = FastTokenizer.load(model_dir, self.text_max_len)  # None: transformers'
                self._logit_scale, self._logit_bias = self._np_text.logit_scale, self._np_text.logit_bias
                self._device_arg = "cpu"
        self._int8 = None  #: the int8 image tower (int8_images)
        if int8_images:
            if not surely_cpu(device):
                raise ConfigError("int8 runs on CPUs (ONNX Runtime); on a GPU use bf16", field="precision")
            from groundzero.model.onnx_tower import Int8ImageTower

            self._device_arg = "cpu"
            self._np_mean, self._np_std = (np.asarray(v, np.float32).reshape(1, 1, 1, 3) for v in _image_norm(model_dir))
            self._int8 = Int8ImageTower.for_backbone(self, threads)
        if self._np_text is None and self._int8 is None:
            self._load_model()
        log.info("backbone %s on %s, embed_dim=%d%s", name_or_path, self._device_arg, self.embed_dim,
                 " (text tower in NumPy)" if self._np_text is not None else "")

    @property
    def device(self) -> torch.device:
        """The torch device the towers run on."""
        if self._device is None:
            self._device = pick_device(self._device_arg)
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        """The towers' dtype."""
        import torch

        return self._dtype_arg or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)

    @property
    def model(self) -> torch.nn.Module:
        """The transformers SigLIP model (loaded on first use where the text tower runs in NumPy)."""
        if self._model is None:
            self._load_model()
        return self._model

    @property
    def tokenizer(self):
        """The checkpoint's transformers tokenizer, right-padding (loaded on first use)."""
        if self._tokenizer is None:
            with self._tokenizer_lock:
                if self._tokenizer is None:
                    from transformers import AutoTokenizer

                    try:
                        tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
                    except Exception as e:
                        raise ModelNotFoundError(f"cannot load the tokenizer from {self.model_dir}: {e}") from e
                    # SigLIP pools the last position and was trained right-padded; some tokenizer configs
                    # (Gemma's, SigLIP 2's) default to left padding, so the side is set here, not left to the files
                    tokenizer.padding_side = "right"
                    self._tokenizer = tokenizer
        return self._tokenizer

    def _load_model(self) -> None:
        """Load the torch model (once, whichever thread comes first)."""
        with self._model_lock:
            if self._model is not None:
                return
            import torch
            from transformers import AutoModel

            device, dtype = self.device, self.dtype
            try:
                model = AutoModel.from_pretrained(self.model_dir, dtype=torch.float32)
            except Exception as e:
                raise ModelNotFoundError(f"cannot load the model or tokenizer from {self.model_dir}: {e}") from e
            if self._np_text is None:
                # exp(scale) in bf16 is off by ~1.3% (109.95 -> 108.5), enough to flip "not found"
                self._logit_scale = float(model.logit_scale.detach().float().exp())
                self._logit_bias = float(model.logit_bias.detach().float())
            model = model.to(device=device, dtype=dtype).eval()
            model.requires_grad_(False)
            mean, std = _image_norm(self.model_dir)
            self._mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
            self._std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
            self._model = model  # last: a thread that sees the model sees the rest
        self.tokenizer  # noqa: B018 - loaded with the model, so a bad checkpoint fails here

    @property
    def embed_dim(self) -> int:
        return self.identity.embed_dim

    @property
    def logit_scale_bias(self) -> tuple[float, float]:
        """SigLIP's learned (scale, bias), float32 whatever the towers' dtype: p(match) = sigmoid(scale * cos + bias)."""
        if not hasattr(self, "_logit_scale"):
            self._load_model()  # an int8 image backbone asked for text: the torch model reads them
        return self._logit_scale, self._logit_bias

    def match_probability(self, cos: np.ndarray) -> np.ndarray:
        """SigLIP's own calibrated pairwise probability for cosine similarities."""
        scale, bias = self.logit_scale_bias
        return 1.0 / (1.0 + np.exp(-(scale * np.asarray(cos, dtype=np.float64) + bias)))

    @property
    def naflex(self) -> bool:
        """Whether frames keep their aspect ratio, as NaFlex patch sequences."""
        return self.identity.naflex

    def embed_images(self, frames: np.ndarray) -> np.ndarray:
        """Pooled, L2-normalised image features.

        Args:
            frames: uint8 (N, S, S, 3) RGB, already resized to ``image_size`` (S); for NaFlex,
                uint8 (N, h, w, 3) at the video's NaFlex size (sides multiples of ``patch_size``).
        Returns:
            float32 (N, D).
        """
        if self.naflex:
            if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[1] % self.patch_size \
                    or frames.shape[2] % self.patch_size:
                raise ConfigError(f"frames must be (N, h, w, 3) uint8 with h and w multiples of {self.patch_size} "
                                  f"for this NaFlex model, got {tuple(frames.shape)}")
            from groundzero.model.naflex import to_patches

            return self.embed_patches(*to_patches(frames, self.patch_size))
        if frames.ndim != 4 or frames.shape[1:] != (self.image_size, self.image_size, 3):
            raise ConfigError(
                f"frames must be (N, {self.image_size}, {self.image_size}, 3) uint8 for this model, "
                f"got {tuple(frames.shape)}"
            )
        if len(frames) == 0:
            return np.zeros((0, self.embed_dim), np.float32)
        if self._int8 is not None:
            x = ((frames.astype(np.float32) / 255.0 - self._np_mean) / self._np_std).transpose(0, 3, 1, 2)
            # one frame a call: dynamic quantisation scales activations per call, so a batch would make a
            # frame's embedding depend on the frames beside it (6% slower than batches of 16 on 2 cores)
            feats = np.concatenate([self._int8(x[i : i + 1]) for i in range(len(x))])  # (N, D)
            return (feats / np.maximum(np.linalg.norm(feats, axis=-1, keepdims=True), 1e-12)).astype(np.float32)
        import torch

        with torch.inference_mode():
            feats = self.image_features(torch.from_numpy(np.ascontiguousarray(frames)))
            return feats.float().cpu().numpy().astype(np.float32)

    def embed_patches(self, patches: np.ndarray, spatial: np.ndarray) -> np.ndarray:
        """NaFlex: pooled, L2-normalised features of patch sequences.

        Args:
            patches: uint8 (N, L, p*p*3), :func:`groundzero.model.naflex.to_patches`' layout, each
                sequence's real patches first, zeros after.
            spatial: int (N, 2), each frame's (h / p, w / p).
        Returns:
            float32 (N, D).
        """
        if not self.naflex:
            raise ConfigError("patch sequences are for NaFlex models; this one takes square frames")
        if patches.ndim != 3 or patches.shape[-1] != 3 * self.patch_size ** 2 or spatial.shape != (len(patches), 2):
            raise ConfigError(f"patches must be (N, L, {3 * self.patch_size ** 2}) with spatial (N, 2), "
                              f"got {tuple(patches.shape)} and {tuple(spatial.shape)}")
        if len(patches) == 0:
            return np.zeros((0, self.embed_dim), np.float32)
        import torch

        with torch.inference_mode():
            feats = self._patch_features(torch.from_numpy(np.ascontiguousarray(patches)),
                                         torch.from_numpy(np.asarray(spatial, np.int64)), self.model)
            return feats.float().cpu().numpy().astype(np.float32)

    def image_features(self, frames: torch.Tensor, model: torch.nn.Module | None = None) -> torch.Tensor:
        """Differentiable twin of :meth:`embed_images` (LoRA fine-tuning uses it).

        Args:
            frames: uint8 (N, S, S, 3) RGB tensor.
            model: the SigLIP model to run (default: this backbone's; a peft-wrapped one for LoRA).
        Returns:
            (N, D) L2-normalised features, float32, on this backbone's device.
        """
        import torch

        if self.naflex:  # LoRA, the one caller, needs square frames (training.lora_data says so first)
            raise ConfigError("image_features takes square frames; a NaFlex model's go through embed_patches")
        base = self.model  # loaded first: the normalisation constants come with it
        model = model or base
        x = frames.to(self.device).permute(0, 3, 1, 2).float().div(255.0)  # (N, 3, S, S) in [0, 1]
        x = ((x - self._mean) / self._std).to(self.dtype)
        feats = pooled_output(model.get_image_features(pixel_values=x))  # (N, D)
        return torch.nn.functional.normalize(feats.float(), dim=-1)

    def _patch_features(self, patches: torch.Tensor, spatial: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
        """NaFlex: uint8 (N, L, p*p*3) patches and int64 (N, 2) grid sizes -> (N, D) L2-normalised
        float32 features. Padding past the batch's longest sequence is dropped first (it is masked
        anyway, so this only saves work)."""
        import torch

        spatial = spatial.to(self.device)
        valid = spatial.prod(-1)  # (N,) real patches per sequence
        x = patches[:, : int(valid.max())].to(self.device).float().div(255.0)  # (N, L', p*p*3)
        n, length, _ = x.shape
        x = (x.view(n, length, -1, 3) - self._mean.view(3)) / self._std.view(3)  # per pixel, channels last
        mask = torch.arange(length, device=self.device)[None, :] < valid[:, None]  # (N, L')
        x = (x.view(n, length, -1) * mask[..., None]).to(self.dtype)  # padding: zeros, as the processor's
        feats = pooled_output(model.get_image_features(pixel_values=x, pixel_attention_mask=mask.long(),
                                                       spatial_shapes=spatial))
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

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Pooled, L2-normalised text features: float32 (Q, D)."""
        if self._np_text is not None:
            ids = self._np_tokens.ids([t.lower() for t in texts]) if self._np_tokens is not None \
                else self.tokenize(texts)["input_ids"].numpy()
            feats = self._np_text.pooled(ids)
            return (feats / np.maximum(np.linalg.norm(feats, axis=-1, keepdims=True), 1e-12)).astype(np.float32)
        import torch

        with torch.inference_mode():
            enc = self.tokenize(texts)
            feats = pooled_output(self.model.get_text_features(input_ids=enc["input_ids"]))  # (Q, D)
            return _l2norm(feats)

    def encode_query(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`embed_texts` and :meth:`encode_text_tokens` from one pass of the text tower (what a
        search with a grounding head needs: the sentence for the shortlist, the words for the head).

        Returns: (float32 (Q, D) pooled L2-normalised features, float32 (Q, L, Dt) states, bool (Q, L) mask).
        """
        import torch

        if self._np_text is not None:  # the sentence in NumPy as embed_texts has it; the words need torch
            return (self.embed_texts(texts), *self.encode_text_tokens(texts))
        with torch.inference_mode():
            enc = self.tokenize(texts)
            out = self.model.get_text_features(input_ids=enc["input_ids"])
            if isinstance(out, torch.Tensor):  # transformers before 5 returns the pooled features alone
                return (_l2norm(out), *self.encode_text_tokens(texts))
            mask = enc.get("attention_mask")
            if mask is None:
                mask = enc["input_ids"] != self.tokenizer.pad_token_id
            return (_l2norm(out.pooler_output), out.last_hidden_state.float().cpu().numpy(),
                    mask.bool().cpu().numpy())

    def encode_text_tokens(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token-level text states for word-level attention: the text tower's last hidden state
        (after its final LayerNorm), RGNet's word features.

        Args:
            texts: Q sentences.

        Returns:
            states: float32 (Q, L, Dt) (L = text_max_len, Dt = the text tower's width).
            mask: bool (Q, L), True at real (non-padding) tokens.
        """
        import torch

        with torch.inference_mode():
            enc = self.tokenize(texts)
            states = self.model.text_model(input_ids=enc["input_ids"]).last_hidden_state  # (Q, L, Dt)
            mask = enc.get("attention_mask")
            if mask is None:
                mask = enc["input_ids"] != self.tokenizer.pad_token_id
            return states.float().cpu().numpy(), mask.bool().cpu().numpy()


def pooled_output(out) -> torch.Tensor:
    """transformers 5 returns an output object; older releases a tensor."""
    import torch

    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _l2norm(x: torch.Tensor) -> np.ndarray:
    import torch

    x = x.float()
    return torch.nn.functional.normalize(x, dim=-1).cpu().numpy().astype(np.float32)


def _image_norm(model_dir: Path) -> tuple[list[float], list[float]]:
    """Per-channel mean/std from preprocessor_config.json (SigLIP default 0.5/0.5).

    Resizing is done by ffmpeg at decode time, with the processor's interpolation
    (:mod:`groundzero.indexer.decode`), so only the rescale + normalise part of the processor is needed here.
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
