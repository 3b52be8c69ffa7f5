"""A synthetic archive with known answers: H.264 videos plus QVHighlights annotations.

:func:`make_archive` writes::

    out_dir/
      synth_config.json               the SynthConfig that made it
      train/video_0000.mp4 ...        H.264, yuv420p, cfg.fps frames per second
      val/video_0008.mp4 ...          (numbers run on across splits: ids are unique)
      test/video_0010.mp4 ...
      {train,val,test}.jsonl          QVHighlights: qid, query, vid, duration, relevant_windows
      {train,val,test}_events.jsonl   every event of every video (one line per video), for debugging

Every query is the caption of one event of its video (its window is that
event's ``[start_sec, end_sec]``, unique in the video by construction) or, for
about ``not_found_fraction`` of them, a caption describing nothing in the video
(``relevant_windows: []``), usually one attribute away from something that is
there, and where the split allows it nothing in any video of the split.

A caption may well describe events of *other* videos of the split too ("a
blue square moving up" happens in several): an archive search that returns
one of those is right. So each query also lists ``corpus_windows``, every
``[vid, start_sec, end_sec]`` of the split that its caption describes
(:func:`~groundzero.synthetic.events.conflicts`), its own window included; a query with
empty ``corpus_windows`` has no answer anywhere in the split, the correct
corpus-wide answer being "not found". QVHighlights readers that do not know
the field ignore it. The (shape, colour) pairs of ``held_out_pairs`` appear only in the test
split: never as targets, distractors or query text in train or val; the first
targets of every test video use them.

Same config, same bytes of jsonl and the same decoded frames. Each video has
its own random streams, seeded by ``(seed, split, index)``, so it does not
change when another split grows (its queries do change when its own split
grows: they depend on what the other videos of the split show).

Modules: this one (the config, each video's timeline and queries, the files),
:mod:`~groundzero.synthetic.queries` (a query and its answers),
:mod:`~groundzero.synthetic.encode` (frames to H.264); the scene model is
:mod:`~groundzero.synthetic.vocabulary`, :mod:`~groundzero.synthetic.events`,
:mod:`~groundzero.synthetic.render` and :mod:`~groundzero.synthetic.scenes`.
:mod:`~groundzero.synthetic.captions` draws captioned frames from the same scenes to
train a backbone.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from groundzero.errors import ConfigError
from groundzero.synthetic.encode import iter_frames, write_video
from groundzero.synthetic.events import Event, caption
from groundzero.synthetic.queries import SynthQuery, corpus_windows, not_found_description
from groundzero.synthetic.scenes import sample_timeline
from groundzero.synthetic.vocabulary import COLOURS, SHAPES, all_pairs

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class SynthConfig:
    """What :func:`make_archive` generates. All durations in minutes or seconds as named."""

    n_train_videos: int = 8  #: videos in the train split
    n_val_videos: int = 2  #: videos in the val split
    n_test_videos: int = 2  #: videos in the test split
    video_minutes: float = 10.0  #: length of every video, minutes (a few to 60)
    fps: int = 4  #: frames per second of the encoded video
    size: tuple[int, int] = (160, 120)  #: (width, height) in pixels, both even (yuv420p)
    seed: int = 0  #: everything follows from it
    queries_per_video: int = 6  #: queries written per video (fewer if it has too few events)
    not_found_fraction: float = 0.2  #: expected share of queries with no answer, 0..1
    #: (shape, colour) pairs that appear only in the test split
    held_out_pairs: tuple[tuple[str, str], ...] = (
        ("star", "red"),
        ("triangle", "blue"),
        ("circle", "yellow"),
    )
    foreground_fraction: float = 0.4  #: share of each video covered by object / title scenes, 0..1

    def __post_init__(self) -> None:
        for name in ("n_train_videos", "n_val_videos", "n_test_videos"):
            if not 0 <= getattr(self, name) <= 9999:
                raise ConfigError(f"SynthConfig.{name}={getattr(self, name)}: need 0..9999")
        if not 0.25 <= self.video_minutes <= 600:
            raise ConfigError(f"SynthConfig.video_minutes={self.video_minutes}: need 0.25..600")
        if not 1 <= self.fps <= 60:
            raise ConfigError(f"SynthConfig.fps={self.fps}: need an integer 1..60")
        w, h = self.size
        if w < 16 or h < 16 or w % 2 or h % 2:
            raise ConfigError(f"SynthConfig.size={self.size}: need (W, H), both even and >= 16")
        if not 0 <= self.queries_per_video <= 99:
            raise ConfigError(f"SynthConfig.queries_per_video={self.queries_per_video}: need 0..99")
        for name in ("not_found_fraction", "foreground_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"SynthConfig.{name}={getattr(self, name)}: need 0..1")
        for pair in self.held_out_pairs:
            if len(pair) != 2 or pair[0] not in SHAPES or pair[1] not in COLOURS:
                raise ConfigError(
                    f"SynthConfig.held_out_pairs: {pair!r} is not (shape, colour) with shape in "
                    f"{SHAPES} and colour in {tuple(COLOURS)}"
                )
        if not self.pairs("train"):
            raise ConfigError(
                "SynthConfig.held_out_pairs holds every (shape, colour): nothing left to train on"
            )

    @classmethod
    def tiny(cls, **kw: Any) -> SynthConfig:
        """2 one-minute 96x72 videos per split at 4 fps: for tests (seconds to make)."""
        base: dict[str, Any] = {
            "n_train_videos": 2, "n_val_videos": 2, "n_test_videos": 2,
            "video_minutes": 1.0, "size": (96, 72),
        }
        return cls(**{**base, **kw})

    @property
    def duration_sec(self) -> float:
        """Length of every video in seconds (whole seconds)."""
        return float(math.floor(self.video_minutes * 60))

    def n_videos(self, split: str) -> int:
        """Number of videos in ``split``."""
        split_index(split)
        return int(getattr(self, f"n_{split}_videos"))

    def first_video(self, split: str) -> int:
        """Number of the split's first video (numbers run on across train, val, test)."""
        return sum(self.n_videos(s) for s in SPLITS[: split_index(split)])

    def pairs(self, split: str) -> tuple[tuple[str, str], ...]:
        """The (shape, colour) pairs objects and query text may use in ``split``."""
        if split_index(split) == SPLITS.index("test"):
            return all_pairs()
        held = set(self.held_out_pairs)
        return tuple(p for p in all_pairs() if p not in held)


