"""Queries of the synthetic archive: a sentence, its windows in its video and across its split.

A query's sentence is the caption of one event of its video, or, for a not-found
query, a description placed nowhere (:func:`not_found_description`). Its
``corpus_windows`` (:func:`corpus_windows`) are every moment of the split the
sentence describes (:func:`~groundzero.synthetic.events.conflicts`); see
:mod:`groundzero.synthetic.archive` for how :func:`~groundzero.synthetic.archive.queries_for`
draws a video's queries and how they are written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from groundzero.synthetic.events import (
    Event,
    background_event,
    conflicts,
    object_event,
    title_event,
)
from groundzero.synthetic.scenes import object_distractor
from groundzero.synthetic.vocabulary import ACTIONS, BACKGROUNDS, OBJECT_KINDS, WORDS


@dataclass(frozen=True)
class SynthQuery:
    """One query with its answer.

    ``event`` is the event the sentence describes; for a not-found query
    (``windows == ()``) it is a description placed nowhere (``start_sec ==
    end_sec == 0``) that conflicts with no event of the video.
    """

    qid: str  #: ``{vid}_q{k:02d}``, unique in the archive
    vid: str  #: the video's file stem
    query: str  #: the sentence
    duration_sec: float  #: the video's length, seconds
    windows: tuple[tuple[float, float], ...]  #: ``((start_sec, end_sec),)`` or ``()``
    event: Event
    #: every ``(vid, start_sec, end_sec)`` of the split the caption describes (:func:`corpus_windows`)
    corpus_windows: tuple[tuple[str, float, float], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The QVHighlights jsonl object, plus ``corpus_windows``."""
        return {
            "qid": self.qid,
            "query": self.query,
            "vid": self.vid,
            "duration": self.duration_sec,
            "relevant_windows": [list(w) for w in self.windows],
            "corpus_windows": [list(w) for w in self.corpus_windows],
        }


def corpus_windows(event: Event, timelines: dict[str, Sequence[Event]]) -> tuple[tuple[str, float, float], ...]:
    """Every ``(vid, start_sec, end_sec)`` in ``timelines`` whose event ``event``'s caption describes."""
    return tuple((vid, e.start_sec, e.end_sec) for vid, evs in timelines.items() for e in evs
                 if conflicts(event, e))


def not_found_description(
    rng: np.random.Generator, events: Sequence[Event], pairs: Sequence[tuple[str, str]],
    avoid: Sequence[Event] = (), absent_from: Sequence[Event] = (),
) -> Event | None:
    """An event description that conflicts with nothing in ``events`` (nor ``avoid``).

    70 % of the time one attribute away from an object of the video (a hard
    negative: "moving right" where it moves left), else a random object,
    title or background colour absent from the video; objects use only
    ``pairs``. Its times are 0. With ``absent_from`` (the split's events) it
    first tries 100 draws that also conflict with nothing there, then falls
    back to the video alone. None when 100 draws found nothing.
    """
    if absent_from:
        cand = not_found_description(rng, events, pairs, [*avoid, *absent_from])
        if cand is not None:
            return cand
    taken = [*events, *avoid]
    objects = [e for e in events if e.kind in OBJECT_KINDS]
    words = {e.word for e in taken if e.kind == "title"}
    colours = {e.colour for e in taken if e.kind == "background"}
    for _ in range(100):
        r = rng.random()
        cand: Event | None
        if r < 0.7 and objects:
            like = objects[int(rng.integers(len(objects)))]
            cand = object_distractor(rng, like, taken, pairs, n_shared=2)
        elif r < 0.8:
            shape, colour = pairs[int(rng.integers(len(pairs)))]
            cand = object_event(shape, colour, ACTIONS[int(rng.integers(len(ACTIONS)))])
        elif r < 0.9:
            free = [w for w in WORDS if w not in words]
            cand = title_event(free[int(rng.integers(len(free)))]) if free else None
        else:
            free = [c for c in BACKGROUNDS if c not in colours]
            cand = background_event(free[int(rng.integers(len(free)))]) if free else None
        if cand is not None and not any(conflicts(cand, e) for e in taken):
            return replace(cand, target=False, x_frac=0.5, y_frac=0.5)
    return None
