"""A known-answer archive of lectures and depositions: speech, captions, slides and pictures.

    python -m groundzero.synthetic.talks --out DIR [--videos 6 --seed 0] [--tiny]

:func:`make_talks_archive` writes (the default 6 videos shown)::

    out_dir/
      talks_config.json                      the TalksConfig that made it
      videos/lecture_0000.mp4 + .srt         H.264 + AAC; captions per TalksConfig.captions,
      videos/deposition_0001.mp4             cycled over the videos: srt / vtt = a sidecar of
      videos/lecture_0002.mp4 + .vtt         the same stem beside the video; mov_text = a
      videos/deposition_0003.mp4             subtitle stream in the mp4 (0001); mkv = an .mkv
      videos/lecture_0004.mkv                with an srt stream (0004); none = speech only
      videos/deposition_0005.mp4 + .srt      (0003: findable only by ASR)
      queries.jsonl                          QVHighlights + kind, corpus_windows, sources, evidence
      events.jsonl                           one line per video: utterances, slides, pictures

Lectures: full-frame slides (a title, 2-3 bullets) changing every ``slide_sec`` seconds with a
swaying lecturer in a corner inset, the lecturer (and now and then a student) speaking.
Depositions: a static witness at a table, Q/A exchanges (``Q:`` / ``A:`` in captions), exhibit
cards ("EXHIBIT 12", a document, a company) held up while an exhibit is discussed. Both kinds
cut away now and then to a demo scene (a coloured shape moving across a grey frame, drawn by
:func:`groundzero.synthetic.render.render_frame`, so the demo SigLIP can find it).

Each query has a ``kind``: ``speech`` (key words said once, shown nowhere: window = the
utterance), ``slide`` (key words shown once, said nowhere: window = the slide or card),
``multi`` (said and shown at once: window = the slide or card, which holds the utterance),
``picture`` (the demo caption of a cutaway: window = the cutaway), ``not_found`` (words that
occur nowhere: no windows). ``corpus_windows`` lists every ``[vid, start, end]`` of the archive
whose text holds all the query's key words (merged per video) or whose picture the caption
describes; :func:`check_answers` asserts each answer is unique and in the right channel.
``sources`` says which channels could find it (``caption``, ``asr``, ``ocr``, ``frame``); a
speech query in an uncaptioned video lists only ``asr``, which no offline test can run.

Same config, same bytes of ``queries.jsonl`` and ``events.jsonl`` (espeak-ng is
deterministic; a different espeak-ng version may change utterance lengths and so the times).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from groundzero.errors import ConfigError, GroundZeroError
from groundzero.synthetic.archive import SynthConfig
from groundzero.synthetic.encode import write_video
from groundzero.synthetic.events import caption, conflicts
from groundzero.synthetic.talks_media import (
    Speech,
    find_fonts,
    iter_talk_frames,
    mix_speech,
    mux_talk,
    subtitles,
    write_wav,
)
from groundzero.synthetic.talks_script import (
    Pools,
    TalkScript,
    Target,
    deposition_script,
    lecture_script,
    words,
)
from groundzero.synthetic.vocabulary import COLOURS, SHAPES, all_pairs

log = logging.getLogger(__name__)

CAPTION_MODES: tuple[str, ...] = ("srt", "vtt", "mov_text", "mkv", "none")
KINDS: tuple[str, ...] = ("speech", "slide", "multi", "picture", "not_found")
#: words a not-found query may share with the archive
STOPWORDS = frozenset({"the", "a", "an", "of", "on", "in", "about", "to", "and"})


@dataclass(frozen=True)
class TalksConfig:
    """What :func:`make_talks_archive` generates. Times in seconds."""

    n_videos: int = 6  #: videos, alternately lecture and deposition (1..16)
    seed: int = 0  #: everything follows from it
    video_sec: tuple[float, float] = (60.0, 120.0)  #: (min, max) target length of a video
    #: (min, max) seconds a lecture slide stays up: each draws from [min, min(max, min + 10)]
    #: and runs longer only when its key sentences need it
    slide_sec: tuple[float, float] = (10.0, 30.0)
    fps: int = 10  #: frames per second of the video
    size: tuple[int, int] = (640, 360)  #: (width, height) in pixels, both even
    #: caption delivery of video i: captions[i % len(captions)], each one of CAPTION_MODES
    captions: tuple[str, ...] = ("srt", "mov_text", "vtt", "none", "mkv", "srt")
    speech_per_video: int = 2  #: speech-only queries per video
    slide_per_video: int = 1  #: slide-only queries per video
    multi_per_video: int = 1  #: speech + slide queries per video
    picture_per_video: int = 1  #: cutaways (and picture queries) per video
    not_found_per_video: int = 1  #: not-found queries per video
    speech_rate_wpm: int = 160  #: espeak-ng words per minute

    def __post_init__(self) -> None:
        if not 1 <= self.n_videos <= 16:
            raise ConfigError(f"TalksConfig.n_videos={self.n_videos}: need 1..16 (the vocabularies "
                              "allow about 16 videos of unique answers)", field="n_videos")
        for name, lo_min in (("video_sec", 5.0), ("slide_sec", 3.0)):
            lo, hi = getattr(self, name)
            if not lo_min <= lo <= hi <= 3600:
                raise ConfigError(f"TalksConfig.{name}={getattr(self, name)}: need "
                                  f"{lo_min} <= min <= max <= 3600", field=name)
        if not 1 <= self.fps <= 60:
            raise ConfigError(f"TalksConfig.fps={self.fps}: need an integer 1..60", field="fps")
        w, h = self.size
        if w < 64 or h < 64 or w % 2 or h % 2:
            raise ConfigError(f"TalksConfig.size={self.size}: need (W, H), both even and >= 64",
                              field="size")
        bad = [c for c in self.captions if c not in CAPTION_MODES]
        if not self.captions or bad:
            raise ConfigError(f"TalksConfig.captions={self.captions}: need one or more of "
                              f"{', '.join(CAPTION_MODES)}", field="captions")
        for name in ("speech_per_video", "slide_per_video", "multi_per_video",
                     "picture_per_video", "not_found_per_video"):
            if not 0 <= getattr(self, name) <= 4:
                raise ConfigError(f"TalksConfig.{name}={getattr(self, name)}: need 0..4", field=name)
        if not 80 <= self.speech_rate_wpm <= 400:
            raise ConfigError(f"TalksConfig.speech_rate_wpm={self.speech_rate_wpm}: need 80..400",
                              field="speech_rate_wpm")

    @classmethod
    def tiny(cls, **kw: Any) -> TalksConfig:
        """2 videos of ~20-30 s at 320x180, 5 fps, captions srt and mov_text: for tests."""
        base: dict[str, Any] = {"n_videos": 2, "video_sec": (20.0, 24.0), "slide_sec": (6.0, 10.0),
                                "fps": 5, "size": (320, 180), "captions": ("srt", "mov_text"),
                                "speech_per_video": 1}
        return cls(**{**base, **kw})

    def kind(self, index: int) -> str:
        """``lecture`` for even video numbers, ``deposition`` for odd."""
        return ("lecture", "deposition")[index % 2]

    def caption_mode(self, index: int) -> str:
        return self.captions[index % len(self.captions)]


@dataclass(frozen=True)
class TalksArchive:
    """What :func:`make_talks_archive` wrote."""

    out_dir: Path
    videos: tuple[Path, ...]  #: in video order
    queries_file: Path  #: ``out_dir/queries.jsonl``
    events_file: Path  #: ``out_dir/events.jsonl``
    scripts: tuple[TalkScript, ...]
    queries: tuple[dict[str, Any], ...]  #: the rows of queries.jsonl


# --------------------------------------------------------------------------- scripts


def video_id(cfg: TalksConfig, index: int) -> str:
    return f"{cfg.kind(index)}_{index:04d}"


def make_scripts(cfg: TalksConfig, speech: Speech) -> list[TalkScript]:
    """Every video's script, in order (shared pools: each key word is used once)."""
    held = set(SynthConfig().held_out_pairs)  # cutaways use only pairs the demo model trained on
    pools = Pools(np.random.default_rng([cfg.seed, 0]), [p for p in all_pairs() if p not in held])
    out = []
    for i in range(cfg.n_videos):
        rng = np.random.default_rng([cfg.seed, 1, i])
        target = float(rng.uniform(*cfg.video_sec))
        common: dict[str, Any] = {
            "target_sec": target, "n_speech": cfg.speech_per_video, "n_slide": cfg.slide_per_video,
            "n_multi": cfg.multi_per_video, "n_picture": cfg.picture_per_video,
            "n_not_found": cfg.not_found_per_video,
        }
        if cfg.kind(i) == "lecture":
            out.append(lecture_script(video_id(cfg, i), rng, pools, speech.duration_sec,
                                      slide_sec=cfg.slide_sec, **common))
        else:
            out.append(deposition_script(video_id(cfg, i), rng, pools, speech.duration_sec, **common))
    return out


