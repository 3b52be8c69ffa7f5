"""What is said: sidecar subtitles, subtitle streams in mp4 / mkv, the notes when a source fails
or nothing is there, on real files made with ffmpeg. Speech recognition: tests/indexer/test_asr.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from groundzero.errors import ConfigError, SubtitleError
from groundzero.indexer.probe import probe
from groundzero.indexer.transcripts import (
    TranscriptConfig,
    read_stream_subtitles,
    read_transcript,
    sidecars_for,
)
from tests import media

SRT = "1\n00:00:00,500 --> 00:00:01,500\nINSIDE: from the container\n\n2\n00:00:02,000 --> 00:00:03,000\nsecond cue\n"
SIDECAR = "1\n00:00:01,000 --> 00:00:02,000\nfrom the sidecar\n"
NO_MODEL = "no captions and no speech model (--asr-model): nothing said is indexed for this video"
NO_AUDIO = "no captions and the video has no audio: nothing said is indexed for this video"


def make_video(path: Path, *, audio: bool = True, subtitles: str | None = None,
               sub_codec: str = "mov_text", seconds: float = 4) -> Path:
    """A 160x120 testsrc2 video, with a 440 Hz tone and an embedded subtitle stream if asked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    args = ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=5"]
    maps = ["-map", "0:v"]
    n = 1
    if audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000"]
        maps += ["-map", f"{n}:a"]
        n += 1
    if subtitles is not None:
        sub = path.with_name(path.stem + "-embedded.srt")
        sub.write_text(subtitles)
        args += ["-i", str(sub)]
        maps += ["-map", f"{n}:s"]
    media._ffmpeg(*args, *maps, "-t", seconds, *media.X264, *(["-c:a", "aac"] if audio else []),
                  *(["-c:s", sub_codec] if subtitles is not None else []), path)
    return path


def video_start_sec(path: Path) -> float:
    r = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                        "stream=start_time", "-of", "csv=p=0", str(path)],
                       check=True, capture_output=True, text=True)
    return float(r.stdout.strip())


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    return {"mp4": make_video(d / "movtext.mp4", subtitles=SRT),
            "mkv": make_video(d / "srt.mkv", subtitles=SRT, sub_codec="srt"),
            "ass": make_video(d / "ass.mkv", subtitles=SRT, sub_codec="ass"),
            "plain": make_video(d / "plain.mp4"),
            "mute": make_video(d / "mute.mp4", audio=False)}


# ---------------------------------------------------------------- probe


def test_probe_reports_audio_and_subtitle_streams(videos):
    mp4, mute = probe(str(videos["mp4"])), probe(str(videos["mute"]))
    assert mp4.has_audio and mp4.subtitle_streams == (2,)
    assert not mute.has_audio and mute.subtitle_streams == ()
    assert probe(str(videos["plain"])).subtitle_streams == ()


# ---------------------------------------------------------------- subtitle streams


@pytest.mark.parametrize("kind", ["mp4", "mkv", "ass"])
def test_subtitle_stream_read_with_ffmpeg(videos, kind):
    info = probe(str(videos[kind]))
    segs = read_stream_subtitles(str(videos[kind]), info.subtitle_streams[0])
    # times on the file's clock, as the frames': the mkv muxer starts the picture (and the cues
    # with it) late to make room for the AAC priming samples (64 ms with ffmpeg 5.1)
    shift = video_start_sec(videos[kind])
    assert [(s.start_sec - shift, s.end_sec - shift, s.text, s.speaker) for s in segs] == [
        (pytest.approx(0.5), pytest.approx(1.5), "from the container", "INSIDE"),
        (pytest.approx(2.0), pytest.approx(3.0), "second cue", "")]


def test_stream_ffmpeg_cannot_read_raises_subtitle_error(videos):
    with pytest.raises(SubtitleError) as e:
        read_stream_subtitles(str(videos["plain"]), 7)
    assert e.value.reason == "unreadable" and "subtitle stream 7" in str(e.value)


# ---------------------------------------------------------------- sidecars


def test_sidecars_for_order_and_what_is_not_one(tmp_path):
    video = tmp_path / "talk.mp4"
    video.write_bytes(b"x")
    for name in ["talk.vtt", "talk.SRT", "talk.en.srt", "talk.pt-BR.vtt", "talk.en.forced.srt",
                 "talk.de.sdh.srt", "talk.part2.srt", "talk2.srt", "talk.en.txt", "other.srt"]:
        (tmp_path / name).write_text(SIDECAR)
    (tmp_path / "talk.fr.srt").mkdir()  # a folder is not a sidecar
    assert [Path(p).name for p in sidecars_for(video)] == [
        "talk.SRT", "talk.vtt", "talk.de.sdh.srt", "talk.en.srt", "talk.pt-BR.vtt", "talk.en.forced.srt"]
    assert sidecars_for(tmp_path / "missing-dir" / "v.mp4") == []


