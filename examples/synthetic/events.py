"""Events of the synthetic archive: what is on screen when, and the sentences that name it.

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

:func:`caption` names an event, :func:`frame_caption` what one frame shows of it,
:func:`conflicts` says whether one sentence could name two events. Outside every
event the frame is plain grey (:mod:`groundzero.synthetic.render` draws frames,
:mod:`groundzero.synthetic.scenes` lays events out over a video).

Example::

    >>> e = Event(10.0, 20.0, "circle", "red", "left", target=True)
    >>> caption(e)
    'a red circle moving left'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from types import MappingProxyType
from typing import Any

from groundzero.errors import ConfigError
from groundzero.synthetic.vocabulary import (
    BACKGROUNDS,
    COLOURS,
    KINDS,
    MOTIONS,
    OBJECT_KINDS,
    SHAPES,
)

_MOTION_PHRASE = MappingProxyType(
    {
        "left": "moving left",
        "right": "moving right",
        "up": "moving up",
        "down": "moving down",
        "still": "standing still",
    }
)
_GROW_ACTIONS = frozenset({"appears", "disappears"})


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
    size, from which a temporal model could read the action; whether a
    from-scratch backbone learns position from them depends on the start of its
    position embeddings (sine-cosine: :func:`groundzero.synthetic.siglip_model.build_siglip`;
    ``experiments/backbone_probe.py`` measures it). Titles and backgrounds keep
    their caption.

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
    :func:`groundzero.synthetic.captions.frames_and_captions`.

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


def progress(event: Event, t: float) -> float:
    """How far through ``event`` time ``t`` (seconds) is: 0 at start, 1 at end, clipped."""
    span = event.end_sec - event.start_sec
    if span <= 0:
        return 0.0
    return min(1.0, max(0.0, (t - event.start_sec) / span))


def is_static(event: Event) -> bool:
    """Whether ``event`` looks the same at every instant it is active (no motion, no growth)."""
    if event.kind in ("title", "background"):
        return True
    return event.kind == "object" and event.motion == "still"
