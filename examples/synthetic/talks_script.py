"""What a talk of the lecture / deposition archive says and shows, and when.

A :class:`TalkScript` is one video's timeline: :class:`Utterance` s (spoken by espeak-ng and
captioned), :class:`Slide` s (lecture slides, or exhibit cards held up in a deposition) and
pictures (demo :class:`~groundzero.synthetic.events.Event` s shown as full-frame cutaways),
plus the :class:`Target` s its queries ask for. :func:`lecture_script` and
:func:`deposition_script` write one; they measure each sentence with a ``measure(text, voice)``
callable (seconds of speech), so times are those of the real audio.

Key words (lecture terms, exhibit numbers, companies, people, cities, goods) are drawn from
:class:`Pools` shared by the whole archive and used once each, so every target's key words
appear together in exactly one place of the archive. Filler sentences use none of them.
:mod:`groundzero.synthetic.talks` writes the files; :mod:`groundzero.synthetic.talks_media`
draws, speaks and muxes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from groundzero.errors import ConfigError
from groundzero.synthetic.events import Event, object_event

# --------------------------------------------------------------------------- vocabulary

#: lecture key terms: slide titles and key sentences; no word of the demo vocabulary
TERMS: tuple[str, ...] = (
    "chain rule", "eigenvalue decomposition", "gradient descent", "bayes theorem",
    "fourier series", "laplace transform", "taylor expansion", "markov process",
    "normal distribution", "matrix inverse", "dot product", "cross entropy", "binary search",
    "hash table", "linked list", "dynamic programming", "prime factorization",
    "modular arithmetic", "complex numbers", "vector spaces", "linear independence",
    "partial derivatives", "implicit differentiation", "squeeze theorem", "poisson process",
    "confidence interval", "hypothesis testing", "standard deviation", "kinetic energy",
    "angular momentum", "thermal equilibrium", "ohms law", "electric field", "magnetic flux",
    "wave interference", "doppler effect", "covalent bonds", "enzyme kinetics",
    "cell membrane", "protein folding", "natural selection", "supply curve",
    "marginal utility", "opportunity cost", "price elasticity", "compound interest",
    "recursion depth", "sorting networks", "shortest path", "spanning tree",
    "finite automata", "turing machine", "boolean algebra", "floating point",
)  # fmt: skip
COURSES: tuple[str, ...] = ("Calculus", "Statistics", "Physics", "Algorithms", "Economics", "Biology")
LECTURERS: tuple[str, ...] = ("Adams", "Baker", "Clarke", "Dawson", "Ellis", "Foster", "Gibson")
#: generic slide titles and bullets (never keys)
GENERIC_TITLES: tuple[str, ...] = ("Worked Example", "Review", "Key Ideas", "Practice Problems", "Notation")
BULLETS: tuple[str, ...] = (
    "Definition and notation", "A worked example", "Common mistakes to avoid",
    "Practice problems", "Reading for next week", "Summary of results", "Proof sketch",
    "Exercises in the textbook",
)  # fmt: skip
LECTURE_FILLER: tuple[str, ...] = (
    "Let us look at an example.", "Any questions so far?", "Write this in your notes.",
    "Good, let us continue.", "This will be on the homework.", "Take a moment to think about it.",
    "We will come back to this later.", "So far so good.", "This idea is very useful.",
    "Notice how the terms cancel.",
)  # fmt: skip
#: (sentence, query) templates of speech-only lecture targets; ``{t}`` is the term
SPEECH_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("Remember the {t} from last week.", "remember the {t}"),
    ("Keep the {t} in mind for the homework.", "keep the {t} in mind"),
    ("Many students confuse the {t} at first.", "students confuse the {t}"),
)
MULTI_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("Now we derive the {t}.", "derive the {t}"),
    ("Let us study the {t} in detail.", "study the {t} in detail"),
)

WITNESSES: tuple[str, ...] = ("Walker", "Turner", "Hughes", "Porter", "Sutton", "Lawson", "Fisher")
COUNSEL: tuple[str, ...] = ("Chen", "Novak", "Okafor", "Rossi", "Haddad", "Lindqvist")
PEOPLE: tuple[str, ...] = (
    "Daniel Morgan", "Laura Bishop", "Victor Hale", "Nina Castillo", "Oscar Pryce",
    "Helen Marsh", "Ivan Petrov", "Grace Whitlock", "Samuel Ortega", "Fiona Doyle",
    "Marcus Reid", "Clara Jensen", "Tobias Kerr", "Yusuf Demir", "Paula Sandoval",
)  # fmt: skip
CITIES: tuple[str, ...] = (
    "Denver", "Tucson", "Omaha", "Boise", "Savannah", "Spokane", "Toledo", "Fresno",
    "Raleigh", "Tulsa", "Reno", "Duluth", "Lubbock", "Mobile", "Akron",
)  # fmt: skip
GOODS: tuple[str, ...] = (
    "copper wire", "lithium batteries", "olive oil", "steel beams", "coffee beans",
    "cotton fabric", "marble tiles", "timber logs", "rice flour", "glass bottles",
    "rubber hoses", "wool blankets", "paper towels", "solar panels", "tea leaves",
)  # fmt: skip
COMPANIES: tuple[str, ...] = (
    "Harbor Freight Limited", "Granite Peak Holdings", "Northwind Logistics", "Falcon Ridge Mining",
    "Lakeshore Textiles", "Pinecrest Foods", "Ironbridge Capital", "Maplewood Packaging",
    "Coastal Pharma", "Redwood Timberworks", "Summit Analytics", "Bayside Marine",
    "Kestrel Aviation", "Oakhaven Estates", "Larkspur Ceramics",
)  # fmt: skip
DOCUMENTS: tuple[str, ...] = (
    "Invoice", "Purchase Order", "Shipping Manifest", "Service Agreement", "Board Minutes",
    "Expense Report", "Loan Agreement", "Insurance Policy",
)  # fmt: skip
MONTHS: tuple[str, ...] = ("January", "March", "April", "June", "August", "October", "November")
DEPOSITION_FILLER: tuple[tuple[str, str], ...] = (
    ("Did you review any documents before today?", "Yes, with my attorney."),
    ("Who else was present at the time?", "Nobody else was there."),
    ("Do you need a short break?", "No, I am fine."),
    ("Were you employed there at the time?", "Yes, as a manager."),
    ("Did you keep any notes?", "I do not recall."),
    ("How long did you work for the company?", "About six years."),
    ("Did anyone instruct you to do that?", "Not that I remember."),
    ("Is that your signature?", "It looks like it."),
    ("Did you send any emails about it?", "A few, I think."),
    ("Can you describe your duties?", "I handled orders and billing."),
)
#: (question, answer, query) of speech-only deposition targets: {p} person, {c} city, {g} goods
#: and the fields whose words are the keys (together they are in the answer only)
FACT_TEMPLATES: tuple[tuple[str, str, str, str], ...] = (
    ("When did you first meet {p}?", "I met {p} in {c} in {m} {y}.", "the witness met {p} in {c}", "pc"),
    ("Who approved the {g} shipment?", "{p} approved the {g} shipment.", "{p} approved the {g} shipment", "pg"),
    ("Where were the {g} kept?", "We stored the {g} in a warehouse in {c}.", "{g} stored in a warehouse in {c}", "gc"),
)
EXHIBIT_Q: tuple[str, ...] = ("Please look at exhibit {n}.", "I hand you exhibit {n}.")
EXHIBIT_A: tuple[str, ...] = ("Yes, I recognise this document.", "That is the document I signed.")
#: not-found phrases: words used nowhere else in the archive
ABSENT: tuple[str, ...] = (
    "submarine warranty", "volcano tourism", "glacier permit", "penguin census",
    "saxophone tuning", "avalanche forecast", "tapestry restoration", "lighthouse salary",
    "carnival parade", "zeppelin hangar", "origami workshop", "kayak rental",
    "meteor shower", "cactus nursery", "jellyfish aquarium", "bagpipe recital",
)  # fmt: skip

#: espeak-ng voices (``-v``): lecturer, student; questioning counsel, witness
VOICES = {"lecturer": "en-us", "student": "en-us+f3", "Q": "en-gb", "A": "en-us+m3"}
#: how long a cutaway to one of the demo's coloured-shape moments lasts, seconds (min, max)
PICTURE_SEC = (10.0, 16.0)


def words(text: str) -> list[str]:
    """Lowercase alphanumeric tokens of ``text`` (how keys are matched).

    >>> words("Q: Please look at Exhibit 12.")
    ['q', 'please', 'look', 'at', 'exhibit', '12']
    """
    return re.findall(r"[a-z0-9]+", text.lower())


# --------------------------------------------------------------------------- the script


@dataclass(frozen=True)
class Utterance:
    """One sentence said during ``[start_sec, end_sec]`` (the voiced span of its audio)."""

    start_sec: float
    end_sec: float
    role: str  #: "Q" / "A" (deposition), "lecturer" / "student" (lecture)
    speaker: str  #: the person's name ("Ms. Chen", "Professor Adams", "Student")
    text: str  #: what is said, without a speaker label
    voice: str  #: the espeak-ng voice saying it


@dataclass(frozen=True)
class Slide:
    """A full-frame lecture slide, or an exhibit card held up in a deposition, on screen during
    ``[start_sec, end_sec)``."""

    start_sec: float
    end_sec: float
    title: str
    lines: tuple[str, ...] = ()
    kind: str = "slide"  #: "slide" | "exhibit"

    @property
    def text(self) -> str:
        return "\n".join((self.title, *self.lines))


@dataclass(frozen=True)
class Target:
    """What one query asks for: its sentence, its key words, and the evidence's indices."""

    kind: str  #: speech | slide | multi | picture | not_found
    query: str
    keys: tuple[str, ...] = ()  #: words that appear together only in the evidence
    utterance: int | None = None  #: index into :attr:`TalkScript.utterances`
    slide: int | None = None  #: index into :attr:`TalkScript.slides`
    picture: int | None = None  #: index into :attr:`TalkScript.pictures`


