"""The words of the synthetic archive: shapes, colours, motions, event kinds, titles.

Every sentence the archive writes (:func:`groundzero.synthetic.events.caption`) is built
from these; colours are RGB triples, used by :mod:`groundzero.synthetic.render`.
"""

from __future__ import annotations

from types import MappingProxyType

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


def all_pairs() -> tuple[tuple[str, str], ...]:
    """Every (shape, colour) combination, in vocabulary order."""
    return tuple((s, c) for s in SHAPES for c in COLOURS)
