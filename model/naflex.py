"""SigLIP 2 NaFlex frames: sizes that keep a frame's aspect ratio, and patch sequences (torch-free).

A NaFlex checkpoint (``siglip2-*-naflex``) takes a variable number of ``p x p`` patches instead
of a fixed square picture. Its image processor resizes each picture to the largest size whose
sides are multiples of ``p`` and whose patch count is at most ``max_num_patches``, keeping the
aspect ratio as closely as whole patches allow (:func:`naflex_size`), then cuts it into a
row-major sequence of patches (:func:`to_patches`), padded to ``max_num_patches`` with an
attention mask. Every frame of one video has the same size, so the decoder resizes once, to
:func:`naflex_size` of the video's picture, and the embed stage builds the same patch sequences
the processor would.
"""

from __future__ import annotations

import math

import numpy as np


def _scaled(scale: float, side: int, patch: int) -> int:
    """``side * scale`` rounded up to whole patches, at least one patch."""
    return max(patch, math.ceil(side * scale / patch) * patch)


def naflex_size(height: int, width: int, patch: int, max_patches: int, eps: float = 1e-5) -> tuple[int, int]:
    """(h, w) a NaFlex processor resizes a ``height x width`` picture to.

    The largest scale (found by bisection to ``eps``, as the SigLIP 2 processor does) at which both
    sides, rounded up to multiples of ``patch``, give at most ``max_patches`` patches.

    >>> naflex_size(720, 1280, 16, 256)
    (192, 336)
    """
    if height < 1 or width < 1 or patch < 1 or max_patches < 1:
        raise ValueError(f"naflex_size needs positive sizes, got {height}x{width}, patch {patch}, "
                         f"max_patches {max_patches}")
    lo, hi = eps / 10, 100.0
    while hi - lo >= eps:
        mid = (lo + hi) / 2
        n = (_scaled(mid, height, patch) // patch) * (_scaled(mid, width, patch) // patch)
        if n <= max_patches:
            lo = mid
        else:
            hi = mid
    return _scaled(lo, height, patch), _scaled(lo, width, patch)


def to_patches(frames: np.ndarray, patch: int, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frames -> NaFlex patch sequences, as the SigLIP 2 processor lays them out.

    Args:
        frames: (N, h, w, C) with h and w multiples of ``patch``.
        patch: patch side in pixels; length: the sequence length, padded with zeros (default: h*w/p²).
    Returns:
        patches (N, length, p*p*C) in ``frames``' dtype: patches row by row, each patch's pixels row
        by row with their channels last; spatial int64 (N, 2): (h / p, w / p) for every frame.
    """
    n, h, w, c = frames.shape
    if h % patch or w % patch:
        raise ValueError(f"frame sides must be multiples of the patch size {patch}, got {h}x{w}")
    gh, gw = h // patch, w // patch
    length = gh * gw if length is None else length
    if length < gh * gw:
        raise ValueError(f"{gh * gw} patches do not fit a sequence of {length}")
    x = frames.reshape(n, gh, patch, gw, patch, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, gh * gw, patch * patch * c)
    if length > gh * gw:
        x = np.concatenate([x, np.zeros((n, length - gh * gw, x.shape[-1]), x.dtype)], axis=1)
    return np.ascontiguousarray(x), np.tile(np.array([gh, gw], np.int64), (n, 1))


def from_patches(patches: np.ndarray, spatial: tuple[int, int], patch: int, channels: int = 3) -> np.ndarray:
    """Inverse of :func:`to_patches` for one size: (N, L, p*p*C) and (h/p, w/p) -> (N, h, w, C)."""
    gh, gw = spatial
    n = patches.shape[0]
    x = patches[:, : gh * gw].reshape(n, gh, gw, patch, patch, channels)
    return np.ascontiguousarray(x.transpose(0, 1, 3, 2, 4, 5).reshape(n, gh * patch, gw * patch, channels))