@dataclass(frozen=True)
class TalkScript:
    """One video: what is said, shown and asked, with times in seconds."""

    vid: str
    kind: str  #: lecture | deposition
    duration_sec: float
    utterances: tuple[Utterance, ...]
    slides: tuple[Slide, ...]
    pictures: tuple[Event, ...]
    targets: tuple[Target, ...]
    speakers: dict[str, str] = field(default_factory=dict)  #: role -> name


class Pools:
    """Archive-wide vocabularies, each shuffled once and handed out without replacement."""

    def __init__(self, rng: np.random.Generator, pairs: Sequence[tuple[str, str]]) -> None:
        lists: dict[str, Sequence] = {
            "term": TERMS, "person": PEOPLE, "city": CITIES, "goods": GOODS, "company": COMPANIES,
            "exhibit": tuple(range(10, 100)), "absent": ABSENT, "pair": tuple(pairs),
        }  # fmt: skip
        self._left = {k: [v[int(i)] for i in rng.permutation(len(v))] for k, v in lists.items()}

    def take(self, name: str) -> Any:  # str, int or (shape, colour)
        if not self._left[name]:
            raise ConfigError(
                f"TalksConfig: the archive's '{name}' vocabulary ran out; ask for fewer videos "
                "(--videos) or fewer queries per video", field="n_videos")
        return self._left[name].pop()


