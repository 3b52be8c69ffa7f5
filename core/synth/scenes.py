"""The scene model of the synthetic archive: vocabulary, events, captions, timelines, renderer.

A video is a list of :class:`Event` s, each a span ``[start_sec, end_sec)`` in
seconds during which one thing a sentence can name is on screen:

- ``object``: a coloured shape moving left / right / up / down across the
  frame over the event's duration, or standing still
  ("a red circle moving left", "a green star standing still");
- ``appears`` / ``disappears``: a still shape growing from nothing to full
  size / shrinking to nothing over the event ("a blue square appears");
- ``title``: an on-screen title, like a lecture slide
  ("the title 'chain rule' appears on screen");
- ``background``: the background colour changes for the span
  ("the background turns blue").

Outside every event the frame is plain grey. :func:`sample_timeline` draws a
video's events so that each caption has exactly one answer in its video
(:func:`conflicts`), with distractors sharing one or two attributes with each
target. :func:`render_frame` draws the frame at any time; numpy and Pillow
only, text in Pillow's default font (no font files).

Example::

    >>> e = Event(10.0, 20.0, "circle", "red", "left", target=True)
    >>> caption(e)
    'a red circle moving left'
    >>> render_frame([e], 15.0, size=(96, 72)).shape
    (72, 96, 3)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from types import MappingProxyType
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core.errors import ConfigError

# --------------------------------------------------------------------------- vocabulary

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")

#: object colours, RGB; bright, so they stand out on every background
COLOURS = MappingProxyType(
    {
        "red": (220, 30, 30),
        "green": (40, 190, 60),
        "blue": (50, 90, 240),
        "yellow": (240, 220, 40),
        "white": (245, 245, 245),
        "orange": (250, 140, 20),
        "purple": (160, 60, 200),
    }
)

#: motion of an ``object`` event; ``appears`` / ``disappears`` events are ``still``
MOTIONS: tuple[str, ...] = ("left", "right", "up", "down", "still")

#: what an object does: a motion, or growing in / shrinking out while still
ACTIONS: tuple[str, ...] = (*MOTIONS, "appears", "disappears")

KINDS: tuple[str, ...] = ("object", "appears", "disappears", "title", "background")
OBJECT_KINDS: tuple[str, ...] = ("object", "appears", "disappears")

#: background colours, RGB; dark, so objects and titles stay visible on them
BACKGROUNDS = MappingProxyType(
    {
        "blue": (20, 30, 110),
        "green": (15, 85, 35),
        "brown": (95, 60, 30),
        "black": (0, 0, 0),
        "teal": (0, 90, 95),
    }
)

#: the background outside every ``background`` event (not a nameable colour)
DEFAULT_BACKGROUND: tuple[int, int, int] = (90, 90, 90)

#: on-screen titles; families share a word, so a title's distractor can share one
WORDS: tuple[str, ...] = (
    "chain rule",
    "product rule",
    "chain reaction",
    "exhibit 12",
    "exhibit 14",
    "exhibit 21",
    "quarterly results",
    "annual results",
    "quarterly forecast",
    "lecture notes",
    "lecture summary",
    "safety briefing",
    "final exam",
    "case study",
)

TEXT_RGB: tuple[int, int, int] = (245, 245, 245)
PANEL_RGB: tuple[int, int, int] = (25, 25, 25)

#: object radius as a fraction of min(width, height) of the frame
OBJECT_SCALE = 0.13

_MOTION_PHRASE = MappingProxyType(
    {
        "left": "moving left",
        "right": "moving right",
        "up": "moving up",
        "down": "moving down",
        "still": "standing still",
    }
)
_STATIC_ACTIONS = frozenset({"still", "appears", "disappears"})
_GROW_ACTIONS = frozenset({"appears", "disappears"})
_GAP_SEC = 2  # at least this much empty time between two scenes


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Event:
    """One nameable thing on screen during ``[start_sec, end_sec)`` (seconds).

    ``shape`` / ``colour`` / ``motion`` are set for object kinds (``motion`` is
    ``"still"`` for ``appears`` / ``disappears``), ``colour`` alone (a key of
    :data:`BACKGROUNDS`) for ``background``, ``word`` alone for ``title``.
    ``x_frac`` / ``y_frac`` (fractions of the frame's width / height) place an
    object: its centre for still ones, the lane a horizontal (y) or vertical
    (x) mover travels along. ``target`` marks the anchors distractors were drawn
    around (they are queried first); it does not change what is drawn.
    """

    start_sec: float
    end_sec: float
    shape: str | None
    colour: str | None
    motion: str | None
    word: str | None = None
    kind: str = "object"
    x_frac: float = 0.5
    y_frac: float = 0.5
    target: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"Event.kind={self.kind!r}; allowed: {', '.join(KINDS)}")
        if not (0.0 <= self.start_sec <= self.end_sec):
            raise ConfigError(
                f"Event window [{self.start_sec}, {self.end_sec}] s: need 0 <= start <= end"
            )
        if self.kind in OBJECT_KINDS:
            _check(self.shape, SHAPES, "shape")
            _check(self.colour, tuple(COLOURS), "colour")
            _check(self.motion, MOTIONS if self.kind == "object" else ("still",), "motion")
        elif self.kind == "background":
            _check(self.colour, tuple(BACKGROUNDS), "background colour")
        elif not self.word:
            raise ConfigError("a title Event needs a non-empty word")
        if not (0.0 <= self.x_frac <= 1.0 and 0.0 <= self.y_frac <= 1.0):
            raise ConfigError(f"Event x_frac={self.x_frac}, y_frac={self.y_frac}: need 0..1")

    @property
    def action(self) -> str:
        """For object kinds: the motion, or ``appears`` / ``disappears``; else the kind."""
        return self.kind if self.kind != "object" else str(self.motion)

    def active(self, t: float) -> bool:
        """Whether the event is on screen at ``t`` seconds (``start <= t < end``)."""
        return self.start_sec <= t < self.end_sec

    def to_json(self) -> dict[str, Any]:
        """The event's fields plus its caption, JSON-ready."""
        return {**asdict(self), "caption": caption(self)}


def _check(value: str | None, allowed: Sequence[str], name: str) -> None:
    if value not in allowed:
        raise ConfigError(f"Event {name}={value!r}; allowed: {', '.join(allowed)}")


def object_event(
    shape: str, colour: str, action: str, start_sec: float = 0.0, end_sec: float = 0.0, **kw: Any
) -> Event:
    """An object event doing ``action`` (one of :data:`ACTIONS`: a motion, appears, disappears)."""
    if action in _GROW_ACTIONS:
        return Event(start_sec, end_sec, shape, colour, "still", kind=action, **kw)
    return Event(start_sec, end_sec, shape, colour, action, kind="object", **kw)


def title_event(word: str, start_sec: float = 0.0, end_sec: float = 0.0, **kw: Any) -> Event:
    """A ``title`` event showing ``word``."""
    return Event(start_sec, end_sec, None, None, None, word=word, kind="title", **kw)


def background_event(
    colour: str, start_sec: float = 0.0, end_sec: float = 0.0, **kw: Any
) -> Event:
    """A ``background`` event turning the background ``colour`` (a key of :data:`BACKGROUNDS`)."""
    return Event(start_sec, end_sec, None, colour, None, kind="background", **kw)


def caption(event: Event) -> str:
    """The sentence naming ``event``.

    >>> caption(object_event("star", "green", "still"))
    'a green star standing still'
    >>> caption(object_event("square", "blue", "appears"))
    'a blue square appears'
    >>> caption(title_event("chain rule"))
    "the title 'chain rule' appears on screen"
    >>> caption(background_event("teal"))
    'the background turns teal'
    """
    if event.kind in OBJECT_KINDS:
        article = "an" if str(event.colour)[0] in "aeiou" else "a"
        what = _MOTION_PHRASE[str(event.motion)] if event.kind == "object" else event.kind
        return f"{article} {event.colour} {event.shape} {what}"
    if event.kind == "title":
        return f"the title '{event.word}' appears on screen"
    return f"the background turns {event.colour}"


def frame_caption(event: Event, t: float) -> str:
    """What one frame at ``t`` seconds shows of ``event``: its state, not its action.

    A sentence about an action ("moving left", "appears") cannot be checked
    in a single frame; this one can: where a mover is now (the third of the
    frame it is in along its path) and whether a growing / shrinking shape is
    still small. They are meant to make frame embeddings carry position and
    size, from which a temporal model could read the action. Alone they do not
    teach a from-scratch backbone position (``bench/backbone_probe.py``: R² ≈ 0);
    with the sine-cosine start of its position embeddings
    (``core.model.siglip_train.build_siglip``) it does (R² ≈ 0.8). Titles and
    backgrounds keep their caption.

    >>> frame_caption(object_event("circle", "red", "left", 0.0, 10.0), 1.0)
    'a red circle on the right'
    >>> frame_caption(object_event("square", "blue", "appears", 0.0, 10.0), 2.0)
    'a small blue square'
    """
    if event.kind not in OBJECT_KINDS:
        return caption(event)
    article = "an" if str(event.colour)[0] in "aeiou" else "a"
    what = f"{event.colour} {event.shape}"
    p = progress(event, t)
    if event.kind in _GROW_ACTIONS:
        small = p < 0.5 if event.kind == "appears" else p > 0.5
        return f"a small {what}" if small else f"{article} {what}"
    if event.motion == "still":
        return f"{article} {what}"
    if event.motion in ("left", "right"):
        x = 1.0 - p if event.motion == "left" else p
        where = ("on the left", "in the middle", "on the right")[min(2, int(x * 3))]
    else:
        y = 1.0 - p if event.motion == "up" else p
        where = ("at the top", "in the middle", "at the bottom")[min(2, int(y * 3))]
    return f"{article} {what} {where}"


_REVERSED_MOTION = MappingProxyType({"left": "right", "right": "left", "up": "down", "down": "up"})
_REVERSED_KIND = MappingProxyType({"appears": "disappears", "disappears": "appears"})


def reversed_event(event: Event) -> Event | None:
    """The event that ``event``'s frames show when played backwards, or None when it is the same.

    A mover's motion flips (left <-> right, up <-> down) and a growing shape
    shrinks (appears <-> disappears); a still shape, a title or a background
    looks the same backwards (None). Used for the time-reversed clips of
    :func:`core.synth.archive.frames_and_captions`.

    >>> caption(reversed_event(object_event("circle", "red", "left", 0.0, 10.0)))
    'a red circle moving right'
    >>> caption(reversed_event(object_event("square", "blue", "appears", 0.0, 10.0)))
    'a blue square disappears'
    >>> reversed_event(object_event("star", "green", "still")) is None
    True
    """
    if event.kind == "object" and event.motion in _REVERSED_MOTION:
        return replace(event, motion=_REVERSED_MOTION[str(event.motion)])
    if event.kind in _REVERSED_KIND:
        return replace(event, kind=_REVERSED_KIND[event.kind])
    return None


def conflicts(a: Event, b: Event) -> bool:
    """Whether one caption could describe both events (times ignored).

    Titles conflict on the same word, backgrounds on the same colour. Objects
    conflict on the same (shape, colour) with the same motion, or when either
    is ``appears`` / ``disappears`` (every object pops in and out, so a
    growing red circle and a red circle moving left both "appear"). A
    timeline never holds two conflicting events; a not-found query conflicts
    with nothing in its video.
    """
    if a.kind in OBJECT_KINDS and b.kind in OBJECT_KINDS:
        if (a.shape, a.colour) != (b.shape, b.colour):
            return False
        return a.action == b.action or bool({a.action, b.action} & _GROW_ACTIONS)
    if a.kind != b.kind:
        return False
    return a.word == b.word if a.kind == "title" else a.colour == b.colour


# --------------------------------------------------------------------------- rendering


def progress(event: Event, t: float) -> float:
    """How far through ``event`` time ``t`` (seconds) is: 0 at start, 1 at end, clipped."""
    span = event.end_sec - event.start_sec
    if span <= 0:
        return 0.0
    return min(1.0, max(0.0, (t - event.start_sec) / span))


def object_geometry(
    event: Event, t: float, size: tuple[int, int]
) -> tuple[float, float, float]:
    """``(cx, cy, radius)`` in pixels of an object event at ``t`` seconds in a ``(W, H)`` frame.

    Movers travel from one edge to the other (kept fully inside the frame)
    over the event's duration; ``appears`` grows the radius from 0 to full,
    ``disappears`` shrinks it from full to 0. The centre pixel is always inside
    the drawn shape when ``radius >= 1``.
    """
    w, h = size
    r = OBJECT_SCALE * min(w, h)
    p = progress(event, t)
    lo_x, hi_x = r + 1.0, w - r - 2.0
    lo_y, hi_y = r + 1.0, h - r - 2.0
    cx = min(hi_x, max(lo_x, event.x_frac * w))
    cy = min(hi_y, max(lo_y, event.y_frac * h))
    if event.motion == "left":
        cx = hi_x - p * (hi_x - lo_x)
    elif event.motion == "right":
        cx = lo_x + p * (hi_x - lo_x)
    elif event.motion == "up":
        cy = hi_y - p * (hi_y - lo_y)
    elif event.motion == "down":
        cy = lo_y + p * (hi_y - lo_y)
    if event.kind == "appears":
        r *= p
    elif event.kind == "disappears":
        r *= 1.0 - p
    return cx, cy, r


def _shape_points(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Polygon vertices (pixels) of a square, triangle or star of radius ``r``."""
    if shape == "square":
        s = 0.85 * r
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + 0.95 * r, cy + 0.7 * r), (cx - 0.95 * r, cy + 0.7 * r)]
    pts = []
    for k in range(10):  # star: 5 outer and 5 inner vertices, alternating
        rad = r if k % 2 == 0 else 0.45 * r
        ang = -math.pi / 2 + k * math.pi / 5
        pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang)))
    return pts


def _draw_object(draw: ImageDraw.ImageDraw, event: Event, t: float, size: tuple[int, int]) -> None:
    cx, cy, r = object_geometry(event, t, size)
    if r < 0.5:
        return
    fill = COLOURS[str(event.colour)]
    if event.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(_shape_points(str(event.shape), cx, cy, r), fill=fill)


def _text_mask(word: str, size: tuple[int, int]) -> Image.Image:
    """White-on-black ``L`` mask of ``word`` in the default font, scaled up to fit the frame.

    The text is drawn at the font's native size, on one line or wrapped onto
    two (whichever ends up larger), then enlarged with nearest-neighbour
    sampling and thresholded: crisp, pure-white, and still legible-ish after a
    downsample to 64x64.
    """
    w, h = size
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    layouts = []
    for text in (word, word.replace(" ", "\n", 1)):
        box = probe.multiline_textbbox((0, 0), text, font=font, spacing=2)
        x0, y0, x1, y1 = (int(v) for v in box)
        scale = min(0.9 * w / max(1, x1 - x0), 0.6 * h / max(1, y1 - y0))
        layouts.append((scale, text, (x0, y0, x1, y1)))
    scale, text, (x0, y0, x1, y1) = max(layouts, key=lambda layout: layout[0])
    small = Image.new("L", (x1 - x0 + 2, y1 - y0 + 2), 0)
    ImageDraw.Draw(small).multiline_text(
        (1 - x0, 1 - y0), text, font=font, fill=255, spacing=2, align="center"
    )
    big = small.resize(
        (max(1, round(small.width * scale)), max(1, round(small.height * scale))),
        Image.Resampling.NEAREST,
    )
    return big.point(lambda v: 255 if v >= 96 else 0)


def _draw_title(img: Image.Image, draw: ImageDraw.ImageDraw, word: str) -> None:
    mask = _text_mask(word, img.size)
    w, h = img.size
    x, y = (w - mask.width) // 2, (h - mask.height) // 2
    pad = max(1, round(0.03 * min(w, h)))
    panel = [x - pad, y - pad, x + mask.width + pad - 1, y + mask.height + pad - 1]
    draw.rectangle(panel, fill=PANEL_RGB)
    img.paste(TEXT_RGB, (x, y, x + mask.width, y + mask.height), mask)


def render_frame(
    events_active: Iterable[Event], t: float, size: tuple[int, int] = (160, 120)
) -> np.ndarray:
    """The frame at ``t`` seconds: uint8 RGB array of shape ``(H, W, 3)`` for ``size = (W, H)``.

    Draws the background (grey, or the colour of an active ``background``
    event), then titles (white text on a dark panel, centred), then objects at
    their positions at ``t``. Events not active at ``t`` are skipped, so passing
    a whole timeline is correct, only slower. Deterministic: same arguments,
    same pixels.
    """
    events = [e for e in events_active if e.active(t)]
    bg = DEFAULT_BACKGROUND
    for e in events:
        if e.kind == "background":
            bg = BACKGROUNDS[str(e.colour)]
    img = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(img)
    for e in events:
        if e.kind == "title":
            _draw_title(img, draw, str(e.word))
    for e in events:
        if e.kind in OBJECT_KINDS:
            _draw_object(draw, e, t, size)
    return np.array(img, dtype=np.uint8)


def is_static(event: Event) -> bool:
    """Whether ``event`` looks the same at every instant it is active (no motion, no growth)."""
    if event.kind in ("title", "background"):
        return True
    return event.kind == "object" and event.motion == "still"


# --------------------------------------------------------------------------- timelines


def all_pairs() -> tuple[tuple[str, str], ...]:
    """Every (shape, colour) combination, in vocabulary order."""
    return tuple((s, c) for s in SHAPES for c in COLOURS)


def _pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def _random_action(rng: np.random.Generator, exclude: str | None = None) -> str:
    """A target's action: a motion 80 % of the time, appears / disappears 10 % each."""
    weights = np.array([0.16] * len(MOTIONS) + [0.1, 0.1])
    if exclude is not None:
        weights[ACTIONS.index(exclude)] = 0.0
    return str(ACTIONS[int(rng.choice(len(ACTIONS), p=weights / weights.sum()))])


def _free(cand: Event, taken: Sequence[Event]) -> bool:
    return not any(conflicts(cand, e) for e in taken)


def _object_target(
    rng: np.random.Generator, taken: Sequence[Event], pairs: Sequence[tuple[str, str]],
    focus: tuple[str, str] | None,
) -> Event | None:
    for _ in range(60):
        shape, colour = focus if focus is not None else _pick(rng, pairs)
        cand = object_event(shape, colour, _random_action(rng), target=True)
        if _free(cand, taken):
            return cand
    return None


def object_distractor(
    rng: np.random.Generator, like: Event, taken: Sequence[Event], pairs: Sequence[tuple[str, str]],
    n_shared: int | None = None,
) -> Event | None:
    """An object sharing 1 or 2 of (shape, colour, action) with ``like``, free in ``taken``.

    ``n_shared`` fixes how many attributes are shared (random 1 or 2 when None).
    Only (shape, colour) combinations in ``pairs`` are used. Returns None when
    60 draws found nothing free.
    """
    allowed = set(pairs)
    for _ in range(60):
        keep_n = n_shared if n_shared is not None else int(rng.integers(1, 3))
        keep = set(rng.choice(3, size=keep_n, replace=False).tolist())
        shape = like.shape if 0 in keep else _pick(rng, [s for s in SHAPES if s != like.shape])
        colour = like.colour if 1 in keep else _pick(rng, [c for c in COLOURS if c != like.colour])
        action = like.action if 2 in keep else _random_action(rng, exclude=like.action)
        if (shape, colour) not in allowed:
            continue
        cand = object_event(str(shape), str(colour), action)
        if _free(cand, taken):
            return cand
    return None


def title_distractor(rng: np.random.Generator, like: str, taken: Sequence[Event]) -> Event | None:
    """A title sharing a word with ``like`` when one is free, else any free title; None if none."""
    used = {e.word for e in taken if e.kind == "title"} | {like}
    free = [w for w in WORDS if w not in used]
    related = [w for w in free if set(w.split()) & set(like.split())]
    options = related or free
    return title_event(_pick(rng, options)) if options else None


def _orientation(e: Event) -> str:
    if e.kind != "object" or e.motion == "still":
        return "any"
    return "h" if e.motion in ("left", "right") else "v"


def _compatible(a: Event, b: Event) -> bool:
    """Two objects can share the screen when their paths cannot cross."""
    if a.kind not in OBJECT_KINDS or b.kind not in OBJECT_KINDS:
        return False
    oa, ob = _orientation(a), _orientation(b)
    return "any" in (oa, ob) or oa == ob


def _place(rng: np.random.Generator, e: Event, lane: float | None, layout: str) -> Event:
    """Set ``x_frac`` / ``y_frac``: a lane for pairs (0.27 / 0.73), random near centre alone."""
    if e.kind not in OBJECT_KINDS:
        return e
    jitter = float(rng.uniform(-0.03, 0.03))
    x, y = float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.7))
    if lane is not None and layout == "h":
        y = lane + jitter
        x = float(rng.uniform(0.25, 0.75))
    elif lane is not None:
        x = lane + jitter
    return replace(e, x_frac=x, y_frac=y)


