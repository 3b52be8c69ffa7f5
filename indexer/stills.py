"""Still frames are not embedded twice: which decoded frames may reuse an earlier frame's embedding.

A frame whose picture barely changed from the last *embedded* frame of its video reuses that
frame's embedding; the timeline stays at ``fps``: every frame keeps its own row in the index, a
reused one with a copy of its reference's embedding (:class:`~groundzero.indexer.rows.VideoAssembler`
fills it in). The test is cheap and in pixel space, on the frames already decoded at 1 fps, with
block means as in :func:`~groundzero.indexer.changes.block_means` (a ``downsample x downsample``
grid), per colour channel. Numpy only.

A frame is embedded when the blocks whose mean in any colour differs by more than ``threshold`` levels from the
last embedded frame, outside *persistent motion*, cover more than ``min_fraction`` of the frame,
or when the last embedded frame is ``max_reuse_sec`` old. Persistent motion is what a lecture's
speaker inset is: a block that has kept changing from frame to frame (no pause over ``gap_sec``)
for ``persist_sec`` seconds, the mask grown by one block so the edges of a drifting inset are
covered too. Its content is set aside (it changes every frame and would make every frame count),
and compared, once it stops, with what it last showed.

Why not the OCR channel's :class:`~groundzero.indexer.changes.ChangeDetector`: it sets aside any
block that changed at an unflagged frame lately, which hides whatever happens *gradually* in one
place (an object fading in, a small object drifting): text on screen does not do that, the
objects a query asks for do. On the demo archive (coloured shapes appearing, moving, fading over
backgrounds) reuse with that detector embedded 17 % of frames and lost 0.30 of within-video R1@0.5;
per-block persistence sets aside only what stays in motion in one place for ``persist_sec``
seconds: a moving object crosses a block in a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from groundzero.errors import ConfigError
from groundzero.indexer.changes import block_means, grow_mask


@dataclass(frozen=True)
class StillConfig:
    """When a frame reuses the last embedded frame's embedding (see the module docstring)."""

    #: change (0-255) of a block's mean in any of R, G, B that counts the block as changed
    threshold: float = 8.0
    #: frames are reduced to a downsample x downsample grid of grey block means
    downsample: int = 16
    #: fraction of the frame (0-1) that must differ from the last embedded frame, outside
    #: persistent motion, to embed a frame; 0: any one block (on the demo archive's 64 x 64
    #: frames, blocks of 4 x 4 pixels, 0.01 missed small shapes: zero-shot R1@0.5 fell by 0.02)
    min_fraction: float = 0.0
    #: seconds a block must keep changing (pauses under ``gap_sec``) to count as persistent motion
    persist_sec: float = 30.0
    #: a pause of this many seconds without change ends a block's motion
    gap_sec: float = 5.0
    #: persistent motion is set aside only while it covers at most this fraction of the frame (a
    #: 1/9 inset grown by a block covers ~1/4); beyond it the picture as a whole moves: every block counts
    max_persistent_fraction: float = 0.3
    #: an embedding is reused at most this many seconds after its own frame, whatever the test says
    max_reuse_sec: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 255:
            raise ConfigError(f"still threshold must be in (0, 255) grey levels, got {self.threshold}",
                              field="threshold")
        if not 1 <= self.downsample <= 256:
            raise ConfigError(f"downsample must be a grid side in [1, 256] blocks, got {self.downsample}",
                              field="downsample")
        for name in ("min_fraction", "max_persistent_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a fraction of the frame in [0, 1), got {getattr(self, name)}",
                                  field=name)
        for name in ("persist_sec", "gap_sec", "max_reuse_sec"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0 seconds, got {getattr(self, name)}", field=name)


def colour_block_means(frames: np.ndarray, grid: int) -> np.ndarray:
    """Block means per colour: uint8 (T, H, W, 3) RGB -> float32 (T, grid, grid, 3), levels 0-255.

    In colour, not grey: two colours of the same luma (a red and a green background) are one grey.
    """
    # block_means of a frame whose three channels are one colour channel: its luma weights sum to 1
    return np.stack([block_means(np.repeat(frames[..., c:c + 1], 3, axis=-1), grid) for c in range(3)], axis=-1)


def _differ(a: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
    """bool (G, G): blocks where any colour's mean moved by more than ``threshold`` levels."""
    return (np.abs(a - b) > threshold).any(axis=-1)


class StillFrames:
    """One video's frames in, in order and in chunks of any size: which reuse an embedding.

    Keeps its state across chunks; one per video (not thread-safe).
    """

    def __init__(self, cfg: StillConfig | None = None) -> None:
        self.cfg = cfg if cfg is not None else StillConfig()
        g = self.cfg.downsample
        self._ref: np.ndarray | None = None  # float32 (G, G, 3): blocks of the last embedded frame
        self._ref_idx, self._ref_sec = -1, -np.inf  # its frame_idx and time
        self._prev = np.zeros((g, g, 3), np.float32)  # the previous frame's blocks
        self._since = np.full((g, g), np.inf)  # when each block's current motion began
        self._changed = np.full((g, g), -np.inf)  # when each block last changed
        self._last_sec = -np.inf

    def feed(self, frames: np.ndarray, timestamps_sec: np.ndarray, frame_idx: np.ndarray) -> np.ndarray:
        """int64 (T,): the frame_idx whose embedding each frame reuses, -1 where it is embedded.

        ``frames`` uint8 (T, H, W, 3) RGB, ``timestamps_sec`` (T,) increasing (continuing the
        previous chunk's), ``frame_idx`` (T,). The first frame of a video is always embedded.
        """
        ts = np.asarray(timestamps_sec, dtype=np.float64)
        if len(ts) != len(frames) or len(ts) != len(frame_idx):
            raise ValueError(f"{len(frames)} frames, {len(ts)} timestamps, {len(frame_idx)} frame_idx")
        if len(ts) and (np.any(np.diff(ts) <= 0) or ts[0] <= self._last_sec):
            raise ValueError("timestamps_sec must increase, continuing the previous chunk")
        cfg = self.cfg
        same_as = np.full(len(ts), -1, np.int64)
        if not len(ts):
            return same_as
        for i, (g, t, k) in enumerate(zip(colour_block_means(frames, cfg.downsample), ts, frame_idx)):
            if self._ref is not None:
                step = _differ(g, self._prev, cfg.threshold)  # (G, G) changed since the previous frame
                paused = t - self._changed > cfg.gap_sec
                self._since[step & paused] = t  # a new motion begins
                self._since[~step & paused] = np.inf
                self._changed[step] = t
                persistent = grow_mask(t - self._since >= cfg.persist_sec)
                if persistent.mean() > cfg.max_persistent_fraction:  # the picture itself moves
                    persistent[:] = False
                differ = _differ(g, self._ref, cfg.threshold) & ~persistent
                if differ.mean() <= cfg.min_fraction and t - self._ref_sec < cfg.max_reuse_sec:
                    same_as[i] = self._ref_idx
                    self._ref[persistent] = g[persistent]  # what moves is compared with what it last showed
            if same_as[i] < 0:
                self._ref, self._ref_idx, self._ref_sec = g.copy(), int(k), float(t)
            self._prev, self._last_sec = g, t
        return same_as