def split_index(split: str) -> int:
    """Position of ``split`` in :data:`SPLITS`; raises :class:`ConfigError` for another name."""
    if split not in SPLITS:
        raise ConfigError(f"split={split!r}; allowed: {', '.join(SPLITS)}")
    return SPLITS.index(split)


@dataclass(frozen=True)
class SplitArchive:
    """What :func:`make_archive` wrote for one split."""

    annotations: Path  #: ``out_dir/{split}.jsonl``
    events_file: Path  #: ``out_dir/{split}_events.jsonl``
    videos: tuple[Path, ...]  #: ``out_dir/{split}/video_XXXX.mp4``, in order
    timelines: dict[str, tuple[Event, ...]] = field(default_factory=dict)  #: vid -> events
    queries: tuple[SynthQuery, ...] = ()  #: in jsonl order


# --------------------------------------------------------------------------- one video


def _rng(cfg: SynthConfig, split: str, index: int, stream: int) -> np.random.Generator:
    """Independent stream ``stream`` (0: timeline, 1: queries) of video ``index`` of ``split``."""
    return np.random.default_rng([cfg.seed, split_index(split), index, stream])


def video_id(cfg: SynthConfig, split: str, index: int) -> str:
    """File stem (and annotation ``vid``) of video ``index`` (0-based within ``split``)."""
    return f"video_{cfg.first_video(split) + index:04d}"


def timeline_for(cfg: SynthConfig, split: str, index: int) -> list[Event]:
    """The events of video ``index`` of ``split``, exactly as :func:`make_archive` draws them."""
    focus: list[tuple[str, str]] = []
    if split == "test" and cfg.held_out_pairs:
        k = index % len(cfg.held_out_pairs)  # rotate, so each held-out pair leads some video
        focus = list(cfg.held_out_pairs[k:] + cfg.held_out_pairs[:k])
    return sample_timeline(
        _rng(cfg, split, index, 0),
        cfg.duration_sec,
        pairs=cfg.pairs(split),
        focus_pairs=focus,
        foreground_fraction=cfg.foreground_fraction,
    )


