"""Speech recognition through the production loader, with a tiny random Whisper built offline
(tests/asr_model.py) and espeak-ng speech. Random weights say garbage: the tests check
structure (times inside the audio, word order, sources, options honoured), not words."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from groundzero.errors import ConfigError, ModelNotFoundError
from groundzero.indexer import asr
from groundzero.indexer.asr import check_asr_model, decode_audio, load_asr, transcribe
from groundzero.indexer.transcripts import TranscriptConfig, read_transcript
from tests import media
from tests.asr_model import tiny_whisper_dir

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory) -> Path:
    return tiny_whisper_dir(tmp_path_factory.mktemp("whisper"))


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> dict[str, Path]:
    """An espeak-ng sentence (about 3.8 s) as a wav, and in an mp4 whose audio starts 1 s late."""
    d = tmp_path_factory.mktemp("speech")
    wav = d / "speech.wav"
    text = "The quick brown fox jumps over the lazy dog. Hello world."
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
    late = d / "late.mp4"
    media._ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=5", "-itsoffset", "1.0", "-i", wav,
                  "-map", "0:v", "-map", "1:a", "-t", 6, *media.X264, "-c:a", "aac", late)
    mute = d / "mute.mp4"
    media._ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=5", "-t", 2, *media.X264, mute)
    return {"wav": wav, "late": late, "mute": mute}


def _duration(path: Path) -> float:
    r = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                        str(path)], check=True, capture_output=True, text=True)
    return float(r.stdout)


def _check_structure(segs, duration_sec: float) -> None:
    assert segs, "the tiny model transcribes something (garbage) from clear speech"
    for s in segs:
        assert s.source == "asr" and s.text == s.text.strip() and s.text
        assert 0 <= s.start_sec <= s.end_sec <= duration_sec + 1e-6
        assert 0.0 <= s.confidence <= 1.0
        assert s.words, "word times are asked for"
        starts = [w.start_sec for w in s.words]
        assert starts == sorted(starts)
        for a, b in zip(s.words, s.words[1:]):
            assert a.end_sec <= b.start_sec + 1e-6
        assert all(0 <= w.start_sec <= w.end_sec <= duration_sec + 1e-6 and 0 <= w.confidence <= 1
                   for w in s.words)
    starts = [s.start_sec for s in segs]
    assert starts == sorted(starts)


# ---------------------------------------------------------------- loading


def test_load_asr_is_cached_per_process(whisper_dir):
    m = load_asr(str(whisper_dir), "cpu", "int8")
    assert load_asr(str(whisper_dir), "cpu", "int8") is m
    assert m.model.is_multilingual  # the tiny model keeps Whisper's multilingual layout


def test_check_asr_model_accepts_the_converted_dir(whisper_dir):
    assert check_asr_model(str(whisper_dir)) == str(whisper_dir)


def test_missing_dir(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        check_asr_model(str(tmp_path / "nope"))


def test_transformers_checkpoint_says_how_to_convert(whisper_dir):
    hf = whisper_dir.parent / "hf"  # the unconverted checkpoint tiny_whisper_dir started from
    with pytest.raises(ModelNotFoundError) as e:
        load_asr(str(hf), "cpu", "int8")
    assert "transformers Whisper checkpoint" in str(e.value)
    assert f"ct2-transformers-converter --model {hf} --output_dir {hf}-ct2" in str(e.value)


def test_random_dir(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelNotFoundError, match="not a CTranslate2 Whisper model"):
        check_asr_model(str(tmp_path))


def test_a_file_is_not_a_model(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        check_asr_model(str(tmp_path / "model.bin"))


def test_other_ctranslate2_model(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"x")
    (tmp_path / "config.json").write_text(json.dumps({"bos_token": "<s>"}))
    with pytest.raises(ModelNotFoundError, match="not a Whisper one"):
        check_asr_model(str(tmp_path))


def test_converted_without_tokenizer(whisper_dir, tmp_path):
    d = tmp_path / "no-tok"
    shutil.copytree(whisper_dir, d)
    (d / "tokenizer.json").unlink()
    with pytest.raises(ModelNotFoundError, match="no tokenizer.json"):
        check_asr_model(str(d))


def test_uncached_hub_id_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(asr, "_cached_hub_dir", lambda model: None)
    with pytest.raises(ModelNotFoundError) as e:
        check_asr_model("Systran/faster-whisper-small")
    assert "HF_HUB_OFFLINE" in str(e.value) and "hf download Systran/faster-whisper-small" in str(e.value)
    with pytest.raises(ModelNotFoundError):
        load_asr("Systran/faster-whisper-small", "cpu", "int8")


def test_bare_name_is_not_a_hub_id():
    with pytest.raises(ModelNotFoundError, match="Systran/faster-whisper-small"):
        check_asr_model("small")


# ---------------------------------------------------------------- audio


def test_decode_audio_puts_sample_zero_at_zero_seconds(speech):
    audio = decode_audio(str(speech["late"]))
    assert audio.dtype == np.float32 and audio.ndim == 1
    first_sound_sec = np.argmax(np.abs(audio) > 1e-3) / asr.SAMPLE_RATE
    assert 0.9 < first_sound_sec < 1.2  # the audio starts 1 s into the file
    assert decode_audio(str(speech["mute"])).shape == (0,)


# ---------------------------------------------------------------- transcribe


def test_transcribe_speech(whisper_dir, speech, caplog):
    model = load_asr(str(whisper_dir), "cpu", "int8")
    with caplog.at_level(logging.INFO, logger="groundzero.indexer.asr"):
        segs = transcribe(model, str(speech["wav"]), beam_size=1, temperatures=(0.0,))
    _check_structure(segs, _duration(speech["wav"]))
    assert "(detected" in caplog.text


def test_language_is_honoured(whisper_dir, speech, caplog):
    model = load_asr(str(whisper_dir), "cpu", "int8")
    with caplog.at_level(logging.INFO, logger="groundzero.indexer.asr"):
        segs = transcribe(model, str(speech["wav"]), language="de", vad=False, beam_size=1,
                          temperatures=(0.0,))
    _check_structure(segs, _duration(speech["wav"]))
    assert "language de" in caplog.text and "(detected" not in caplog.text
    with pytest.raises(ConfigError) as e:
        transcribe(model, str(speech["wav"]), language="xx")
    assert e.value.field == "asr_language"


def test_video_without_audio_gives_nothing(whisper_dir, speech):
    assert transcribe(load_asr(str(whisper_dir), "cpu", "int8"), str(speech["mute"])) == []


@pytest.mark.slow  # the production decoding (beam 5, temperature fallback): 10-30 s on 2 cores
def test_read_transcript_falls_back_to_speech(whisper_dir, speech):
    cfg = TranscriptConfig(asr_model=str(whisper_dir), asr_compute_type="int8")
    segs, notes = read_transcript(str(speech["late"]), [], cfg, True, ())
    _check_structure(segs, _duration(speech["late"]))
    assert notes == []