Measure = Callable[[str, str], float]


class _Clock:
    """Lays sentences out one after another at their measured lengths (10 ms grid)."""

    def __init__(self, measure: Measure, speakers: dict[str, str]) -> None:
        self.t = 0.0
        self.measure, self.speakers = measure, speakers
        self.utterances: list[Utterance] = []
        self.slides: list[Slide] = []
        self.pictures: list[Event] = []

    def say(self, role: str, text: str) -> int:
        voice = VOICES[role]
        start = round(self.t, 2)
        end = round(start + self.measure(text, voice), 3)
        self.utterances.append(Utterance(start, end, role, self.speakers[role], text, voice))
        self.t = end
        return len(self.utterances) - 1

    def pause(self, rng: np.random.Generator, lo: float, hi: float) -> None:
        self.t = round(self.t + float(rng.uniform(lo, hi)), 2)

    def picture(self, rng: np.random.Generator, pools: Pools) -> int:
        shape, colour = pools.take("pair")
        motion = str(rng.choice(["left", "right", "up", "down"]))
        start = round(self.t, 2)
        # as long as the demo's own events (8-30 s): its head was trained on moments of that length
        end = round(start + float(rng.uniform(PICTURE_SEC[0], PICTURE_SEC[1])), 2)
        self.pictures.append(object_event(shape, colour, motion, start, end, target=True))
        self.t = end
        return len(self.pictures) - 1


