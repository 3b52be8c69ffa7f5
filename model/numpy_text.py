"""SigLIP's text tower in NumPy, for a one-shot query: no torch, no transformers.

A one-shot ``groundzero search`` embeds one sentence. Importing torch and transformers' model code
to do it costs seconds (more than the search itself); this module runs the same computation as
``SiglipModel.get_text_features`` (``transformers.models.siglip``: token + position embeddings,
pre-LayerNorm encoder blocks with full attention, final LayerNorm, the last position through the
head) in float32 NumPy, on the checkpoint's own weights, read from its safetensors files (memory
mapped, nothing copied for float32 weights), and tokenises with the ``tokenizers`` library from the
checkpoint's ``tokenizer.json``, as transformers' generic tokenizer does. It agrees with the torch
model to float32 rounding (tests/model/test_numpy_text.py).

Only what it can reproduce exactly is taken: :meth:`NumpyTextTower.load` and
:meth:`FastTokenizer.load` return None for anything else (weights only in ``.bin`` files, an
activation other than the tanh GELUs, a tokenizer class that rebuilds its pipeline in Python...),
and :class:`groundzero.model.backbone.Backbone` then uses torch as always.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from groundzero.errors import ModelNotFoundError
from groundzero.model.identity import read_model_config

_PREFIX = "text_model."
_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "F64": np.dtype("<f8"), "BF16": np.dtype("<u2")}


def read_safetensors(path: Path, wanted) -> dict[str, np.ndarray]:
    """The tensors of safetensors file ``path`` whose names satisfy ``wanted(name)``, as float arrays:
    float32 ones are read-only views of a memory map (no copy), bf16 and fp16 ones converted to float32.

    Raises ModelNotFoundError for a file that is not a well-formed safetensors file, or holds a
    wanted tensor of another dtype.
    """
    path = Path(path)
    try:
        buf = np.memmap(path, dtype=np.uint8, mode="r")
        (n,) = struct.unpack("<Q", bytes(buf[:8]))
        if n > len(buf) - 8:
            raise ValueError(f"header of {n} bytes in a file of {len(buf)}")
        header = json.loads(bytes(buf[8:8 + n]).decode("utf-8"))
        if not isinstance(header, dict):
            raise TypeError("the header is not a JSON object")
        base, out = 8 + n, {}
        for name, info in header.items():
            if name == "__metadata__" or not wanted(name):
                continue
            dtype = _DTYPES.get(info["dtype"])
            if dtype is None:
                raise ValueError(f"tensor {name} is {info['dtype']}, not a float type")
            shape = tuple(int(d) for d in info["shape"])
            start, end = (int(x) for x in info["data_offsets"])
            if not 0 <= start <= end <= len(buf) - base or end - start != math.prod(shape) * dtype.itemsize:
                raise ValueError(f"tensor {name} lies outside the file or has the wrong size")
            a = buf[base + start:base + end].view(dtype).reshape(shape)
            if info["dtype"] == "BF16":  # bfloat16 is float32's upper half
                a = (a.astype(np.uint32) << 16).view(np.float32)
            elif dtype != np.float32:
                a = a.astype(np.float32)
            out[name] = a
        return out
    except (OSError, ValueError, KeyError, TypeError, struct.error) as e:
        raise ModelNotFoundError(f"cannot read the model weights {path}: {e}") from e


def _weight_files(model_dir: Path) -> list[Path] | None:
    """The checkpoint's safetensors files (one, or the shards its index names); None: it has none."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ModelNotFoundError(f"cannot read the weights index {index}: {e}") from e
        return [model_dir / n for n in names]
    single = model_dir / "model.safetensors"
    return [single] if single.is_file() else None


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation (transformers' gelu_pytorch_tanh / gelu_new / gelu_fast)."""
    return 0.5 * x * (1.0 + np.tanh(np.float32(math.sqrt(2.0 / math.pi)) * (x + np.float32(0.044715) * x * x * x)))


def _quick_gelu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(np.float32(-1.702) * x))


_ACTIVATIONS = {"gelu_pytorch_tanh": _gelu_tanh, "gelu_new": _gelu_tanh, "gelu_fast": _gelu_tanh,
                "quick_gelu": _quick_gelu}


