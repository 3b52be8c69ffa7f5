"""Temporal context over frame features (project card, pipeline stage 02).

Two pieces give every frame a sense of *when* it is and *what surrounds it*:

* :func:`fractional_position_encoding` — a sinusoidal encoding of each frame's
  position as a *fraction* of its unpadded sequence (RGNet's
  ``PositionEmbeddingSine(normalize=True)``, RGNET_NOTES §1.2). A frame halfway
  through a 48 s window and one halfway through a 180 s window get the same code.
* :class:`TemporalContext` — a stack of residual dilated 1-D convolutions over
  the frame axis. With the default dilations ``(1, 2, 4, 8)`` and two kernel-3
  convolutions per block the receptive field is 61 frames (about 60 s at the
  1 fps the indexer samples at; card: "~60-second receptive field").

Padding convention everywhere: ``mask`` is (B, T) bool with True = valid frame.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from groundzero.errors import ConfigError


def fractional_position_encoding(
    t_valid: int | Tensor,
    dim: int,
    temperature: float = 10000.0,
    device: torch.device | str | None = None,
) -> Tensor:
    """Sine/cosine encoding of the fraction of the sequence each frame sits at.

    The position of frame t (1-based) among T valid frames is mapped to
    x_t = t / (T + 1e-6) · 2π ∈ (0, 2π], then for i = 0 … dim/2 − 1

        PE[t, 2i]   = sin(x_t / temperature^(2i/dim))
        PE[t, 2i+1] = cos(x_t / temperature^(2i/dim))

    This is DETR/RGNet's ``PositionEmbeddingSine(normalize=True)`` in 1-D, where
    x = cumsum(mask) / (total + 1e-6) · 2π (RGNET_NOTES §1.2; RGNet §3.2 gives the
    frames sine positions and the words none). RGNet uses temperature 10000, and
    100 for MAD's long windows.

    Args:
        t_valid: either an ``int`` T (one unpadded sequence) or a (B, T) bool
            mask, True = valid frame; each row is encoded over its own valid length.
        dim: encoding width; must be even.
        temperature: base of the geometric frequency ladder.
        device: where to build the int case (a mask's own device is used otherwise).

    Returns:
        (T, dim) for an int, (B, T, dim) for a mask. Padded frames get zeros.
        Float32, on the mask's device.
    """
    if dim <= 0 or dim % 2:
        raise ConfigError(
            f"fractional_position_encoding: dim must be a positive even number, got {dim}"
        )
    if isinstance(t_valid, int):
        mask = torch.ones(1, t_valid, dtype=torch.bool, device=device)
    else:
        if t_valid.dtype != torch.bool or t_valid.dim() != 2:
            raise ConfigError(
                "fractional_position_encoding: pass an int length or a (B, T) bool mask, "
                f"got a {t_valid.dtype} tensor of shape {tuple(t_valid.shape)}"
            )
        mask = t_valid
    m = mask.float()  # (B, T)
    pos = m.cumsum(dim=1)  # (B, T) 1-based index among valid frames
    x = pos / (pos[:, -1:] + 1e-6) * (2 * math.pi)  # (B, T) in (0, 2π]
    i = torch.arange(dim // 2, device=mask.device, dtype=torch.float32)  # (dim/2,)
    freq = temperature ** (2 * i / dim)  # (dim/2,)
    angles = x[..., None] / freq  # (B, T, dim/2)
    pe = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)  # (B, T, dim) interleaved
    pe = pe * m[..., None]
    return pe[0] if isinstance(t_valid, int) else pe


class DilatedResidualBlock(nn.Module):
    """x + Dropout(Conv_d(GELU(Conv_d(LN(x))))) with padded frames zeroed before each conv.

    Both convolutions share the dilation d and use "same" zero padding, so the
    block widens the receptive field by 2·(kernel_size − 1)·d frames.
    """

    def __init__(self, dim: int, dilation: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        self.norm = nn.LayerNorm(dim)
        self.conv1 = nn.Conv1d(dim, dim, kernel_size, padding=pad, dilation=dilation)
        self.conv2 = nn.Conv1d(dim, dim, kernel_size, padding=pad, dilation=dilation)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, pad: Tensor) -> Tensor:
        """x: (B, T, C); pad: (B, T, 1) bool, True = padded. Returns (B, T, C)."""
        h = self.norm(x).masked_fill(pad, 0.0)  # (B, T, C); zeroed so padding cannot leak
        h = self.act(self.conv1(h.transpose(1, 2)))  # (B, C, T)
        h = h.transpose(1, 2).masked_fill(pad, 0.0)  # (B, T, C)
        h = self.conv2(h.transpose(1, 2)).transpose(1, 2)  # (B, T, C)
        return x + self.drop(h)  # (B, T, C)


class TemporalContext(nn.Module):
    """Residual dilated 1-D convolutions over frame features (card stage 02).

    Receptive field: each block holds two convolutions of kernel k at dilation
    d, each widening the field by (k − 1)·d, so the stack sees

        RF = 1 + 2·(k − 1)·Σ d = 1 + 2·2·(1 + 2 + 4 + 8) = 61 frames

    for the defaults — frame t depends on frames t − 30 … t + 30, i.e. about
    60 s of video at 1 fps. (One conv per block would give only 31.)

    Padding: padded frames are zeroed before every convolution, so a valid
    frame's output is the same whether its sequence is alone or padded inside a
    batch (conv zero-padding at the sequence edge and zeroed padded frames look
    alike). Padded outputs are zero.
    """

    def __init__(
        self,
        dim: int,
        dilations: tuple[int, ...] = (1, 2, 4, 8),
        kernel_size: int = 3,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(
                f"TemporalContext: kernel_size must be odd (centred conv), got {kernel_size}"
            )
        if not dilations or min(dilations) < 1:
            raise ConfigError(
                f"TemporalContext: dilations must be positive integers, got {dilations}"
            )
        self.blocks = nn.ModuleList(
            DilatedResidualBlock(dim, d, kernel_size, dropout) for d in dilations
        )
        self.norm = nn.LayerNorm(dim)
        self.receptive_field = 1 + 2 * (kernel_size - 1) * sum(dilations)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x: (B, T, C) frame features; mask: (B, T) bool, True = valid. Returns (B, T, C)."""
        pad = ~mask[..., None]  # (B, T, 1)
        x = x.masked_fill(pad, 0.0)  # masked_fill, not *0: padded NaN/inf must not survive
        for block in self.blocks:
            x = block(x, pad)
        return self.norm(x).masked_fill(pad, 0.0)