def _title(term: str) -> str:
    return " ".join(w.capitalize() for w in term.split())


def _roles(rng: np.random.Generator, counts: dict[str, int]) -> list[str]:
    roles = [k for k, n in counts.items() for _ in range(n)]
    return [roles[int(i)] for i in rng.permutation(len(roles))]


def lecture_script(vid: str, rng: np.random.Generator, pools: Pools, measure: Measure, *,
                   target_sec: float, slide_sec: tuple[float, float], n_speech: int, n_slide: int,
                   n_multi: int, n_picture: int, n_not_found: int) -> TalkScript:
    """A lecture: a title slide, content slides until ``target_sec`` (and every target) is
    reached, a closing slide; ``n_picture`` cutaways between slides.

    Each slide stays up for a length drawn from ``slide_sec`` and is talked over by the
    lecturer (now and then a student asks to repeat). Slide roles, spread over the lecture:
    ``multi`` (title = a term, and a sentence saying it), ``slide`` (title = a term never said)
    or generic; ``n_speech`` sentences, on random slides, say terms shown nowhere.
    """
    name = f"Professor {LECTURERS[int(rng.integers(len(LECTURERS)))]}"
    clock = _Clock(measure, {"lecturer": name, "student": "Student"})
    course = COURSES[int(rng.integers(len(COURSES)))]
    targets: list[Target] = []
    _lecture_slide(clock, rng, slide_sec, course, (name,), [f"Welcome to {course}.",
                   "Today we cover several ideas.", "Let us begin."])
    mean_len = slide_sec[0] + (min(slide_sec[1], slide_sec[0] + 10.0) - slide_sec[0]) / 2
    n_keys = n_multi + n_slide
    # the title slide is up; a closing slide and the cutaways are to come
    n_slots = max(n_keys, n_picture, 1, round((target_sec - clock.t - sum(PICTURE_SEC) / 2 * n_picture)
                                              / mean_len) - 1)
    roles = _roles(rng, {"multi": n_multi, "slide": n_slide, "generic": n_slots - n_keys})
    pictures_at = {int(i) for i in rng.permutation(n_slots)[:n_picture]}
    speech_at = [int(i) for i in rng.integers(0, n_slots, n_speech)]
    k = 0
    while k < n_slots or clock.t < target_sec - mean_len - slide_sec[0]:
        role = roles[k] if k < n_slots else "generic"
        term = pools.take("term") if role != "generic" else ""
        said: list[tuple[str, int | None]] = []  # (sentence, its speech target's index)
        if role == "multi":
            sentence, query = MULTI_TEMPLATES[int(rng.integers(len(MULTI_TEMPLATES)))]
            said.append((sentence.format(t=term), None))
        for _ in range(speech_at.count(k)):  # a term said on this slide, shown nowhere
            sterm = pools.take("term")
            ssent, squery = SPEECH_TEMPLATES[int(rng.integers(len(SPEECH_TEMPLATES)))]
            targets.append(Target("speech", squery.format(t=sterm), tuple(words(sterm))))
            said.insert(int(rng.integers(len(said) + 1)), (ssent.format(t=sterm), len(targets) - 1))
        title = _title(term) if term else GENERIC_TITLES[int(rng.integers(len(GENERIC_TITLES)))]
        lines = tuple(BULLETS[int(i)] for i in rng.choice(len(BULLETS), int(rng.integers(2, 4)), replace=False))
        at = _lecture_slide(clock, rng, slide_sec, title, lines, [x for x, _ in said])
        s = len(clock.slides) - 1
        for pos, (_, ti) in enumerate(said):
            if ti is not None:
                targets[ti] = replace(targets[ti], utterance=at[pos])
            elif role == "multi":
                targets.append(Target("multi", query.format(t=term), tuple(words(term)),
                                      utterance=at[pos], slide=s))
        if role == "slide":
            targets.append(Target("slide", f"the slide about {term}", tuple(words(term)), slide=s))
        if k in pictures_at:
            targets.append(Target("picture", "", picture=clock.picture(rng, pools)))
        k += 1
    _lecture_slide(clock, rng, slide_sec, "Questions", (), ["That is all for today.",
                   "Thank you for listening."])
    return _finish(vid, "lecture", clock, targets, pools, n_not_found, "lecture on {a}")