def test_sidecar_wins_over_the_stream(videos, tmp_path):
    side = tmp_path / "movtext.srt"
    side.write_text(SIDECAR)
    info = probe(str(videos["mp4"]))
    segs, notes = read_transcript(str(videos["mp4"]), [str(side)], TranscriptConfig(), info.has_audio,
                                  info.subtitle_streams)
    assert [s.text for s in segs] == ["from the sidecar"] and notes == []


def test_malformed_sidecar_noted_then_next_source(videos, tmp_path):
    bad = tmp_path / "bad.srt"
    bad.write_text("1\n00:00:05,000 --> 00:00:01,000\nbackwards\n")
    latin = tmp_path / "latin.vtt"
    latin.write_bytes("WEBVTT\n\n00:01.000 --> 00:02.000\nCaf\u00e9\n".encode("latin-1"))
    info = probe(str(videos["mkv"]))
    segs, notes = read_transcript(str(videos["mkv"]), [str(bad), str(latin)], TranscriptConfig(),
                                  info.has_audio, info.subtitle_streams)
    assert [s.text for s in segs] == ["from the container", "second cue"]
    assert segs[0].start_sec == pytest.approx(0.5 + video_start_sec(videos["mkv"]))  # file's clock
    assert len(notes) == 2
    assert notes[0].startswith(f"captions: {bad} line 2: the cue ends (00:00:01,000) before it starts")
    assert notes[1].startswith(f"captions: {latin} line 4: byte 0xe9 is not UTF-8")


def test_unreadable_stream_noted_then_the_next_stream(videos):
    segs, notes = read_transcript(str(videos["mp4"]), [], TranscriptConfig(), True, (7, 2))
    assert [s.text for s in segs] == ["from the container", "second cue"]
    assert len(notes) == 1 and notes[0].startswith(f"captions: {videos['mp4']} subtitle stream 7 could not")


def test_empty_sidecar_noted(videos, tmp_path):
    empty = tmp_path / "empty.srt"
    empty.write_text("")
    segs, notes = read_transcript(str(videos["plain"]), [str(empty)], TranscriptConfig(), True, ())
    assert segs == [] and notes == [f"captions: {empty} holds no cue with text; skipped", NO_MODEL]


# ---------------------------------------------------------------- nothing to read


def test_no_captions_no_model(videos):
    assert read_transcript(str(videos["plain"]), [], TranscriptConfig(), True, ()) == ([], [NO_MODEL])


def test_no_captions_and_no_audio_does_not_load_the_model(videos):
    cfg = TranscriptConfig(asr_model="/nonexistent/model")  # would raise if it were loaded
    segs, notes = read_transcript(str(videos["mute"]), [], cfg, False, ())
    assert segs == [] and notes == [NO_AUDIO]


def test_captions_off_skips_sidecars_and_streams(videos, tmp_path):
    side = tmp_path / "s.srt"
    side.write_text(SIDECAR)
    segs, notes = read_transcript(str(videos["mp4"]), [str(side)], TranscriptConfig(captions=False),
                                  True, (2,))
    assert segs == [] and notes == [NO_MODEL]


# ---------------------------------------------------------------- config


@pytest.mark.parametrize("kwargs,field", [
    ({"asr_device": "gpu"}, "asr_device"), ({"asr_compute_type": "int4"}, "asr_compute_type"),
    ({"asr_language": "English"}, "asr_language"), ({"asr_model": " "}, "asr_model")])
def test_config_refuses_bad_values(kwargs, field):
    with pytest.raises(ConfigError) as e:
        TranscriptConfig(**kwargs)
    assert e.value.field == field and field in str(e.value)


def test_config_accepts_cuda_index():
    assert TranscriptConfig(asr_device="cuda:1", asr_compute_type="int8_float16").asr_device == "cuda:1"


def test_sidecar_key_is_a_name_rule():
    from groundzero.indexer.transcripts import sidecar_key

    assert sidecar_key("a.b.mp4", "a.b.srt") is not None  # the stem keeps its dots
    assert sidecar_key("a.mp4", "a.b.srt") is None  # "b" is not a language: another video's
    assert sidecar_key("a.mp4", "a.eng.srt") < sidecar_key("a.mp4", "a.en.forced.srt")
    assert sidecar_key("a.mp4", "a.mp4") is None