def _scene_events(rng: np.random.Generator, scene: list[Event], start: int, length: int,
                  min_len: int) -> list[Event]:
    """Timed, placed events of one scene of ``length`` seconds starting at ``start``."""
    if len(scene) == 1:
        layout = "v" if _orientation(scene[0]) == "v" else "h"
        return [replace(_place(rng, scene[0], None, layout), start_sec=float(start),
                        end_sec=float(start + length))]
    a, b = scene if rng.random() < 0.5 else scene[::-1]
    layout = "v" if "v" in (_orientation(a), _orientation(b)) else "h"
    lanes = (0.27, 0.73) if rng.random() < 0.5 else (0.73, 0.27)
    offset = int(rng.integers(0, length - min_len + 1))
    b_len = int(rng.integers(min_len, length - offset + 1))
    return [
        replace(_place(rng, a, lanes[0], layout), start_sec=float(start),
                end_sec=float(start + length)),
        replace(_place(rng, b, lanes[1], layout), start_sec=float(start + offset),
                end_sec=float(start + offset + b_len)),
    ]


def _group(
    rng: np.random.Generator, taken: list[Event], pairs: Sequence[tuple[str, str]],
    focus: tuple[str, str] | None, title_prob: float,
) -> list[list[Event]]:
    """One target and its distractors, as scenes (lists of 1 or 2 co-occurring events).

    Appends the new events to ``taken``; returns [] when the vocabulary is spent.
    """
    free_words = [w for w in WORDS if all(e.word != w for e in taken)]
    if focus is None and free_words and rng.random() < title_prob:
        target = title_event(_pick(rng, free_words), target=True)
        taken.append(target)
        scenes = [[target]]
        if rng.random() < 0.7 and (d := title_distractor(rng, str(target.word), taken)) is not None:
            taken.append(d)
            scenes.append([d])
        return scenes
    target_obj = _object_target(rng, taken, pairs, focus)
    if target_obj is None and focus is not None:  # that combination is spent in this video
        target_obj = _object_target(rng, taken, pairs, None)
    if target_obj is None:
        return []
    taken.append(target_obj)
    distractors: list[Event] = []
    for _ in range(int(rng.integers(1, 4))):
        d = object_distractor(rng, target_obj, taken, pairs)
        if d is not None:
            taken.append(d)
            distractors.append(d)
    scenes = [[target_obj]]
    mates = [d for d in distractors if _compatible(target_obj, d)]
    if mates and rng.random() < 0.5:  # a distractor on screen beside the target
        scenes[0].append(mates[0])
        distractors.remove(mates[0])
    scenes.extend([d] for d in distractors)
    return scenes


