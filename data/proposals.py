"""Proposal windows over a video's sampled frames, and their context tokens.

A *proposal* (RGNet's "clip", the released code's "window") is a fixed-length
run of consecutive frames; the search shortlists proposals, then grounds the
exact span inside each. RGNet slides windows of ``max_v_l`` frames with stride
``max_v_l // 2`` (48 s / 24 s for Ego4D); our defaults keep that 2:1 overlap so
that any moment no longer than the stride lies wholly inside some window.

Unlike RGNet's loader (whose window 0 is a half window), windows here start at
frame 0 and the last one is shifted back to end at the last frame, so every
window of a long enough video has the full length.

*Context tokens* summarise a proposal in the text-embedding space for the
FAISS shortlist. The zero-shot tokens here are means of ``k`` equal
sub-segments of the window's (L2-normalised) frame embeddings, re-normalised;
trained tokens replace them when a grounding head is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from groundzero.errors import ConfigError


@dataclass(frozen=True)
class ProposalConfig:
    """Proposal windowing, in seconds of video; converted to frames with the sampling fps."""

    window_sec: float = 48.0  #: proposal length (RGNet Ego4D: 90 frames at 1.875 fps = 48 s)
    stride_sec: float = 24.0  #: hop between proposal starts (RGNet: half the window)
    tokens_per_proposal: int = 6  #: context tokens per proposal (one per 8 s at the defaults)

    def validate(self) -> ProposalConfig:
        if not self.window_sec > 0:
            raise ConfigError(f"window_sec must be > 0 seconds, got {self.window_sec}", field="window_sec")
        if not 0 < self.stride_sec <= self.window_sec:
            raise ConfigError(
                f"stride_sec must be in (0, window_sec={self.window_sec}] seconds, got {self.stride_sec}",
                field="stride_sec",
            )
        if not 1 <= self.tokens_per_proposal <= 63:
            raise ConfigError(
                f"tokens_per_proposal must be in [1, 63], got {self.tokens_per_proposal}",
                field="tokens_per_proposal",
            )
        return self


def make_windows(n_frames: int, fps: float, cfg: ProposalConfig) -> np.ndarray:
    """Frame ranges of the proposals of one video.

    Args:
        n_frames: number of sampled frames T.
        fps: sampling rate (frames per second).
    Returns:
        int64 (P, 2): ``[start_frame, end_frame)`` per proposal, in start order.
        A video shorter than one window has a single proposal ``[0, T)``;
        ``T == 0`` gives ``(0, 2)``.

    >>> make_windows(100, 1.0, ProposalConfig(48, 24)).tolist()
    [[0, 48], [24, 72], [48, 96], [52, 100]]
    """
    win = max(1, round(cfg.window_sec * fps))
    stride = max(1, round(cfg.stride_sec * fps))
    if n_frames <= 0:
        return np.zeros((0, 2), np.int64)
    if n_frames <= win:
        return np.array([[0, n_frames]], np.int64)
    starts = list(range(0, n_frames - win + 1, stride))
    if starts[-1] + win < n_frames:
        starts.append(n_frames - win)
    s = np.asarray(starts, np.int64)
    return np.stack([s, s + win], axis=1)


def zero_shot_tokens(frame_emb: np.ndarray, windows: np.ndarray, k: int) -> np.ndarray:
    """Query-independent context tokens: normalised means of ``k`` sub-segments.

    Args:
        frame_emb: float32 (T, D), L2-normalised frame embeddings of one video.
        windows: int64 (P, 2) from :func:`make_windows`.
        k: tokens per proposal.
    Returns:
        float32 (P, k, D), each token L2-normalised. A window with fewer than
        ``k`` frames repeats frames so that every proposal has exactly ``k`` tokens.
    """
    P, D = len(windows), frame_emb.shape[1]
    out = np.zeros((P, k, D), np.float32)
    for p, (s, e) in enumerate(windows):
        n = int(e - s)
        # sub-segment boundaries; ceil/floor so each of the k parts holds >= 1 frame
        edges = np.linspace(0, n, k + 1)
        for j in range(k):
            a = int(np.floor(edges[j]))
            b = max(a + 1, int(np.ceil(edges[j + 1])))
            out[p, j] = frame_emb[s + a : s + min(b, n)].mean(axis=0)
    norm = np.linalg.norm(out, axis=-1, keepdims=True)
    return out / np.maximum(norm, 1e-12)
