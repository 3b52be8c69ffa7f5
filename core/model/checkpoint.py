"""Checkpoints are folders: ``config.json`` + ``model.safetensors`` (never pickle).

A training run adds ``trainer_state.json`` and ``optimizer.safetensors`` so it can
resume. Loading refuses pickle files (``*.pt``, ``*.pth``, ``*.bin``, ``*.ckpt``,
``*.pkl``): unpickling runs arbitrary code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from core.errors import ConfigError, ModelNotFoundError
from core.model.grounder import GroundingModel, GroundingModelConfig

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")
FORMAT = "groundzero-grounding-head/1"


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