def sample_timeline(
    rng: np.random.Generator,
    duration_sec: float,
    *,
    pairs: Sequence[tuple[str, str]] | None = None,
    focus_pairs: Sequence[tuple[str, str]] = (),
    foreground_fraction: float = 0.4,
    min_event_sec: int = 8,
    max_event_sec: int = 30,
    title_prob: float = 0.3,
    seconds_per_background: float = 300.0,
) -> list[Event]:
    """A video's events, sorted by start; every caption has exactly one answer in it.

    Scenes (one object or title, or two objects sharing the screen on paths
    that cannot cross) of ``min_event_sec``..``max_event_sec`` seconds (at
    most a quarter of the video) fill
    about ``foreground_fraction`` of the video, separated by at least 2 s of
    empty grey; scenes come in groups of a target (``target=True``) and 1–3
    distractors sharing 1–2 of (shape, colour, action) with it (titles: a
    word), shuffled over the whole video. Independently, one background
    change per ``seconds_per_background`` (at least one, at most one per
    colour) lasts ``min_event_sec``..``max_event_sec``. Times are whole
    seconds. No two events conflict (:func:`conflicts`).

    Args:
        rng: the only source of randomness (same state, same timeline).
        duration_sec: video length in seconds (at least ``min_event_sec + 4``).
        pairs: the (shape, colour) combinations objects may use (None: all).
        focus_pairs: the first object targets use these combinations, in order
            (the test split puts its held-out combinations here).
        foreground_fraction: share of the video covered by scenes, 0..1; the
            first scene is always kept (shortened to fit a short video).
    """
    total = math.floor(duration_sec)
    if total < min_event_sec + 2 * _GAP_SEC:
        raise ConfigError(
            f"duration_sec={duration_sec}: a video needs at least {min_event_sec + 2 * _GAP_SEC} s"
        )
    if not 0.0 <= foreground_fraction <= 1.0:
        raise ConfigError(f"foreground_fraction={foreground_fraction}: need 0..1")
    pairs = tuple(pairs) if pairs is not None else all_pairs()
    if not pairs:
        raise ConfigError("pairs is empty: objects need at least one (shape, colour) combination")
    taken: list[Event] = []
    scenes: list[tuple[list[Event], int]] = []
    budget = foreground_fraction * total
    max_len = max(min_event_sec, min(max_event_sec, total // 4))  # short videos: several scenes
    used = 0
    focus = list(focus_pairs)
    for group_no in itertools.count():
        group = _group(rng, taken, pairs, focus.pop(0) if focus else None, title_prob)
        full = not group
        for scene in group:
            lo = min_event_sec + 4 if len(scene) == 2 else min_event_sec
            length = int(rng.integers(lo, max(lo, max_len) + 1))
            room = total - used - _GAP_SEC * (len(scenes) + 2)
            if group_no == 0:  # the first group ignores the budget and shrinks to fit
                length = min(length, room)
                if length < lo and len(scene) == 2:
                    scene, lo = scene[:1], min_event_sec
                full = length < lo
            else:
                full = used + length > budget or length > room
            if full:
                break
            scenes.append((scene, length))
            used += length
        if full:
            break
    events = _lay_out(rng, scenes, total, min_event_sec)
    events += _backgrounds(rng, total, min_event_sec, max_event_sec, seconds_per_background)
    return sorted(events, key=lambda e: (e.start_sec, e.end_sec, caption(e)))


def _lay_out(rng: np.random.Generator, scenes: list[tuple[list[Event], int]], total: int,
             min_len: int) -> list[Event]:
    """Shuffle scenes over ``[0, total]`` seconds with random gaps of at least 2 s."""
    order = rng.permutation(len(scenes))
    free = total - sum(length for _, length in scenes) - _GAP_SEC * (len(scenes) + 1)
    extra = rng.multinomial(max(0, free), np.full(len(scenes) + 1, 1.0 / (len(scenes) + 1)))
    events: list[Event] = []
    t = 0
    for k, idx in enumerate(order):
        scene, length = scenes[int(idx)]
        t += _GAP_SEC + int(extra[k])
        events += _scene_events(rng, scene, t, length, min(min_len, length))
        t += length
    return events


def _backgrounds(rng: np.random.Generator, total: int, min_len: int, max_len: int,
                 seconds_per: float) -> list[Event]:
    n = min(len(BACKGROUNDS), max(1, round(total / seconds_per)))
    colours = [str(c) for c in rng.permutation(list(BACKGROUNDS))[:n]]
    out: list[Event] = []
    for colour in colours:
        for _ in range(50):
            length = int(rng.integers(min_len, min(max_len, total) + 1))
            start = int(rng.integers(0, total - length + 1))
            if all(start + length + _GAP_SEC <= e.start_sec or e.end_sec + _GAP_SEC <= start
                   for e in out):
                out.append(background_event(colour, float(start), float(start + length)))
                break
    return out
