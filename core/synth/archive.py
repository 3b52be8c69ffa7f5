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
(:func:`~core.synth.scenes.conflicts`), its own window included; a query with
empty ``corpus_windows`` has no answer anywhere in the split, the correct
corpus-wide answer being "not found". QVHighlights readers that do not know
the field ignore it. The (shape, colour) pairs of ``held_out_pairs`` appear only in the test
split: never as targets, distractors or query text in train or val; the first
targets of every test video use them.

Same config, same bytes of jsonl and the same decoded frames. Each video has
its own random streams, seeded by ``(seed, split, index)``, so it does not
change when another split grows (its queries do change when its own split
grows: they depend on what the other videos of the split show).

:func:`frames_and_captions` samples single frames (and two-frame clips) with
the caption of a visible event (to train a small image-text backbone), rendered
square or, given a decoder, through the same H.264 encode and decode as the
archive's videos.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError, FFmpegNotFoundError, GroundZeroError
from core.synth.scenes import (
    ACTIONS,
    BACKGROUNDS,
    COLOURS,
    OBJECT_KINDS,
    SHAPES,
    WORDS,
    Event,
    all_pairs,
    background_event,
    caption,
    conflicts,
    frame_caption,
    is_static,
    object_distractor,
    object_event,
    progress,
    render_frame,
    reversed_event,
    sample_timeline,
    title_event,
)

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
        _split_index(split)
        return int(getattr(self, f"n_{split}_videos"))

    def first_video(self, split: str) -> int:
        """Number of the split's first video (numbers run on across train, val, test)."""
        return sum(self.n_videos(s) for s in SPLITS[: _split_index(split)])

    def pairs(self, split: str) -> tuple[tuple[str, str], ...]:
        """The (shape, colour) pairs objects and query text may use in ``split``."""
        if _split_index(split) == SPLITS.index("test"):
            return all_pairs()
        held = set(self.held_out_pairs)
        return tuple(p for p in all_pairs() if p not in held)


def _split_index(split: str) -> int:
    if split not in SPLITS:
        raise ConfigError(f"split={split!r}; allowed: {', '.join(SPLITS)}")
    return SPLITS.index(split)


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
    #: every ``(vid, start_sec, end_sec)`` of the split the caption describes (see the module docstring)
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
    return np.random.default_rng([cfg.seed, _split_index(split), index, stream])


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


def iter_frames(events: Sequence[Event], duration_sec: float, fps: int,
                size: tuple[int, int]) -> Iterator[np.ndarray]:
    """Frames ``i = 0 .. round(duration_sec * fps) - 1`` at ``t = i / fps`` s, each (H, W, 3) uint8.

    Keeps only the active events at hand, and reuses the previous frame while
    nothing on screen moves or changes (long empty stretches cost nothing):
    the same array may be yielded again, so consumers must not modify it.
    """
    pending = sorted(events, key=lambda e: e.start_sec)
    active: list[Event] = []
    nxt = 0
    last_key: tuple[int, ...] | None = None
    frame = np.empty(0)
    for i in range(round(duration_sec * fps)):
        t = i / fps
        while nxt < len(pending) and pending[nxt].start_sec <= t:
            active.append(pending[nxt])
            nxt += 1
        active = [e for e in active if e.end_sec > t]
        key = tuple(id(e) for e in active)
        if key != last_key or not all(is_static(e) for e in active):
            frame = render_frame(active, t, size)
            last_key = key
        yield frame


