"""Which model built an index: resolving a checkpoint and fingerprinting its weights (torch-free).

A model is named by a local directory (``save_pretrained`` output), a Hugging Face hub id
(resolved through the local cache, downloading only when the network allows), or a name
registered by a plugin (:func:`groundzero.plugins.named_model`, e.g. ``demo``).
The store records a :class:`ModelIdentity` in every manifest; search refuses a query model
whose fingerprint differs. It also records the runtime (precision) that embedded the frames; a
later index run refuses another one, search does not: its text tower's precision is the search
machine's choice, and bf16 and fp32 image embeddings agree to a cosine of 0.999 or better.

Reading an identity is cheap, for a one-shot search: ``config.json`` is read as JSON (transformers'
defaults for what it omits; transformers is not imported), and a fingerprint is computed once per
process, and for large checkpoints (:data:`FINGERPRINT_CACHE_MIN_BYTES`) once per file version:
it is kept in ``$GROUNDZERO_CACHE_DIR/fingerprints.json`` (default ``~/.cache/groundzero``) under
each weight file's path, size, inode, mtime and ctime, so any rewrite or replacement of a file
hashes it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from groundzero.errors import ModelNotFoundError, UnsupportedModelError
from groundzero.model.precision import LEGACY_RUNTIME
from groundzero.plugins import model_names, named_model

#: The real backbone for real archives (needs the network once, or a local copy): the default on a GPU.
SO400M_ID = "google/siglip2-so400m-patch14-384"
#: The default on a CPU-only machine: SigLIP 2 base at 224 px, a size a CPU can index (README: its cost).
CPU_MODEL_ID = "google/siglip2-base-patch16-224"

_WEIGHT_SUFFIXES = (".safetensors", ".bin")
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
    image_size: int  #: the square frame side of a fixed-resolution checkpoint; 0 for NaFlex
    text_max_len: int
    #: what embedded an index's frames: "torch-fp32" | "torch-bf16" (:mod:`groundzero.model.precision`);
    #: "" where none is chosen (a query-time identity, :func:`read_identity`), which any index accepts
    runtime: str = ""
    #: a NaFlex checkpoint's patch side (frames keep their aspect ratio, :mod:`groundzero.model.naflex`);
    #: 0 for a fixed-resolution one
    patch_size: int = 0

    @property
    def naflex(self) -> bool:
        """Whether the checkpoint takes NaFlex patch sequences rather than square frames."""
        return self.patch_size > 0

    def to_dict(self) -> dict:
        d = {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "embed_dim": self.embed_dim,
            "image_size": self.image_size,
            "text_max_len": self.text_max_len,
        }
        if self.runtime:
            d["runtime"] = self.runtime
        if self.patch_size:
            d["patch_size"] = self.patch_size
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelIdentity:
        return cls(
            name=str(d["name"]),
            fingerprint=str(d["fingerprint"]),
            embed_dim=int(d["embed_dim"]),
            image_size=int(d["image_size"]),
            text_max_len=int(d["text_max_len"]),
            runtime=str(d.get("runtime", LEGACY_RUNTIME)),  # indexes built before runtimes were recorded
            patch_size=int(d.get("patch_size", 0)),
        )


def resolve_model_dir(name_or_path: str) -> Path:
    """Return a local directory holding the checkpoint.

    A registered model name (:func:`groundzero.plugins.named_model`) gives its backbone
    directory. A path that exists is used as is. Anything else is treated as a hub id and
    resolved with ``huggingface_hub.snapshot_download`` (which reads the local
    cache first, so ``HF_HUB_OFFLINE=1`` works once the model is cached).
    """
    return _resolve(name_or_path)[0]


def _resolve(name_or_path: str) -> tuple[Path, bool]:
    """(the checkpoint directory, whether ``name_or_path`` named a registered model)."""
    if not name_or_path or not name_or_path.strip():
        raise ModelNotFoundError("no model given: pass --model with a directory or a hub id")
    # a name with a slash is a path or a hub id, never a registered name: no entry-point scan for it
    bundle = named_model(name_or_path) if "/" not in name_or_path else None
    p = bundle.backbone_dir if bundle is not None else Path(name_or_path).expanduser()
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
        return p, bundle is not None
    if not _HUB_ID.fullmatch(name_or_path):
        raise ModelNotFoundError(
            f"model directory {name_or_path} does not exist; pass an existing checkpoint "
            f"directory, a hub id such as {SO400M_ID}, or a model name ({', '.join(model_names()) or 'none'})"
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=name_or_path)), False
    except Exception as e:  # network, auth, missing repo: all actionable the same way
        raise ModelNotFoundError(_hub_failure(name_or_path, e)) from e


def _hub_failure(hub_id: str, e: Exception) -> str:
    """What went wrong fetching ``hub_id``, and what to do: offline and not cached is the usual case."""
    import os

    from huggingface_hub import constants

    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    cause = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    how = (f"on a machine with network run `hf download {hub_id} --local-dir DIR` and copy DIR here, then "
           "pass --model DIR (any directory written by save_pretrained works); or use --model demo, the "
           "synthetic demo model")
    if offline or "offline" in cause.lower() or "connect" in cause.lower() or "resolve" in cause.lower():
        return (f"model {hub_id} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and the hub cannot "
                f"be reached ({'HF_HUB_OFFLINE is set' if offline else 'offline'}; {cause}); {how}")
    return f"model {hub_id!r} could not be loaded from the Hugging Face hub or its cache ({cause}); {how}"


def fingerprint_weights(model_dir: Path) -> str:
    """SHA-256 over (file name, bytes) of every weight file, in name order.

    Computed once per process and weight-file version; for checkpoints of at least
    :data:`FINGERPRINT_CACHE_MIN_BYTES` also kept on disk across processes (module docstring).
    """
    files = sorted(f for f in Path(model_dir).iterdir() if f.is_file() and f.name.endswith(_WEIGHT_SUFFIXES))
    if not files:
        raise ModelNotFoundError(f"model directory {model_dir} holds no weight files (*.safetensors)")
    stamps = [_file_stamp(f) for f in files]
    key = json.dumps(stamps)
    with _fp_lock:
        if key in _fp_memo:
            return _fp_memo[key]
    big = sum(st[2] for st in stamps) >= FINGERPRINT_CACHE_MIN_BYTES
    sha = _disk_cache_get(key) if big else None
    if sha is None:
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
        sha = h.hexdigest()
        # changed while hashed, or so recently that a rewrite within the file system's timestamp
        # granularity would go unseen: remember nothing
        if [_file_stamp(f) for f in files] != stamps or \
                time.time_ns() - max(max(st[-2:]) for st in stamps) < _RECENT_NS:
            return sha
        if big:
            _disk_cache_put(key, sha)
    with _fp_lock:
        _fp_memo[key] = sha
    return sha


#: weight files totalling at least this many bytes have their fingerprint kept on disk (smaller ones
#: hash in milliseconds)
FINGERPRINT_CACHE_MIN_BYTES = 64 << 20
_FP_CACHE_MAX = 64  #: fingerprints kept on disk (most recent)
_RECENT_NS = 2_000_000_000  #: a file changed less than this long ago is hashed every time
_fp_memo: dict[str, str] = {}
_fp_lock = threading.Lock()


def _file_stamp(f: Path) -> list:
    """What identifies one version of a file: any write, copy over or replacement changes it (the
    name is hashed into the fingerprint; the hub's cache links names to blobs)."""
    st = f.stat()
    return [f.name, str(f.resolve()), st.st_size, st.st_ino, st.st_dev, st.st_mtime_ns, st.st_ctime_ns]


def _fingerprint_cache() -> Path:
    base = os.environ.get("GROUNDZERO_CACHE_DIR") or Path.home() / ".cache" / "groundzero"
    return Path(base) / "fingerprints.json"


def _disk_cache_read() -> dict[str, str]:
    try:
        d = json.loads(_fingerprint_cache().read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in d.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(d, dict) else {}


def _disk_cache_get(key: str) -> str | None:
    sha = _disk_cache_read().get(key)
    return sha if sha is not None and re.fullmatch(r"[0-9a-f]{64}", sha) else None


def _disk_cache_put(key: str, sha: str) -> None:
    """Best effort: a cache that cannot be written only means hashing again next time."""
    d = _disk_cache_read()
    d.pop(key, None)
    d[key] = sha
    d = dict(list(d.items())[-_FP_CACHE_MAX:])
    path = _fingerprint_cache()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(d))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


#: transformers' defaults (SiglipTextConfig, SiglipVisionConfig) for what a config.json leaves out
TEXT_CONFIG_DEFAULTS = {"vocab_size": 32000, "hidden_size": 768, "intermediate_size": 3072,
                        "num_hidden_layers": 12, "num_attention_heads": 12, "max_position_embeddings": 64,
                        "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6, "projection_size": None}
VISION_CONFIG_DEFAULTS = {"image_size": 224, "patch_size": 16, "hidden_size": 768}


def read_model_config(model_dir: Path) -> dict:
    """The checkpoint's ``config.json`` as a dict, its ``text_config`` and ``vision_config`` completed
    with transformers' defaults (``projection_size``: the text width when unset), without importing
    transformers. Raises ModelNotFoundError for a file that is not a JSON object."""
    path = Path(model_dir) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise TypeError(f"not a JSON object but a JSON {type(config).__name__}")
        text = {**TEXT_CONFIG_DEFAULTS, **(config.get("text_config") or {})}
        vision = {**VISION_CONFIG_DEFAULTS, **(config.get("vision_config") or {})}
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise ModelNotFoundError(f"cannot read the model config in {model_dir}: {e}") from e
    text["projection_size"] = text["projection_size"] or text["hidden_size"]
    return {**config, "text_config": text, "vision_config": vision}


def read_identity(name_or_path: str) -> tuple[Path, ModelIdentity]:
    """Resolve a checkpoint and read its identity without loading the weights.

    Refuses architectures GroundZero cannot use (see the module docstring).
    """
    model_dir, registered = _resolve(name_or_path)
    config = read_model_config(model_dir)
    model_type = config.get("model_type")
    if model_type not in ("siglip", "siglip2"):
        raise UnsupportedModelError(
            f"model {name_or_path} is a {model_type!r} checkpoint; GroundZero needs a SigLIP or "
            f"SigLIP 2 dual encoder such as {SO400M_ID}"
        )
    vc, tc = config["vision_config"], config["text_config"]
    is_local = Path(name_or_path).expanduser().exists() and not registered
    naflex = model_type == "siglip2"  # transformers' Siglip2Model: the NaFlex checkpoints
    try:
        identity = ModelIdentity(
            name=str(model_dir.resolve()) if is_local else name_or_path,  # a hub id or a model name as given
            fingerprint=fingerprint_weights(model_dir),
            embed_dim=int(tc["projection_size"]),
            image_size=0 if naflex else int(vc["image_size"]),
            text_max_len=int(tc["max_position_embeddings"]),
            patch_size=int(vc["patch_size"]) if naflex else 0,
        )
    except (TypeError, ValueError) as e:
        raise ModelNotFoundError(f"cannot read the model config in {model_dir}: {e}") from e
    return model_dir, identity


#: PIL resampling codes (``preprocessor_config.json`` ``resample``) -> the ffmpeg scaler closest to each
_PIL_TO_FFMPEG = {0: "neighbor", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "area", 5: "bilinear"}


def default_max_patches(model_dir: Path) -> int:
    """A NaFlex checkpoint's patch budget per frame: its processor's ``max_num_patches`` (256, the
    SigLIP 2 processor's default, when unset)."""
    path = Path(model_dir) / "preprocessor_config.json"
    try:
        n = json.loads(path.read_text()).get("max_num_patches", 256) if path.is_file() else 256
    except (OSError, ValueError, AttributeError) as e:
        raise ModelNotFoundError(f"cannot read {path}: {e}") from e
    if not isinstance(n, int) or n < 1:
        raise ModelNotFoundError(f"{path}: max_num_patches={n!r} is not a positive number of patches")
    return n


def image_resample(model_dir: Path) -> str:
    """The interpolation the checkpoint's image processor resizes with, as an ffmpeg scaler name.

    Read from ``preprocessor_config.json`` (``resample``, a PIL code: 2 bilinear for the
    fixed-resolution and NaFlex SigLIP 2 checkpoints, 3 bicubic for SigLIP 1); when the file or
    the key is absent, the processor class's default: bilinear for NaFlex (``siglip2``), bicubic
    otherwise.
    """
    path = Path(model_dir) / "preprocessor_config.json"
    naflex = (Path(model_dir) / "config.json").is_file() and read_model_config(model_dir).get("model_type") == "siglip2"
    default = 2 if naflex else 3
    code = json.loads(path.read_text()).get("resample", default) if path.is_file() else default
    if code not in _PIL_TO_FFMPEG:
        raise ModelNotFoundError(f"{path}: resample={code!r} is not a PIL resampling filter (0-5)")
    return _PIL_TO_FFMPEG[code]
