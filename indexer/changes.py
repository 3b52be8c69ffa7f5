"""Did the picture change? A cheap pixel-space test on the decoded frames, streamed in chunks.

Used wherever a stage should look at a picture once rather than at every sampled frame: which
frames the OCR channel reads (:mod:`groundzero.indexer.ocr`). Which frames reuse an embedding is
a stricter test (:mod:`groundzero.indexer.stills`): setting aside what moved lately hides what
happens gradually in one place, which text does not do but the objects a query names do. Numpy only.

The measure. Each frame is reduced to a ``downsample x downsample`` grid of grey block means
(a 224 frame and ``downsample=16``: blocks of 14 x 14 pixels, whose means average compression
noise away). A block *differs* when its mean moved by more than ``threshold`` grey levels
(0-255) from the *reference*: the last kept (flagged) frame, so that a slow pan, whose
frame-to-frame steps stay small, adds up until it counts. A frame is flagged when

* the blocks that differ from the reference and are not *moving* cover more than
  ``min_fraction`` of the frame (new text on a slide, a new scene), or
* the blocks that changed since the previous frame cover more than ``motion_fraction`` of
  the frame (a cut, a fast pan: the picture as a whole moves).

A block is *moving* when it changed since the previous frame at a frame that was not flagged
within the last ``motion_memory_sec`` seconds (a speaker's picture-in-picture, a clock, a
video playing inside the slide); the mask is then grown by one block so the leading edge of
something that drifts is covered too. Moving blocks do not make a frame count, and their
reference follows the picture, so a region that stops moving is compared with what it last
showed, not with the last kept frame. Only *local* motion is set aside: when the moving blocks
cover more than ``max_moving_fraction`` of the frame the picture itself moves (a pan over a
page of text) and every block counts. A step change (a slide turning) happens at a flagged
frame and marks nothing as moving, so the next slide counts in full. The block history before the first frame is unknown: at the second frame every block
counts as moving (a change right at the second frame is missed unless it is a cut).

Thresholds (``ChangeConfig()``), measured on generated lectures (tests/media.py
``make_lecture``: white slides of 2-3 lines of text, a ``testsrc2`` inset of 1/9 of the frame
drifting 1/12 of the width over 40 s; decoded at 224 x 224, 1 fps): away from slide changes at
most 0.4 % of the frame counts (the inset's edge), at slide changes 8-12 % (of which the blocks
holding text move by 10-100 grey levels, median 18); strong grain (``noise=alls=30``) moves
block means by at most 2 levels. Hence ``threshold=8`` and ``min_fraction=0.02`` (about five
blocks: one short line of text). A pan over a page of dense text at a third of a pixel per
second counts about every 2 s. ``bench/ocr_cost.py`` reports the detector's cost: about
0.2 ms per frame, 0.01 CPU-minutes per video hour at 1 fps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from groundzero.errors import ConfigError

#: ITU-R BT.601 luma weights for R, G, B
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class ChangeConfig:
    """When a frame counts as a change (see the module docstring for the measure)."""

    #: grey-level change (0-255) of a block mean that counts the block as changed
    threshold: float = 8.0
    #: frames are reduced to a downsample x downsample grid of grey block means
    downsample: int = 16
    #: fraction of the frame (0-1) that must differ, outside moving blocks, to flag a change:
    #: 0.02 is about 5 blocks of 256, one short line of slide text
    min_fraction: float = 0.02
    #: fraction of the frame that changed since the previous frame above which the frame is
    #: flagged whatever moves (a cut, a fast pan); above a 1/9 inset with its moving edges
    motion_fraction: float = 0.3
    #: moving blocks are set aside only while they cover at most this fraction of the frame
    #: (an inset of 1/9 with its grown edges covers ~1/4); beyond it the picture as a whole
    #: moves (a slow pan over text) and every block counts against the last kept frame
    max_moving_fraction: float = 0.4
    #: seconds a block counts as moving after it last changed between two unflagged frames
    motion_memory_sec: float = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 255:
            raise ConfigError(f"change threshold must be in (0, 255) grey levels, got {self.threshold}",
                              field="threshold")
        if not 1 <= self.downsample <= 256:
            raise ConfigError(f"downsample must be a grid side in [1, 256] blocks, got {self.downsample}",
                              field="downsample")
        for name in ("min_fraction", "motion_fraction", "max_moving_fraction"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                raise ConfigError(f"{name} must be a fraction of the frame in [0, 1), got {v}", field=name)
        if self.motion_memory_sec < 0:
            raise ConfigError(f"motion_memory_sec must be >= 0 seconds, got {self.motion_memory_sec}",
                              field="motion_memory_sec")


def block_means(frames: np.ndarray, grid: int) -> np.ndarray:
    """Grey block means: uint8 (T, H, W, 3) RGB -> float32 (T, grid, grid) in grey levels 0-255.

    Block edges are ``round(k * H / grid)``, so H and W need not be multiples of ``grid``
    (a frame smaller than the grid repeats pixels).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) RGB, got shape {frames.shape}")
    grey = frames.astype(np.float32) @ _LUMA  # (T, H, W)
    _, h, w = grey.shape
    rows = np.minimum((np.arange(grid + 1) * h / grid).round().astype(int), h)
    cols = np.minimum((np.arange(grid + 1) * w / grid).round().astype(int), w)
    if h < grid or w < grid:  # tiny frames: nearest pixels
        ys, xs = (np.arange(grid) * h) // grid, (np.arange(grid) * w) // grid
        return np.ascontiguousarray(grey[:, ys][:, :, xs])
    # sums over row bands then column bands (np.add.reduceat), divided by block areas
    sums = np.add.reduceat(np.add.reduceat(grey, rows[:-1], axis=1), cols[:-1], axis=2)
    area = np.outer(np.diff(rows), np.diff(cols)).astype(np.float32)
    return sums / area