def _linear(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x @ w.T + b`` over the last axis (one GEMM whatever the leading axes)."""
    y = x.reshape(-1, x.shape[-1]) @ w.T
    y += b
    return y.reshape(*x.shape[:-1], w.shape[0])


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    xc = x - x.mean(-1, keepdims=True)
    var = (xc * xc).mean(-1, keepdims=True)
    return xc / np.sqrt(var + np.float32(eps)) * w + b


@dataclass
class NumpyTextTower:
    """The text tower of a SigLIP checkpoint and its logit scale and bias, as float32 arrays."""

    w: dict[str, np.ndarray]
    n_layers: int
    n_heads: int
    eps: float
    act: str
    logit_scale: float  #: exp(logit_scale), as transformers' model holds it (float32, then exp)
    logit_bias: float

    @classmethod
    def load(cls, model_dir: Path) -> NumpyTextTower | None:
        """The tower of checkpoint ``model_dir``; None where it cannot be run here exactly (no
        safetensors weights, a weight missing, an activation other than the tanh GELUs / quick GELU)."""
        model_dir = Path(model_dir)
        tc = read_model_config(model_dir)["text_config"]
        files = _weight_files(model_dir)
        if files is None or tc["hidden_act"] not in _ACTIVATIONS:
            return None
        w: dict[str, np.ndarray] = {}
        for f in files:
            w.update(read_safetensors(f, lambda k: k.startswith(_PREFIX) or k in ("logit_scale", "logit_bias")))
        n_layers, n_heads, d = int(tc["num_hidden_layers"]), int(tc["num_attention_heads"]), int(tc["hidden_size"])
        need = ["embeddings.token_embedding.weight", "embeddings.position_embedding.weight",
                "final_layer_norm.weight", "final_layer_norm.bias", "head.weight", "head.bias"]
        need += [f"encoder.layers.{i}.{m}.{p}" for i in range(n_layers) for p in ("weight", "bias")
                 for m in ("layer_norm1", "layer_norm2", "self_attn.q_proj", "self_attn.k_proj",
                           "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2")]
        if any(_PREFIX + k not in w for k in need) or "logit_scale" not in w or "logit_bias" not in w \
                or n_heads <= 0 or d % n_heads or w[_PREFIX + need[0]].shape[-1] != d:
            return None
        scale = float(np.exp(np.float32(w.pop("logit_scale").reshape(-1)[0])))
        bias = float(np.float32(w.pop("logit_bias").reshape(-1)[0]))
        return cls({k.removeprefix(_PREFIX): v for k, v in w.items()}, n_layers, n_heads,
                   float(tc["layer_norm_eps"]), str(tc["hidden_act"]), scale, bias)

    def hidden_states(self, ids: np.ndarray) -> np.ndarray:
        """float32 (Q, L, D): the last hidden state (after the final LayerNorm) of token ids (Q, L)."""
        w, act = self.w, _ACTIVATIONS[self.act]
        ids = np.asarray(ids, np.int64)
        q_n, length = ids.shape
        pos = w["embeddings.position_embedding.weight"]
        if length > len(pos):
            raise ValueError(f"{length} tokens; the text tower takes at most {len(pos)}")
        x = w["embeddings.token_embedding.weight"][ids] + pos[:length]
        d = x.shape[-1]
        hd = d // self.n_heads
        scale = np.float32(hd ** -0.5)
        for i in range(self.n_layers):
            p = f"encoder.layers.{i}."
            h = _layer_norm(x, w[p + "layer_norm1.weight"], w[p + "layer_norm1.bias"], self.eps)
            q, k, v = (_linear(h, w[f"{p}self_attn.{n}_proj.weight"], w[f"{p}self_attn.{n}_proj.bias"])
                       .reshape(q_n, length, self.n_heads, hd).transpose(0, 2, 1, 3) for n in "qkv")
            s = (q @ k.transpose(0, 1, 3, 2)) * scale  # (Q, H, L, L); SigLIP's text tower attends to all
            s -= s.max(-1, keepdims=True)
            np.exp(s, out=s)
            s /= s.sum(-1, keepdims=True)
            o = (s @ v).transpose(0, 2, 1, 3).reshape(q_n, length, d)
            x = x + _linear(o, w[p + "self_attn.out_proj.weight"], w[p + "self_attn.out_proj.bias"])
            h = _layer_norm(x, w[p + "layer_norm2.weight"], w[p + "layer_norm2.bias"], self.eps)
            h = _linear(act(_linear(h, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"])),
                        w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"])
            x = x + h
        return _layer_norm(x, w["final_layer_norm.weight"], w["final_layer_norm.bias"], self.eps).astype(np.float32)

    def pooled(self, ids: np.ndarray) -> np.ndarray:
        """float32 (Q, P): the pooled text features (the last position through the head), not normalised."""
        last = self.hidden_states(ids)[:, -1]
        return _linear(last, self.w["head.weight"], self.w["head.bias"]).astype(np.float32)


#: tokenizer classes that run ``tokenizer.json`` as it is (no pipeline rebuilt in Python)
_GENERIC_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")
_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_REBUILDS = ("add_bos_token", "add_eos_token")
#: tokenizer_config.json keys under which transformers changes the pipeline or the encoding
_CHANGES_ENCODING = (*_REBUILDS, "add_prefix_space", "split_special_tokens",
                     "post_processor", "additional_special_tokens", "extra_special_tokens", "fix_mistral_regex")


def _content(token) -> str | None:
    return token.get("content") if isinstance(token, dict) else token if isinstance(token, str) else None


class FastTokenizer:
    """The checkpoint's ``tokenizer.json`` run by the ``tokenizers`` library exactly as transformers'
    generic tokenizer runs it when called ``tok(texts, padding="max_length", truncation=True,
    max_length=L)`` right-padded (as :meth:`Backbone.tokenize` calls it)."""

    def __init__(self, tok, length: int) -> None:
        self._tok = tok
        self.length = length

    @classmethod
    def load(cls, model_dir: Path, length: int) -> FastTokenizer | None:
        """None where transformers would do more than run ``tokenizer.json``: another tokenizer class
        (as for every ``siglip2``, i.e. NaFlex, checkpoint),
        options that change the encoding, special tokens that it would add, no post-processor."""
        model_dir = Path(model_dir)
        if read_model_config(model_dir).get("model_type") == "siglip2":
            return None  # transformers gives every siglip2 checkpoint its own Siglip2Tokenizer pipeline
        try:
            cfg = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
            special = json.loads((model_dir / "special_tokens_map.json").read_text(encoding="utf-8")) \
                if (model_dir / "special_tokens_map.json").is_file() else {}
            if not (model_dir / "tokenizer.json").is_file() or not isinstance(cfg, dict) \
                    or not isinstance(special, dict):
                return None
        except (OSError, ValueError):
            return None
        # add_bos_token / add_eos_token, even false, make transformers rebuild the post-processor
        if cfg.get("tokenizer_class") not in _GENERIC_TOKENIZERS or any(k in cfg for k in _REBUILDS) \
                or any(cfg.get(k) for k in _CHANGES_ENCODING) or cfg.get("truncation_side", "right") != "right":
            return None
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        except Exception:  # noqa: BLE001 - transformers will say what is wrong with it
            return None
        if tok.post_processor is None or tok.get_vocab_size() > 100_000:
            return None
        added = {t.content for t in tok.get_added_tokens_decoder().values()}
        named = {k: _content(special.get(k, cfg.get(k))) for k in _SPECIAL_KEYS}
        declared = [_content(t) for t in (cfg.get("added_tokens_decoder") or {}).values()]
        pad = named["pad_token"]
        if pad is None or any(t is not None and t not in added for t in [*named.values(), *declared]) \
                or any(k in special for k in _CHANGES_ENCODING):
            return None
        pad_id = tok.token_to_id(pad)
        if pad_id is None:
            return None
        tok.encode_special_tokens = False
        tok.no_padding()
        tok.enable_truncation(max_length=length, stride=0, strategy="longest_first", direction="right")
        tok.enable_padding(direction="right", pad_id=pad_id, pad_type_id=int(cfg.get("pad_token_type_id", 0)),
                           pad_token=pad, length=length)
        return cls(tok, length)

    def ids(self, texts: list[str]) -> np.ndarray:
        """int64 (Q, length): the token ids of ``texts`` (as given: lower-case them first)."""
        enc = self._tok.encode_batch(list(texts), add_special_tokens=True)
        return np.array([e.ids for e in enc], dtype=np.int64).reshape(len(texts), self.length)
