"""Timelines of the synthetic archive: a video's events laid out as scenes, one answer per caption.

:func:`sample_timeline` draws a video's events (:class:`~groundzero.synthetic.events.Event`)
as scenes — one object or title, or two objects sharing the screen on paths that
cannot cross — so that each caption has exactly one answer in its video
(:func:`~groundzero.synthetic.events.conflicts`), with distractors
(:func:`object_distractor`, :func:`title_distractor`) sharing one or two attributes
with each target. Outside every event the frame is plain grey.

Example::

    >>> import numpy as np
    >>> events = sample_timeline(np.random.default_rng(0), 120.0)
    >>> all(0.0 <= e.start_sec < e.end_sec <= 120.0 for e in events)
    True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from groundzero.errors import ConfigError
from groundzero.synthetic.events import (
    Event,
    background_event,
    caption,
    conflicts,
    object_event,
    title_event,
)
from groundzero.synthetic.vocabulary import (
    ACTIONS,
    BACKGROUNDS,
    COLOURS,
    MOTIONS,
    OBJECT_KINDS,
    SHAPES,
    WORDS,
    all_pairs,
)

_GAP_SEC = 2  # at least this much empty time between two scenes


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
    seconds. No two events conflict (:func:`~groundzero.synthetic.events.conflicts`).

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
