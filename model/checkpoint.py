"""Checkpoints are folders: ``config.json`` + ``model.safetensors`` (never pickle).

A training run adds ``trainer_state.json`` and ``optimizer.safetensors`` so it can
resume. Loading refuses pickle files (``*.pt``, ``*.pth``, ``*.bin``, ``*.ckpt``,
``*.pkl``): unpickling runs arbitrary code.

Heads saved before the experimental options of :data:`REMOVED_OPTIONS` were removed
still load: their keys are dropped when they hold the value that meant "not used";
a head trained with one of them in use is refused (it must be retrained).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from groundzero.errors import ConfigError, ModelNotFoundError
from groundzero.model.grounder import GroundingModel, GroundingModelConfig

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")
FORMAT = "groundzero-grounding-head/1"

#: Experimental options removed from GroundZero: where each sat in ``config.json`` -> whether a
#: saved value means the option was not used (empty frame offsets, the text tower's output as
#: the only text layer, a zero share or count). ``model.loss.sentence_contrast`` weighted a loss
#: that was only computed with negative sentences, so any value of it is dropped.
REMOVED_OPTIONS: dict[tuple[str, ...], Callable[[object], bool]] = {
    ("model", "encoder", "motion_offsets"): lambda v: list(v) == [],
    ("model", "context_motion_offsets"): lambda v: list(v) == [],
    ("model", "text_layers"): lambda v: list(v) == [-1],
    ("model", "loss", "sentence_contrast"): lambda v: True,
    # training-only options: the record of how a head was trained; any value loads
    ("train", "hard_negatives"): lambda v: True,
    ("train", "lookalike_groups"): lambda v: True,
    ("train", "sentence_negatives"): lambda v: True,
}


def save_model(out_dir: str | Path, model: GroundingModel, extra: dict | None = None) -> Path:
    """Write ``config.json`` (model config + ``extra`` metadata) and ``model.safetensors``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    meta = {"format": FORMAT, "model": model.cfg.to_dict(), **(extra or {})}
    (out / "config.json").write_text(json.dumps(meta, indent=2))
    return out


def read_config(ckpt_dir: str | Path) -> dict:
    """The checkpoint's ``config.json``, after refusing pickle-only or foreign folders."""
    d = Path(ckpt_dir).expanduser()
    if d.is_file() and d.suffix in PICKLE_SUFFIXES:
        raise ConfigError(f"{d} is a pickle file; GroundZero loads only safetensors checkpoints "
                          "(a folder with config.json + model.safetensors), because unpickling runs code")
    if not d.is_dir():
        raise ModelNotFoundError(f"grounding head {d} does not exist; train one with `groundzero train`")
    if not (d / "model.safetensors").is_file():
        pickles = sorted(p.name for p in d.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise ConfigError(f"{d} holds only pickle weights ({', '.join(pickles)}); GroundZero loads "
                              "only model.safetensors, because unpickling runs code")
        raise ModelNotFoundError(f"{d} has no model.safetensors; pass a folder written by `groundzero train`")
    meta = json.loads((d / "config.json").read_text())
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{d}/config.json is not a GroundZero grounding head (format {meta.get('format')!r})")
    drop_removed_options(meta, d)
    return meta


def drop_removed_options(meta: dict, where: str | Path = "the head") -> dict:
    """Remove, in place, the keys of :data:`REMOVED_OPTIONS` that hold their "not used" value.

    Raises:
        ConfigError: the head was trained with one of those options in use.
    """
    used = []
    for path, unused in REMOVED_OPTIONS.items():
        node = meta
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict) or path[-1] not in node:
            continue
        value = node[path[-1]]
        try:
            ok = unused(value)
        except TypeError:  # not a list where one was expected
            ok = False
        if ok:
            del node[path[-1]]
        else:
            used.append(f"{'.'.join(path)}={json.dumps(value)}")
    if used:
        what, it = ("a removed experimental option", "it") if len(used) == 1 else ("removed experimental options", "them")
        raise ConfigError(f"{where} was trained with {what} ({', '.join(used)}); GroundZero no longer supports "
                          f"{it}: retrain the head with `groundzero train`")
    return meta


def update_config(ckpt_dir: str | Path, values: dict) -> dict:
    """Merge ``values`` into the checkpoint's ``config.json`` metadata (e.g. a calibrated threshold).

    Written to a temporary file and swapped in with ``os.replace``; returns the new metadata.
    Model keys (``format``, ``model``) cannot be changed this way.
    """
    d = Path(ckpt_dir).expanduser()
    meta = read_config(d)
    if {"format", "model"} & set(values):
        raise ConfigError("update_config cannot change a checkpoint's format or model config")
    meta.update(values)
    tmp = d / "config.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, d / "config.json")
    return meta


def load_model(ckpt_dir: str | Path, device: str | torch.device = "cpu") -> tuple[GroundingModel, dict]:
    """Rebuild the model from ``config.json`` and load ``model.safetensors`` (strict)."""
    meta = read_config(ckpt_dir)
    model = GroundingModel(GroundingModelConfig.from_dict(meta["model"]))
    model.load_state_dict(load_file(str(Path(ckpt_dir).expanduser() / "model.safetensors"), device="cpu"))
    return model.to(device).eval(), meta


def save_optimizer(out_dir: Path, opt: torch.optim.Optimizer, sched, state: dict) -> None:
    """Optimizer tensors to safetensors, everything else to JSON (resume without pickle)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{k}"] = v
    save_file(tensors, str(out_dir / "optimizer.safetensors"))
    (out_dir / "trainer_state.json").write_text(json.dumps({
        **state, "param_groups": sd["param_groups"], "scalars": scalars,
        "scheduler": sched.state_dict() if sched is not None else None,
    }, indent=2, default=list))


def load_optimizer(ckpt_dir: Path, opt: torch.optim.Optimizer, sched) -> dict:
    """Restore what :func:`save_optimizer` wrote; returns the trainer state dict."""
    meta = json.loads((ckpt_dir / "trainer_state.json").read_text())
    tensors = load_file(str(ckpt_dir / "optimizer.safetensors"))
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    for key, v in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    if sched is not None and meta.get("scheduler") is not None:
        sched.load_state_dict(meta["scheduler"])
    return meta