def grow_mask(mask: np.ndarray) -> np.ndarray:
    """bool (G, G) mask grown by one block in the 8 directions."""
    p = np.pad(mask, 1)
    g = mask.shape[0]
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= p[dy:dy + g, dx:dx + g]
    return out


class ChangeDetector:
    """Flags the frames of one video whose picture differs from the last kept frame.

    Feed the video's frames in order, in chunks of any size; the detector keeps its state
    across chunks. One detector per video (it is not thread-safe). ``fractions`` of the last
    :meth:`feed` (float32 (T,): the counted fraction of the frame per frame) are kept in
    :attr:`last_fractions` for measurements.
    """

    def __init__(self, cfg: ChangeConfig | None = None) -> None:
        self.cfg = cfg if cfg is not None else ChangeConfig()
        g = self.cfg.downsample
        self._ref: np.ndarray | None = None  # float32 (G, G): the reference picture
        self._prev = np.zeros((g, g), np.float32)  # the previous frame's blocks
        self._second = False  # the next frame is the second one seen (no motion history yet)
        self._moved_sec = np.full((g, g), -np.inf)  # when each block last moved (seconds)
        self._last_sec = -np.inf
        self.last_fractions = np.zeros(0, np.float32)

    def feed(self, frames: np.ndarray, timestamps_sec: np.ndarray) -> np.ndarray:
        """Which of these frames are changes: bool (T,), True where the frame should be kept.

        ``frames``: uint8 (T, S, S, 3) RGB (any H x W works), the video's next frames;
        ``timestamps_sec``: float (T,), increasing, continuing the previous chunk's. The first
        frame the detector sees is always a change.
        """
        ts = np.asarray(timestamps_sec, dtype=np.float64)
        if len(ts) != len(frames):
            raise ValueError(f"{len(frames)} frames but {len(ts)} timestamps")
        if len(ts) and (np.any(np.diff(ts) <= 0) or ts[0] <= self._last_sec):
            raise ValueError("timestamps_sec must increase, continuing the previous chunk")
        cfg = self.cfg
        blocks = block_means(frames, cfg.downsample) if len(frames) else np.zeros((0,), np.float32)
        flags = np.zeros(len(ts), bool)
        fractions = np.zeros(len(ts), np.float32)
        for i, (g, t) in enumerate(zip(blocks, ts)):
            if self._ref is None:
                flags[i], fractions[i] = True, 1.0
                self._ref, self._prev = g.copy(), g
                self._last_sec, self._second = t, True
                continue
            step = np.abs(g - self._prev) > cfg.threshold  # (G, G) changed since the previous frame
            recent = self._moved_sec >= t - cfg.motion_memory_sec  # moved at unflagged frames lately
            moving = grow_mask(recent)
            if moving.mean() > cfg.max_moving_fraction:  # not a local inset: the picture itself moves
                recent = moving = np.zeros_like(moving)
            if self._second:  # no history yet: what moves is unknown, only a cut counts
                moving = np.ones_like(moving)
                self._second = False
            differ = (np.abs(g - self._ref) > cfg.threshold) & ~moving
            fractions[i] = differ.mean()
            flags[i] = fractions[i] > cfg.min_fraction or step.mean() > cfg.motion_fraction
            if flags[i]:
                self._ref = g.copy()
            else:  # what moves is compared with what it last showed; a flagged step is no motion
                self._ref[recent] = g[recent]
                self._moved_sec[step] = t
            self._prev, self._last_sec = g, t
        self.last_fractions = fractions
        return flags
