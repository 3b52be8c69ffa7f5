"""Captioned frames and clips of synthetic scenes, to train a small image-text backbone.

:func:`frames_and_captions` samples single frames (and two-frame clips) with the
caption of a visible event, rendered square or, given a decoder, through the same
H.264 encode and decode as the archive's videos (:mod:`groundzero.synthetic.archive`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from groundzero.errors import ConfigError, GroundZeroError
from groundzero.synthetic.archive import SynthConfig, split_index
from groundzero.synthetic.encode import write_video
from groundzero.synthetic.events import Event, caption, frame_caption, progress, reversed_event
from groundzero.synthetic.render import render_frame
from groundzero.synthetic.scenes import sample_timeline


def _visible_time(rng: np.random.Generator, e: Event) -> float:
    """A time (seconds) inside ``e`` where it is clearly visible (grown to >= 30 % for appears)."""
    lo, hi = {"appears": (0.3, 0.9), "disappears": (0.1, 0.7)}.get(e.kind, (0.05, 0.95))
    return e.start_sec + float(rng.uniform(lo, hi)) * (e.end_sec - e.start_sec)


def _contrast_time(rng: np.random.Generator, e: Event, t: float) -> float | None:
    """A time inside ``e`` whose :func:`~groundzero.synthetic.events.frame_caption` differs from
    ``t``'s: another third of a mover's path, or the other size of a growing / shrinking shape;
    None for other events."""
    p = progress(e, t)
    if e.kind in ("appears", "disappears"):
        lo, hi = {"appears": (0.3, 0.9), "disappears": (0.1, 0.7)}[e.kind]  # as _visible_time
        lo, hi = (0.52, hi) if p < 0.5 else (lo, 0.48)  # the other side of the half-way size change
    elif e.kind == "object" and e.motion != "still":
        third = min(2, int(p * 3))
        other = int(rng.choice([k for k in range(3) if k != third]))
        lo, hi = (other + 0.1) / 3, (other + 0.9) / 3
    else:
        return None
    return e.start_sec + float(rng.uniform(lo, hi)) * (e.end_sec - e.start_sec)


@dataclass(frozen=True)
class CaptionedFrames:
    """Training items for the backbone: single frames or two-frame clips, each with a caption.

    Item ``i`` shows ``images[items[i, 0]]`` then ``images[items[i, 1]]`` (the same
    index twice for a single frame) and is described by ``captions[i]``.

    Attributes:
        images: uint8 (N, S, S, 3) RGB frames.
        captions: M sentences, one per item.
        groups: int64 (M,), non-decreasing: equal ids are one contrast pair (kept in one batch).
        items: int64 (M, 2) frame indices into ``images``.
    """

    images: np.ndarray
    captions: list[str]
    groups: np.ndarray
    items: np.ndarray


def _clip_times(rng: np.random.Generator, e: Event) -> tuple[float, float]:
    """Two times (seconds) inside ``e``: one in its first third, one in its last third."""
    span = e.end_sec - e.start_sec
    return (e.start_sec + float(rng.uniform(0.05, 0.35)) * span,
            e.start_sec + float(rng.uniform(0.65, 0.95)) * span)


def frames_and_captions(
    cfg: SynthConfig, n: int, seed: int, *, image_size: int = 64, split: str = "train",
    state_fraction: float = 0.5, contrast_fraction: float = 0.0, clip_fraction: float = 0.0,
    reverse_fraction: float = 0.0, decode: Callable[[Path], np.ndarray] | None = None, chunk: int = 2048,
) -> CaptionedFrames:
    """``n`` training items, each a frame (or a two-frame clip) with a caption of one event in it.

    Frames come from fresh 3-minute timelines using ``split``'s (shape, colour)
    pairs (train: held-out pairs never appear), at a random time inside the
    captioned event; other events active then are drawn too. A share
    ``state_fraction`` of the captions say what the frame shows
    (:func:`~groundzero.synthetic.events.frame_caption`: "a red circle on the left"), the
    rest are the event's query sentence ("a red circle moving left").

    Clips: a single frame cannot show an action, so a backbone trained on
    sentences over single frames learns to ignore the words that name one
    (``experiments/backbone_probe.py`` measures it), and no later model can
    tell from the query which motion is meant. With probability
    ``clip_fraction`` a sentence caption gets a clip instead: a frame from the
    event's first third and one from its last third. With probability
    ``reverse_fraction`` such a clip also gets its time reversal, the same two
    frames the other way round, captioned as the reversed event ("... moving
    right", "... disappears"; :func:`~groundzero.synthetic.events.reversed_event`), in
    the same group, so a batch holds both and only the order of the frames
    tells the two sentences apart. Reversed clips cost no frames.

    Contrast pairs: with probability ``contrast_fraction`` a state caption of a
    mover, or of a growing / shrinking shape, gets a partner: the same scene at
    a time when the shape is in another third of its path (or at the other
    size), with that frame's caption, in the same group (whether they teach the
    backbone position depends on the start of its position embeddings:
    :func:`~groundzero.synthetic.siglip_model.build_siglip`).

    How the pixels are made:

    - ``decode=None``: rendered directly at ``image_size x image_size``. Fast,
      but not what an index sees: the archive's videos are ``cfg.size``
      (160x120, not square), H.264-coded, and squashed to a square by the
      decoder. A backbone trained on such frames reads indexed ones worse than
      the frames it trained on (``experiments/backbone_probe.py`` measures both).
    - ``decode`` given: rendered at ``cfg.size``, written ``chunk`` at a time as
      a 1-fps H.264 clip (:func:`write_video`, the archive's encoder), and read
      back by ``decode(path)``, which must return that clip's frames as
      ``(k, image_size, image_size, 3)`` uint8 (the indexer's decoder: frames
      are then exactly what indexing would give the backbone).

    With ``clip_fraction = 0`` the items are the frames (``items[i] == (i, i)``)
    and the random draws are those of builds before clips existed.
    """
    fractions = (state_fraction, contrast_fraction, clip_fraction, reverse_fraction)
    if not all(0.0 <= f <= 1.0 for f in fractions):
        raise ConfigError(
            f"frames_and_captions: state_fraction={state_fraction}, contrast_fraction={contrast_fraction}, "
            f"clip_fraction={clip_fraction}, reverse_fraction={reverse_fraction}; need all in 0..1"
        )
    if n < 0 or image_size < 16 or chunk < 1:
        raise ConfigError(
            f"frames_and_captions: n={n}, image_size={image_size}, chunk={chunk}; "
            "need n >= 0, image_size >= 16, chunk >= 1"
        )
    rng = np.random.default_rng([seed, split_index(split), 7])
    render_size = (image_size, image_size) if decode is None else cfg.size
    blocks: list[np.ndarray] = []  # (k, S, S, 3) runs of finished frames, in index order
    pending: list[np.ndarray] = []  # rendered, not yet through the codec (decode given)
    n_frames = 0
    captions: list[str] = []
    groups: list[int] = []
    items: list[tuple[int, int]] = []

    def flush() -> None:
        with tempfile.TemporaryDirectory(prefix="gz-frames-") as tmp:
            clip = write_video(Path(tmp) / "frames.mp4", iter(pending), 1, cfg.size)
            got = decode(clip)  # type: ignore[misc]
        if got.shape != (len(pending), image_size, image_size, 3):
            raise GroundZeroError(
                f"frames_and_captions: decode gave {got.shape} for {len(pending)} frames, expected "
                f"({len(pending)}, {image_size}, {image_size}, 3)"
            )
        blocks.append(got)
        pending.clear()

    def frame(events: Sequence[Event], t: float) -> int:
        nonlocal n_frames
        img = render_frame(events, t, render_size)
        if decode is None:
            blocks.append(img[None])
        else:
            pending.append(img)
            if len(pending) == chunk:
                flush()
        n_frames += 1
        return n_frames - 1

    def add(a: int, b: int, text: str, group: int) -> None:
        items.append((a, b))
        captions.append(text)
        groups.append(group)

    group = 0
    while len(captions) < n:
        events = sample_timeline(rng, 180.0, pairs=cfg.pairs(split), foreground_fraction=0.6)
        for i in rng.permutation(len(events)):
            if len(captions) == n:
                break
            e = events[int(i)]
            t = _visible_time(rng, e)
            state = rng.random() < state_fraction
            if not state and clip_fraction > 0 and rng.random() < clip_fraction:
                t1, t2 = _clip_times(rng, e)
                a, b = frame(events, t1), frame(events, t2)
                add(a, b, caption(e), group)
                back = reversed_event(e)
                if reverse_fraction > 0 and rng.random() < reverse_fraction and back is not None \
                        and len(captions) < n:
                    add(b, a, caption(back), group)
            else:
                a = frame(events, t)
                add(a, a, frame_caption(e, t) if state else caption(e), group)
                if state and contrast_fraction > 0 and len(captions) < n and rng.random() < contrast_fraction \
                        and (t2 := _contrast_time(rng, e, t)) is not None:
                    b = frame(events, t2)
                    add(b, b, frame_caption(e, t2), group)
            group += 1
    if pending:
        flush()
    images = np.concatenate(blocks) if blocks else np.empty((0, image_size, image_size, 3), np.uint8)
    return CaptionedFrames(images=images, captions=captions, groups=np.asarray(groups, dtype=np.int64),
                           items=np.asarray(items, dtype=np.int64).reshape(-1, 2))