def _lecture_slide(clock: _Clock, rng: np.random.Generator, slide_sec: tuple[float, float],
                   title: str, lines: tuple[str, ...], said: Sequence[str]) -> list[int]:
    """Show a slide for a length drawn from ``slide_sec`` (longer if ``said`` needs it): the
    lecturer says ``said`` in order, then fillers while time is left. Returns the indices of
    the ``said`` utterances."""
    start = clock.t
    length = float(rng.uniform(slide_sec[0], min(slide_sec[1], slide_sec[0] + 10.0)))
    clock.pause(rng, 0.3, 0.8)
    at = []
    for text in said:
        at.append(clock.say("lecturer", text))
        clock.pause(rng, 0.5, 1.2)
    while clock.t - start < length - 4.0:
        if rng.random() < 0.15:
            clock.say("student", "Could you repeat that please?")
            clock.pause(rng, 0.4, 0.8)
            clock.say("lecturer", "Of course.")
        else:
            clock.say("lecturer", LECTURE_FILLER[int(rng.integers(len(LECTURE_FILLER)))])
        clock.pause(rng, 0.5, 1.2)
    clock.t = round(max(clock.t, start + length), 2)
    clock.slides.append(Slide(round(start, 2), clock.t, title, lines))
    return at


def deposition_script(vid: str, rng: np.random.Generator, pools: Pools, measure: Measure, *,
                      target_sec: float, n_speech: int, n_slide: int, n_multi: int,
                      n_picture: int, n_not_found: int) -> TalkScript:
    """A deposition: Q/A exchanges in front of a static scene until ``target_sec`` (and every
    target) is reached. ``max(n_multi, n_slide)`` exhibit exchanges hold up a card ("EXHIBIT
    n", a document, a company): the number is said and shown (``multi``), the company only
    shown (``slide``); ``n_speech`` fact exchanges name a person, a city or goods (``speech``)."""
    witness = f"Mr. {WITNESSES[int(rng.integers(len(WITNESSES)))]}"
    counsel = f"Ms. {COUNSEL[int(rng.integers(len(COUNSEL)))]}"
    clock = _Clock(measure, {"Q": counsel, "A": witness})
    targets: list[Target] = []
    n_exhibit = max(n_multi, n_slide)
    n_keys = n_exhibit + n_speech + n_picture
    n_fill = max(0, round(target_sec / 7.0) - 1 - n_keys)  # an exchange lasts about 7 s
    roles = ["intro", *_roles(rng, {"exhibit": n_exhibit, "fact": n_speech, "picture": n_picture,
                                    "filler": n_fill})]
    exhibits = 0
    clock.pause(rng, 0.5, 1.0)
    k = 0
    while k < len(roles) or clock.t < target_sec - 7.0:
        role = roles[k] if k < len(roles) else "filler"
        k += 1
        if role == "picture":
            targets.append(Target("picture", "", picture=clock.picture(rng, pools)))
            clock.pause(rng, 0.5, 1.0)
            continue
        start = clock.t
        if role == "intro":
            q, a = "Please state your name for the record.", f"My name is {witness}."
        elif role == "filler":
            q, a = DEPOSITION_FILLER[int(rng.integers(len(DEPOSITION_FILLER)))]
        elif role == "exhibit":
            n = pools.take("exhibit")
            q = EXHIBIT_Q[int(rng.integers(len(EXHIBIT_Q)))].format(n=n)
            a = EXHIBIT_A[int(rng.integers(len(EXHIBIT_A)))]
        else:
            tq, ta, tquery, key_fields = FACT_TEMPLATES[int(rng.integers(len(FACT_TEMPLATES)))]
            fill = {f: pools.take(pool) for f, pool in (("p", "person"), ("c", "city"), ("g", "goods"))
                    if "{" + f + "}" in ta}
            fill |= {"m": MONTHS[int(rng.integers(len(MONTHS)))], "y": int(rng.integers(2015, 2023))}
            q, a = tq.format(**fill), ta.format(**fill)
            keys = [w for f in key_fields for w in words(str(fill[f]))]
        qi = clock.say("Q", q)
        clock.pause(rng, 0.4, 0.9)
        ai = clock.say("A", a)
        if role == "exhibit":
            company, doc = pools.take("company"), DOCUMENTS[int(rng.integers(len(DOCUMENTS)))]
            end = round(clock.t + 0.8, 2)
            clock.slides.append(Slide(round(max(0.0, start - 0.3), 2), end, f"EXHIBIT {n}",
                                      (doc, company), kind="exhibit"))
            s = len(clock.slides) - 1
            if exhibits < n_multi:
                targets.append(Target("multi", f"exhibit {n} shown to the witness",
                                      ("exhibit", str(n)), utterance=qi, slide=s))
            if exhibits < n_slide:
                targets.append(Target("slide", f"{doc.lower()} from {company}",
                                      tuple(words(company)), slide=s))
            exhibits += 1
            clock.t = end
        elif role == "fact":
            targets.append(Target("speech", tquery.format(**fill), tuple(keys), utterance=ai))
        clock.pause(rng, 1.0, 2.0)
    return _finish(vid, "deposition", clock, targets, pools, n_not_found, "testimony about the {a}")


def _finish(vid: str, kind: str, clock: _Clock, targets: list[Target], pools: Pools,
            n_not_found: int, absent_template: str) -> TalkScript:
    """Round the duration up to whole seconds (the last slide runs to it), add not-found
    targets, and freeze."""
    duration = float(math.ceil(clock.t + 0.5))
    slides = list(clock.slides)
    if kind == "lecture":
        last = slides[-1]
        slides[-1] = Slide(last.start_sec, duration, last.title, last.lines, last.kind)
    for _ in range(n_not_found):
        targets.append(Target("not_found", absent_template.format(a=pools.take("absent"))))
    return TalkScript(vid, kind, duration, tuple(clock.utterances), tuple(slides),
                      tuple(clock.pictures), tuple(targets), dict(clock.speakers))