# --------------------------------------------------------------------------- queries


def _window(script: TalkScript, t: Target) -> tuple[float, float] | None:
    if t.kind == "picture":
        e = script.pictures[int(t.picture)]  # type: ignore[arg-type]
        return e.start_sec, e.end_sec
    spans = []
    if t.utterance is not None:
        u = script.utterances[t.utterance]
        spans.append((u.start_sec, u.end_sec))
    if t.slide is not None:
        s = script.slides[t.slide]
        spans.append((s.start_sec, s.end_sec))
    if not spans:
        return None
    return min(a for a, _ in spans), max(b for _, b in spans)


def _places(scripts: Sequence[TalkScript]) -> list[tuple[str, str, float, float, set[str]]]:
    """Every ``(vid, channel, start, end, words)`` of the archive's text: utterances, slides."""
    out = []
    for s in scripts:
        out += [(s.vid, "speech", u.start_sec, u.end_sec, set(words(u.text))) for u in s.utterances]
        out += [(s.vid, "slide", x.start_sec, x.end_sec, set(words(x.text))) for x in s.slides]
    return out


def _merge(spans: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Overlapping spans of one video merged into their hull."""
    out: list[tuple[str, float, float]] = []
    for vid, a, b in sorted(spans):
        if out and out[-1][0] == vid and a <= out[-1][2]:
            out[-1] = (vid, out[-1][1], max(out[-1][2], b))
        else:
            out.append((vid, a, b))
    return out


def check_answers(scripts: Sequence[TalkScript], captioned: Mapping[str, bool]) -> list[dict[str, Any]]:
    """The rows of queries.jsonl, each with its ``corpus_windows``, after checking that every
    answer is unique in the archive and found in (only) the channels its kind says.
    ``captioned``: vid -> whether the video has captions (else speech is found only by ASR).

    Raises GroundZeroError naming the query when a check fails (a vocabulary clash: a bug).
    """
    places = _places(scripts)
    all_words = set().union(*(p[4] for p in places)) if places else set()
    demo_words = set(COLOURS) | set(SHAPES)
    if all_words & demo_words:
        raise GroundZeroError(f"talks: demo words {sorted(all_words & demo_words)} in the archive's text")
    rows = []
    for s in scripts:
        for k, t in enumerate(s.targets):
            qid = f"{s.vid}_q{k:02d}"
            window = _window(s, t)
            query = caption(s.pictures[int(t.picture)]) if t.kind == "picture" else t.query  # type: ignore[arg-type]
            if t.kind == "picture":
                e = s.pictures[int(t.picture)]  # type: ignore[arg-type]
                corpus = [(o.vid, p.start_sec, p.end_sec) for o in scripts for p in o.pictures if conflicts(e, p)]
                channels = {"picture"}
            else:
                hits = [p for p in places if t.keys and set(t.keys) <= p[4]]
                corpus = _merge([(vid, a, b) for vid, _, a, b, _ in hits])
                channels = {p[1] for p in hits}
            want = {"speech": {"speech"}, "slide": {"slide"}, "multi": {"speech", "slide"},
                    "picture": {"picture"}, "not_found": set()}[t.kind]
            expect = [(s.vid, *window)] if window else []
            if channels != want or corpus != expect:
                raise GroundZeroError(f"talks: query {qid} ({t.kind}, {query!r}, keys {t.keys}) found in "
                                      f"{sorted(channels)} at {corpus}; expected {sorted(want)} at {expect}")
            if t.kind == "not_found" and (set(words(query)) - STOPWORDS) & all_words:
                raise GroundZeroError(f"talks: not-found query {qid} {query!r} shares "
                                      f"{sorted((set(words(query)) - STOPWORDS) & all_words)} with the archive")
            rows.append(_row(s, t, qid, query, window, corpus, captioned[s.vid]))
    return rows


def _row(s: TalkScript, t: Target, qid: str, query: str, window: tuple[float, float] | None,
         corpus: list[tuple[str, float, float]], captioned: bool) -> dict[str, Any]:
    speech = ["caption", "asr"] if captioned else ["asr"]
    sources = {"speech": speech, "slide": ["ocr"], "multi": ["ocr", *speech], "picture": ["frame"],
               "not_found": []}[t.kind]
    evidence = []
    if t.utterance is not None:
        u = s.utterances[t.utterance]
        evidence.append({"channel": "speech", "window": [u.start_sec, u.end_sec], "text": u.text})
    if t.slide is not None:
        x = s.slides[t.slide]
        evidence.append({"channel": "slide", "window": [x.start_sec, x.end_sec], "text": x.text})
    if t.picture is not None:
        e = s.pictures[t.picture]
        evidence.append({"channel": "picture", "window": [e.start_sec, e.end_sec], "text": caption(e)})
    return {
        "qid": qid, "query": query, "vid": s.vid, "duration": s.duration_sec,
        "relevant_windows": [list(window)] if window else [],
        "kind": t.kind, "corpus_windows": [list(c) for c in corpus], "sources": sources,
        "keys": list(t.keys), "evidence": evidence,
    }


# --------------------------------------------------------------------------- files


def _manifest(s: TalkScript, cfg: TalksConfig, video: Path, out: Path, mode: str,
              font: tuple[str, str] | None) -> dict[str, Any]:
    caps: dict[str, Any] = {"mode": mode}
    if mode in ("srt", "vtt"):
        caps["file"] = video.with_suffix(f".{mode}").relative_to(out).as_posix()
    elif mode != "none":
        caps["stream"] = "mov_text" if mode == "mov_text" else "subrip"
    return {
        "vid": s.vid, "kind": s.kind, "file": video.relative_to(out).as_posix(),
        "duration": s.duration_sec, "fps": cfg.fps, "size": list(cfg.size), "captions": caps,
        "speakers": s.speakers,
        "font": font[0] if font else "pillow-default",
        "utterances": [asdict(u) for u in s.utterances],
        "slides": [{**asdict(x), "text": x.text} for x in s.slides],
        "pictures": [e.to_json() for e in s.pictures],
    }


def make_talks_archive(out_dir: str | Path, cfg: TalksConfig = TalksConfig()) -> TalksArchive:
    """Write the archive (module docstring) under ``out_dir``; existing files are overwritten.

    Needs ``espeak-ng`` and ``ffmpeg`` on PATH (FFmpegNotFoundError names the missing one).
    Time goes to rendering and x264: about a second per minute of 640x360 video at 10 fps.
    """
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "talks_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n", encoding="utf-8")
    font = find_fonts()
    videos, manifests = [], []
    with tempfile.TemporaryDirectory(dir=out) as tmp_name:
        tmp = Path(tmp_name)
        speech = Speech(tmp, cfg.speech_rate_wpm)
        scripts = make_scripts(cfg, speech)
        for i, s in enumerate(scripts):
            mode = cfg.caption_mode(i)
            video = out / "videos" / f"{s.vid}.{'mkv' if mode == 'mkv' else 'mp4'}"
            log.info("talks: writing %s (%.0f s, captions %s)", video, s.duration_sec, mode)
            silent = write_video(tmp / "video.mp4", iter_talk_frames(s, cfg.fps, cfg.size, font),
                                 cfg.fps, cfg.size)
            audio = write_wav(tmp / "audio.wav", mix_speech(s, speech), speech.sample_rate)
            subs = None
            for fmt in ("srt", "vtt"):
                video.with_suffix(f".{fmt}").unlink(missing_ok=True)
            if mode in ("srt", "vtt"):
                video.with_suffix(f".{mode}").write_text(subtitles(s, mode), encoding="utf-8")
            elif mode != "none":
                subs = tmp / "subs.srt"
                subs.write_text(subtitles(s, "srt"), encoding="utf-8")
            videos.append(mux_talk(video, silent, audio, subs))
            manifests.append(_manifest(s, cfg, video, out, mode, font))
    rows = check_answers(scripts, {s.vid: cfg.caption_mode(i) != "none" for i, s in enumerate(scripts)})
    _write_jsonl(out / "queries.jsonl", rows)
    _write_jsonl(out / "events.jsonl", manifests)
    return TalksArchive(out, tuple(videos), out / "queries.jsonl", out / "events.jsonl",
                        tuple(scripts), tuple(rows))


def _write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="folder to write the archive into")
    ap.add_argument("--videos", type=int, default=None, help="number of videos (1..16; default 6, --tiny 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true", help="TalksConfig.tiny(): short small videos, for tests")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    make = TalksConfig.tiny if args.tiny else TalksConfig
    over = {"seed": args.seed} | ({"n_videos": args.videos} if args.videos is not None else {})
    try:
        arc = make_talks_archive(args.out, make(**over))
    except GroundZeroError as e:
        raise SystemExit(f"error: {e}") from None
    print(json.dumps({"videos": len(arc.videos), "queries": len(arc.queries),
                      "queries_file": str(arc.queries_file)}))


if __name__ == "__main__":
    main()