def queries_for(
    cfg: SynthConfig, split: str, index: int, events: Sequence[Event],
    split_timelines: dict[str, Sequence[Event]] | None = None,
) -> list[SynthQuery]:
    """The queries of video ``index`` of ``split`` over its ``events``.

    Positives first take targets on held-out pairs (test split), then other
    targets, then any event; not-found queries are mostly one attribute away
    from an event of the video. The order is shuffled. With ``split_timelines``
    (vid -> events of every video of the split) not-found queries describe
    nothing in the whole split where possible, and every query gets its
    ``corpus_windows``.
    """
    split_events = [e for evs in (split_timelines or {}).values() for e in evs]
    rng = _rng(cfg, split, index, 1)
    vid = video_id(cfg, split, index)
    n = cfg.queries_per_video
    frac = n * cfg.not_found_fraction
    n_nf = min(n, math.floor(frac) + int(rng.random() < frac - math.floor(frac)))
    held = set(cfg.held_out_pairs) if split == "test" else set()
    order = [int(i) for i in rng.permutation(len(events))]

    def rank(i: int) -> int:
        e = events[i]
        return 0 if e.target and (e.shape, e.colour) in held else (1 if e.target else 2)

    chosen = [(events[i], True) for i in sorted(order, key=rank)[: n - n_nf]]
    pairs = cfg.pairs(split)
    for _ in range(n_nf):
        cand = not_found_description(rng, events, pairs, avoid=[e for e, _ in chosen], absent_from=split_events)
        if cand is not None:
            chosen.append((cand, False))
    out = []
    for k, i in enumerate(rng.permutation(len(chosen))):
        e, found = chosen[int(i)]
        windows = ((e.start_sec, e.end_sec),) if found else ()
        corpus = corpus_windows(e, split_timelines) if split_timelines is not None else ()
        out.append(SynthQuery(f"{vid}_q{k:02d}", vid, caption(e), cfg.duration_sec, windows, e, corpus))
    return out


# --------------------------------------------------------------------------- the archive


def make_archive(
    out_dir: str | Path, cfg: SynthConfig = SynthConfig()
) -> dict[str, SplitArchive]:
    """Write the whole archive (videos, annotations, event lists) under ``out_dir``.

    Returns ``{split: SplitArchive}`` for ``train``, ``val``, ``test`` (the
    timelines and queries as written). Existing files of the same names are
    overwritten. Streams every video (never whole in memory); the time goes
    mostly to x264.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config_json = json.dumps(asdict(cfg), indent=2) + "\n"
    (out / "synth_config.json").write_text(config_json, encoding="utf-8")
    result: dict[str, SplitArchive] = {}
    for split in SPLITS:
        videos, queries = [], []
        # every timeline of the split first: queries know what the other videos show
        timelines = {video_id(cfg, split, i): tuple(timeline_for(cfg, split, i)) for i in range(cfg.n_videos(split))}
        for index, (vid, events) in enumerate(timelines.items()):
            path = out / split / f"{vid}.mp4"
            log.info("synth: writing %s (%d events)", path, len(events))
            frames = iter_frames(events, cfg.duration_sec, cfg.fps, cfg.size)
            videos.append(write_video(path, frames, cfg.fps, cfg.size))
            queries += queries_for(cfg, split, index, events, timelines)
        ann = out / f"{split}.jsonl"
        _write_jsonl(ann, [q.to_json() for q in queries])
        ev_file = out / f"{split}_events.jsonl"
        _write_jsonl(ev_file, [
            {"vid": vid, "duration": cfg.duration_sec, "events": [e.to_json() for e in evs]}
            for vid, evs in timelines.items()
        ])
        result[split] = SplitArchive(ann, ev_file, tuple(videos), timelines, tuple(queries))
    return result


def _write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)
