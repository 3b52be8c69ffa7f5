"""Context tokens of proposals: zero-shot segment means, or a trained head's learned tokens.

The kind in use is part of the index's parameters (``IndexParams.token_kind``):
``"zero-shot-mean"``, or ``"head:<sha256 prefix>"`` for a grounding head's
:class:`~groundzero.model.context_tokens.ContextTokenPooler`. Every video of one index
uses the same kind, so the FAISS shortlist compares like with like.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from groundzero.data.proposals import zero_shot_tokens

ZERO_SHOT = "zero-shot-mean"


def head_token_kind(head_dir: str | Path) -> str:
    """The token kind a head produces: its weights' SHA-256 prefix."""
    h = hashlib.sha256((Path(head_dir).expanduser() / "model.safetensors").read_bytes()).hexdigest()
    return f"head:{h[:16]}"


class TokenMaker:
    """Callable ``(frame_emb (T, D), windows (P, 2)) -> tokens (P, K, D)``, L2-normalised."""

    def __init__(self, kind: str, k: int, head_dir: str | None = None, device: str = "cpu"):
        self.kind, self.k, self.model = kind, k, None
        self.head_dir = str(Path(head_dir).expanduser().resolve()) if head_dir and kind != ZERO_SHOT else None
        if kind != ZERO_SHOT:
            from groundzero.errors import IndexMismatchError
            from groundzero.model.checkpoint import load_model

            if head_dir is None or head_token_kind(head_dir) != kind:
                raise IndexMismatchError(
                    f"this index's context tokens come from grounding head {kind}; pass that head "
                    "(--head) or run `groundzero reindex --head NEW_HEAD` to switch heads")
            self.model, _ = load_model(head_dir, device)
            self.k = self.model.cfg.context_tokens

    @torch.no_grad()
    def __call__(self, frame_emb: np.ndarray, windows: np.ndarray, batch: int = 256) -> np.ndarray:
        if self.model is None:
            return zero_shot_tokens(frame_emb, windows, self.k)
        dev = next(self.model.parameters()).device
        Lw = int((windows[:, 1] - windows[:, 0]).max()) if len(windows) else 0
        out = []
        for s in range(0, len(windows), batch):
            ws = windows[s : s + batch]
            x = torch.zeros(len(ws), Lw, frame_emb.shape[1], device=dev)
            m = torch.zeros(len(ws), Lw, dtype=torch.bool, device=dev)
            for i, (a, b) in enumerate(ws):
                x[i, : b - a] = torch.as_tensor(frame_emb[a:b], device=dev)
                m[i, : b - a] = True
            out.append(self.model.context_tokens(x, m).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.k, frame_emb.shape[1]), np.float32)
