"""groundzero.synthetic.talks: the lecture / deposition archive with known answers (speech,
captions, slides, cutaways). A 2-video tiny archive made once (real espeak-ng and ffmpeg),
probed with ffprobe and decoded back; scripts alone (no media) for the answer checks."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from groundzero.data.annotations import read_qvhighlights
from groundzero.errors import ConfigError, GroundZeroError
from groundzero.synthetic import talks_script as ts
from groundzero.synthetic.render import render_frame
from groundzero.synthetic.talks import (
    KINDS,
    TalksConfig,
    check_answers,
    main,
    make_scripts,
    make_talks_archive,
)
from groundzero.synthetic.talks_media import cue_text, subtitles
from groundzero.synthetic.vocabulary import COLOURS, SHAPES

needs_tools = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None,
    reason="needs espeak-ng and ffmpeg on PATH",
)
TINY = TalksConfig.tiny(seed=1)  # lecture_0000 (+ .srt sidecar), deposition_0001 (mov_text)
SRT_CUE = re.compile(r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})\n(.+)\n")


class FakeSpeech:
    """Stands in for talks_media.Speech when only scripts are needed: 0.3 s a word."""

    def duration_sec(self, text: str, voice: str) -> float:
        return 0.3 * len(ts.words(text))


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    def sec(h: str, m: str, s: str, ms: str) -> float:
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    return [(sec(*m.groups()[1:5]), sec(*m.groups()[5:9]), m.group(10)) for m in SRT_CUE.finditer(text)]


def ffprobe_streams(path: Path) -> list[str]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name",
                          "-of", "csv=p=0", str(path)], check=True, capture_output=True, text=True)
    return out.stdout.split()


def manifests(out: Path) -> dict[str, dict]:
    return {m["vid"]: m for m in map(json.loads, (out / "events.jsonl").read_text().splitlines())}


def utterance_times(m: dict) -> list[tuple[float, float]]:
    return [(u["start_sec"], u["end_sec"]) for u in m["utterances"]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    if shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None:
        pytest.skip("needs espeak-ng and ffmpeg on PATH")
    out = tmp_path_factory.mktemp("talks")
    return out, make_talks_archive(out, TINY)


# ---------------------------------------------------------------- scripts and answers (no media)


def test_vocabularies_keep_answers_apart():
    demo = set(COLOURS) | set(SHAPES) | {"moving", "left", "right", "up", "down", "still"}
    used = [*ts.TERMS, *ts.COURSES, *ts.LECTURERS, *ts.GENERIC_TITLES, *ts.BULLETS, *ts.LECTURE_FILLER,
            *ts.WITNESSES, *ts.COUNSEL, *ts.PEOPLE, *ts.CITIES, *ts.GOODS, *ts.COMPANIES,
            *ts.DOCUMENTS, *ts.MONTHS, *(x for pair in ts.DEPOSITION_FILLER for x in pair),
            *(x for t in ts.FACT_TEMPLATES for x in t[:2]), *ts.EXHIBIT_Q, *ts.EXHIBIT_A,
            *(x for t in (*ts.SPEECH_TEMPLATES, *ts.MULTI_TEMPLATES) for x in t[:1])]
    used_words = {w for text in used for w in ts.words(text)}
    assert not used_words & demo  # picture queries are found only in the picture
    assert not {w for a in ts.ABSENT for w in ts.words(a)} & used_words  # not-found words: nowhere
    for pool in (ts.PEOPLE, ts.CITIES, ts.GOODS, ts.COMPANIES):  # key pools: no shared words
        flat = [w for x in pool for w in ts.words(x)]
        assert len(flat) == len(set(flat))


@pytest.mark.parametrize("seed,kw", [(0, {"n_videos": 16}), (1, {"n_videos": 16}),
                                     (2, {"speech_per_video": 3, "slide_per_video": 2, "multi_per_video": 2})])
def test_answers_are_unique_in_the_right_channel(seed, kw):
    cfg = TalksConfig(seed=seed, **kw)
    scripts = make_scripts(cfg, FakeSpeech())  # type: ignore[arg-type]
    rows = check_answers(scripts, {s.vid: True for s in scripts})  # raises on any clash
    assert {r["kind"] for r in rows} == set(KINDS)
    for r in rows:
        want = [[r["vid"], *w] for w in r["relevant_windows"]]
        assert r["corpus_windows"] == want
        assert all(0 <= a < b <= r["duration"] for a, b in r["relevant_windows"])
    for s in scripts:
        assert all(0 <= u.start_sec < u.end_sec <= s.duration_sec for u in s.utterances)
        if s.kind == "lecture":  # slides tile the lecture except the cutaways
            spans = sorted([(x.start_sec, x.end_sec) for x in s.slides]
                           + [(e.start_sec, e.end_sec) for e in s.pictures])
            assert spans[0][0] == 0.0 and spans[-1][1] == s.duration_sec
            assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))


def test_check_answers_refuses_a_key_said_twice():
    scripts = make_scripts(TalksConfig(seed=0, n_videos=2), FakeSpeech())  # type: ignore[arg-type]
    lec = scripts[0]
    speech = next(t for t in lec.targets if t.kind == "speech")
    echo = ts.Utterance(0.0, 0.1, "lecturer", "x", " ".join(speech.keys), "en-us")
    clash = ts.TalkScript(lec.vid, lec.kind, lec.duration_sec, (*lec.utterances, echo), lec.slides,
                          lec.pictures, lec.targets, lec.speakers)
    with pytest.raises(GroundZeroError, match="found in"):
        check_answers([clash, scripts[1]], {s.vid: True for s in scripts})


def test_captions_carry_speaker_labels():
    scripts = make_scripts(TalksConfig(seed=0, n_videos=2), FakeSpeech())  # type: ignore[arg-type]
    lec, dep = scripts
    vtt = subtitles(lec, "vtt")
    assert vtt.startswith("WEBVTT\n\n") and f"<v {lec.speakers['lecturer']}>" in vtt
    assert cue_text(lec.utterances[0], "srt").startswith(lec.speakers["lecturer"].split()[-1].upper() + ": ")
    assert {cue_text(u, "srt")[:3] for u in dep.utterances} == {"Q: ", "A: "}


@pytest.mark.parametrize("field,value", [("n_videos", 0), ("captions", ("srt", "dvd")),
                                         ("video_sec", (90.0, 60.0)), ("size", (641, 360))])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field) as err:
        TalksConfig(**{field: value})
    assert err.value.field == field


# ---------------------------------------------------------------- the tiny archive, end to end


def test_files_and_streams(tiny):
    out, arc = tiny
    assert [p.relative_to(out).as_posix() for p in arc.videos] == [
        "videos/lecture_0000.mp4", "videos/deposition_0001.mp4"]
    assert (out / "videos/lecture_0000.srt").is_file() and (out / "talks_config.json").is_file()
    assert not (out / "videos/deposition_0001.srt").exists()
    assert ffprobe_streams(arc.videos[0]) == ["h264", "aac"]  # captions in the sidecar
    assert ffprobe_streams(arc.videos[1]) == ["h264", "aac", "mov_text"]
    m = manifests(out)
    for video in arc.videos:
        dur = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                              "csv=p=0", str(video)], check=True, capture_output=True, text=True)
        assert float(dur.stdout) == pytest.approx(m[video.stem]["duration"], abs=0.1)
    assert not list(out.glob("tmp*"))  # the work folder is gone


def test_sidecar_and_stream_captions_match_utterances(tiny):
    out, _ = tiny
    m = manifests(out)
    lec = m["lecture_0000"]
    cues = parse_srt((out / lec["captions"]["file"]).read_text())
    assert [(a, b) for a, b, _ in cues] == utterance_times(lec)
    assert all(text.endswith(u["text"]) for (_, _, text), u in zip(cues, lec["utterances"]))
    embedded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out / m["deposition_0001"]["file"]),
                               "-map", "0:s:0", "-f", "srt", "-"], check=True, capture_output=True, text=True)
    cues = parse_srt(embedded.stdout)
    assert [(a, b) for a, b, _ in cues] == utterance_times(m["deposition_0001"])
    assert [t[0] for _, _, t in cues] == [u["role"] for u in m["deposition_0001"]["utterances"]]


def test_subtitle_reader_if_present(tiny):
    subs = pytest.importorskip("groundzero.data.subtitles")  # being written elsewhere
    out, _ = tiny
    lec = manifests(out)["lecture_0000"]
    segs = subs.read_subtitles(out / lec["captions"]["file"])
    got = [x for s in segs for x in (s.start_sec, s.end_sec)]
    assert got == pytest.approx([x for span in utterance_times(lec) for x in span])


def test_speech_is_heard_when_the_script_says(tiny):
    out, arc = tiny
    m = manifests(out)["deposition_0001"]
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", str(arc.videos[1]), "-map", "0:a", "-ac", "1",
                          "-ar", "8000", "-f", "s16le", "-"], check=True, capture_output=True).stdout
    x = np.abs(np.frombuffer(pcm, np.int16).astype(np.float64))

    def loudness(a: float, b: float) -> float:
        return float(x[int(a * 8000): int(b * 8000)].mean())

    times = utterance_times(m)
    gaps = [(b + 0.1, c - 0.1) for (_, b), (c, _) in itertools.pairwise(times) if c - b > 0.4]
    assert gaps
    quiet = max(loudness(a, b) for a, b in gaps)
    assert all(loudness(a, b) > 10 * max(quiet, 1.0) for a, b in times)


def test_queries_file(tiny):
    out, _ = tiny
    rows = [json.loads(line) for line in (out / "queries.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in rows} == set(KINDS)
    assert len({r["qid"] for r in rows}) == len(rows)
    assert [q.qid for q in read_qvhighlights(out / "queries.jsonl")] == [r["qid"] for r in rows]
    durations = {m["vid"]: m["duration"] for m in manifests(out).values()}
    for r in rows:
        assert r["duration"] == durations[r["vid"]]
        assert all(0 <= a < b <= r["duration"] for a, b in r["relevant_windows"])
        assert r["corpus_windows"] == [[r["vid"], *w] for w in r["relevant_windows"]]
        assert (r["kind"] == "not_found") == (r["relevant_windows"] == [])
    speech = next(r for r in rows if r["kind"] == "speech")
    utt = speech["evidence"][0]
    assert utt["window"] == speech["relevant_windows"][0] and set(speech["keys"]) <= set(ts.words(utt["text"]))
    assert len(set(ts.words(speech["query"])) & set(ts.words(utt["text"])) - {"the", "a", "in"}) >= 2


def test_cutaway_is_the_demo_scene(tiny):
    out, arc = tiny
    e = arc.scripts[0].pictures[0]
    assert manifests(out)["lecture_0000"]["pictures"][0] == e.to_json()
    t = round((e.start_sec + e.end_sec) / 2 * TINY.fps) / TINY.fps
    w, h = TINY.size
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(arc.videos[0]), "-vf",
                          f"select=eq(n\\,{round(t * TINY.fps)})", "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], check=True, capture_output=True).stdout
    frame = np.frombuffer(raw, np.uint8).reshape(h, w, 3).astype(int)
    assert np.abs(frame - render_frame([e], t, TINY.size).astype(int)).mean() < 6


def test_same_seed_same_bytes_through_the_cli(tiny, tmp_path, capsys):
    out, _ = tiny
    main(["--out", str(tmp_path), "--tiny", "--seed", "1"])
    assert json.loads(capsys.readouterr().out)["videos"] == 2
    for name in ("queries.jsonl", "events.jsonl", "videos/lecture_0000.srt"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes()


@pytest.mark.slow
@needs_tools
def test_vtt_mkv_and_uncaptioned_videos(tmp_path):
    cfg = TalksConfig.tiny(seed=2, n_videos=3, captions=("vtt", "mkv", "none"))
    arc = make_talks_archive(tmp_path, cfg)
    assert [p.name for p in arc.videos] == ["lecture_0000.mp4", "deposition_0001.mkv", "lecture_0002.mp4"]
    m = manifests(tmp_path)
    vtt = (tmp_path / "videos/lecture_0000.vtt").read_text()
    stamps = re.findall(r"(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})", vtt)
    got = [tuple(round(int(g[0 + k]) * 3600 + int(g[1 + k]) * 60 + int(g[2 + k]) + int(g[3 + k]) / 1000, 3)
                 for k in (0, 4)) for g in stamps]
    assert got == utterance_times(m["lecture_0000"])
    assert ffprobe_streams(arc.videos[1]) == ["h264", "aac", "subrip"]
    assert ffprobe_streams(arc.videos[2]) == ["h264", "aac"] and m["lecture_0002"]["captions"] == {"mode": "none"}
    assert not list((tmp_path / "videos").glob("lecture_0002.*t"))  # no sidecar
    rows = [json.loads(line) for line in (tmp_path / "queries.jsonl").read_text().splitlines()]
    assert all(r["sources"] == ["asr"] for r in rows if r["vid"] == "lecture_0002" and r["kind"] == "speech")