def write_video(
    path: str | Path, frames: Iterator[np.ndarray], fps: int, size: tuple[int, int]
) -> Path:
    """Encode ``frames`` ((H, W, 3) uint8 RGB each) to H.264 mp4 at ``path``, streaming.

    Frames are piped one by one as raw RGB into ``ffmpeg ... -c:v libx264
    -preset ultrafast -pix_fmt yuv420p``; the file appears under its name only
    once complete. Raises FFmpegNotFoundError without ffmpeg on PATH and
    GroundZeroError (with ffmpeg's message) when encoding fails.
    """
    path = Path(path)
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise FFmpegNotFoundError(
            "ffmpeg not found on PATH; install it (Debian: apt-get install ffmpeg)"
        )
    w, h = size
    part = path.with_name(path.name + ".part")
    cmd = [
        exe, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-map_metadata", "-1", "-fflags", "+bitexact", "-f", "mp4", str(part),
    ]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        assert proc.stdin is not None
        try:
            for frame in frames:
                if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
                    raise ConfigError(
                        f"{path}: frame {frame.shape} {frame.dtype}, expected ({h}, {w}, 3) uint8"
                    )
                proc.stdin.write(frame.tobytes())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg died: its status and message are reported below
        except BaseException:
            proc.kill()
            proc.wait()
            part.unlink(missing_ok=True)
            raise
        rc = proc.wait()
        if rc != 0:
            err.seek(0)
            msg = err.read().decode(errors="replace").strip()
            part.unlink(missing_ok=True)
            raise GroundZeroError(f"{path}: ffmpeg failed to encode (exit {rc}): {msg[-2000:]}")
    part.replace(path)
    return path


# --------------------------------------------------------------------------- the archive


def make_archive(
    out_dir: str | Path, cfg: SynthConfig = SynthConfig()
) -> dict[str, SplitArchive]:
    """Write the whole archive (videos, annotations, event lists) under ``out_dir``.

    Returns ``{split: SplitArchive}`` for ``train``, ``val``, ``test`` (the
    timelines and queries as written). Existing files of the same names are
    overwritten. Streams every video (never whole in memory); at 160x120 and
    4 fps it takes about 1 s of wall time per 10 minutes of video, mostly x264.
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


# --------------------------------------------------------------------------- single frames


def _visible_time(rng: np.random.Generator, e: Event) -> float:
    """A time (seconds) inside ``e`` where it is clearly visible (grown to >= 30 % for appears)."""
    lo, hi = {"appears": (0.3, 0.9), "disappears": (0.1, 0.7)}.get(e.kind, (0.05, 0.95))
    return e.start_sec + float(rng.uniform(lo, hi)) * (e.end_sec - e.start_sec)


def _contrast_time(rng: np.random.Generator, e: Event, t: float) -> float | None:
    """A time inside ``e`` whose :func:`frame_caption` differs from ``t``'s: another third of a
    mover's path, or the other size of a growing / shrinking shape; None for other events."""
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
    (:func:`~core.synth.scenes.frame_caption`: "a red circle on the left"), the
    rest are the event's query sentence ("a red circle moving left").

    Clips: a single frame cannot show an action, so a backbone trained on
    sentences over single frames learns to ignore the words that name one
    (the 2026-12 demo tower: pooled "a red circle moving left" / "... moving
    right" cosine 0.997, ``bench/backbone_probe.py``), and no later model can
    tell from the query which motion is meant. With probability
    ``clip_fraction`` a sentence caption gets a clip instead: a frame from the
    event's first third and one from its last third. With probability
    ``reverse_fraction`` such a clip also gets its time reversal, the same two
    frames the other way round, captioned as the reversed event ("... moving
    right", "... disappears"; :func:`~core.synth.scenes.reversed_event`), in
    the same group, so a batch holds both and only the order of the frames
    tells the two sentences apart. Reversed clips cost no frames.

    Contrast pairs: with probability ``contrast_fraction`` a state caption of a
    mover, or of a growing / shrinking shape, gets a partner: the same scene at
    a time when the shape is in another third of its path (or at the other
    size), with that frame's caption, in the same group (measured with
    transformers' random position-embedding init, they did not teach the
    backbone position; the sine-cosine init of ``build_siglip`` did).

    How the pixels are made:

    - ``decode=None``: rendered directly at ``image_size x image_size``. Fast,
      but not what an index sees: the archive's videos are ``cfg.size``
      (160x120, not square), H.264-coded, and squashed to a square by the
      decoder. A backbone trained on such frames reads indexed ones badly (the
      2026-11 demo backbone: caption accuracy 0.344 rendered, 0.170 through
      the codec; ``bench/backbone_probe.py``).
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
    rng = np.random.default_rng([seed, _split_index(split), 7])
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
