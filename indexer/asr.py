"""Speech recognition with faster-whisper: what is said in a video, where it has no captions.

Why faster-whisper (CTranslate2): int8 on CPU is several times faster than transformers'
Whisper at the same accuracy, it has a Silero voice-activity filter built in (silence and music
are skipped, not hallucinated over), and it gives word times.

A model is a CTranslate2 Whisper directory (``model.bin``, ``config.json``, ``vocabulary.*``,
``tokenizer.json``, ``preprocessor_config.json``) or a hub id of one, e.g.
``Systran/faster-whisper-small`` (:data:`SUGGESTED_MODEL`). A transformers checkpoint must be
converted first (the error says how). :func:`check_asr_model` checks cheaply, before a run
starts; :func:`load_asr` loads once per process; :func:`transcribe` returns segments with
``source="asr"``.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from groundzero.data.segments import TextSegment, Word
from groundzero.errors import ConfigError, DecodeError, ModelNotFoundError
from groundzero.indexer.probe import ffmpeg_error_line, require_tools

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

log = logging.getLogger(__name__)

#: a good default for users with network: 244M parameters, about 1x real time on 4 CPU cores
SUGGESTED_MODEL = "Systran/faster-whisper-small"
SAMPLE_RATE = 16_000  #: Hz, what Whisper listens at
#: CTranslate2 compute types; "auto" is int8 on CPU and float16 on CUDA
COMPUTE_TYPES = ("auto", "default", "int8", "int8_float32", "int8_float16", "int8_bfloat16",
                 "int16", "float16", "bfloat16", "float32")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_HUB_FILES = ["config.json", "preprocessor_config.json", "model.bin", "tokenizer.json", "vocabulary.*"]
_CONVERT = ("ct2-transformers-converter --model {d} --output_dir {d}-ct2 --quantization int8 "
            "--copy_files tokenizer.json preprocessor_config.json")
#: seconds ffmpeg may take to decode one video's audio track (hours of audio take seconds)
_AUDIO_TIMEOUT_S = 1800


def _offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return bool(constants.HF_HUB_OFFLINE) or env in ("1", "ON", "YES", "TRUE")


def check_model_dir(path: Path, name: str) -> Path:
    """``path`` if it is a CTranslate2 Whisper directory faster-whisper can load offline, else
    :class:`ModelNotFoundError` saying what it is and what to do."""
    if not path.exists():
        raise ModelNotFoundError(f"speech model {name}: the directory {path} does not exist; pass a "
                                 f"CTranslate2 Whisper directory or a hub id such as {SUGGESTED_MODEL}")
    if not path.is_dir():
        raise ModelNotFoundError(f"speech model {name}: {path} is a file, not a model directory; pass "
                                 "the directory holding model.bin, config.json and tokenizer.json")
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        config = None
    if not (path / "model.bin").is_file():
        hf_whisper = isinstance(config, dict) and (
            config.get("model_type") == "whisper"
            or any("Whisper" in a for a in config.get("architectures") or []))
        if hf_whisper:
            raise ModelNotFoundError(
                f"speech model {name}: {path} is a transformers Whisper checkpoint; faster-whisper "
                f"needs it converted to CTranslate2 first: {_CONVERT.format(d=path)}, then pass "
                f"{path}-ct2")
        raise ModelNotFoundError(f"speech model {name}: {path} is not a CTranslate2 Whisper model (it has "
                                 f"no model.bin); pass one, or a hub id such as {SUGGESTED_MODEL}")
    if not isinstance(config, dict) or "suppress_ids" not in config:
        raise ModelNotFoundError(f"speech model {name}: {path} is a CTranslate2 model but not a Whisper "
                                 "one (its config.json has no Whisper fields); pass a Whisper model "
                                 f"such as {SUGGESTED_MODEL}")
    if not (path / "tokenizer.json").is_file():
        raise ModelNotFoundError(
            f"speech model {name}: {path} has no tokenizer.json (faster-whisper would fetch one "
            "from the hub, which may not match); copy the tokenizer.json of the model it was "
            "converted from into it, or reconvert with --copy_files tokenizer.json "
            "preprocessor_config.json")
    return path


def _cached_hub_dir(model: str) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(model, allow_patterns=_HUB_FILES, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        return None


def _hub_problem(model: str, e: Exception) -> ModelNotFoundError:
    return ModelNotFoundError(f"speech model {model}: not found on the hub or not reachable "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                              f"check the id (e.g. {SUGGESTED_MODEL}) and the network, or pass a "
                              "local CTranslate2 Whisper directory")


def _is_local(model: str) -> bool:
    return os.path.exists(os.path.expanduser(model)) or not _HUB_ID.match(model) or model.startswith(
        (".", "/", "~"))


def check_asr_model(model: str) -> str:
    """Check, without loading it, that ``model`` (a local directory or hub id) can be loaded;
    return where it is ("/path/to/dir", or "hub id X (cached)" / "(to download)").

    A hub id that is not cached is looked up on the hub (a metadata request, no download), or
    refused when offline (``HF_HUB_OFFLINE=1``). Raises :class:`ModelNotFoundError`.
    """
    if _is_local(model):
        return str(check_model_dir(Path(model).expanduser(), model))
    cached = _cached_hub_dir(model)
    if cached is not None:
        check_model_dir(cached, model)
        return f"hub id {model} (cached at {cached})"
    if _offline():
        raise ModelNotFoundError(
            f"speech model {model}: not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
            f"download it once with network ('hf download {model}') or pass a local CTranslate2 "
            f"Whisper directory (if {model} is meant as one: it does not exist)")
    from huggingface_hub import file_exists

    try:
        found = file_exists(model, "model.bin")
    except Exception as e:  # noqa: BLE001 -- network, auth, bad id: the run cannot load it
        raise _hub_problem(model, e) from None
    if not found:
        raise ModelNotFoundError(f"speech model {model}: the hub repository has no model.bin, so it "
                                 f"is not a CTranslate2 Whisper model; use one such as {SUGGESTED_MODEL}")
    return f"hub id {model} (to download)"


def resolve_model_dir(model: str) -> Path:
    """The local CTranslate2 Whisper directory of ``model``, downloading a hub id if needed (and
    allowed). Raises :class:`ModelNotFoundError`."""
    if _is_local(model):
        return check_model_dir(Path(model).expanduser(), model)
    check_asr_model(model)  # offline and not cached, or not on the hub: refused here
    cached = _cached_hub_dir(model)
    if cached is None:
        from huggingface_hub import snapshot_download

        log.info("downloading speech model %s", model)
        try:
            cached = Path(snapshot_download(model, allow_patterns=_HUB_FILES))
        except Exception as e:  # noqa: BLE001 -- network, disk, auth: the run cannot load it
            raise _hub_problem(model, e) from None
    return check_model_dir(cached, model)


def resolve_compute_type(device: str, compute_type: str) -> str:
    """``compute_type`` with "auto" made concrete: int8 on CPU, float16 on CUDA; on device "auto"
    it stays "auto" (CTranslate2 then picks the fastest type the device it chose supports)."""
    if compute_type != "auto" or device == "auto":
        return compute_type
    return "int8" if device == "cpu" else "float16"


def _split_device(device: str) -> tuple[str, int]:
    """``"cuda:1"`` -> ("cuda", 1); ``"cpu"`` -> ("cpu", 0)."""
    kind, _, index = device.partition(":")
    return kind, int(index) if index else 0


@functools.lru_cache(maxsize=2)
def load_asr(model: str, device: str = "cpu", compute_type: str = "auto",
             cpu_threads: int = 0) -> WhisperModel:
    """The faster-whisper model ``model`` (a local CTranslate2 Whisper directory or a hub id),
    loaded once per process and argument set (the per-process model cache).

    device: "cpu", "cuda", "cuda:N" or "auto"; compute_type: one of :data:`COMPUTE_TYPES`;
    cpu_threads: threads on CPU (0: faster-whisper's default of 4, or ``OMP_NUM_THREADS``).
    Raises :class:`ModelNotFoundError`, and :class:`ConfigError` for a device or compute type
    this machine cannot run.
    """
    from faster_whisper import WhisperModel

    path = resolve_model_dir(model)
    kind, index = _split_device(device)
    ctype = resolve_compute_type(kind, compute_type)
    try:
        loaded = WhisperModel(str(path), device=kind, device_index=index, compute_type=ctype,
                              cpu_threads=cpu_threads)
    except ValueError as e:  # CTranslate2: unsupported compute type on this device
        raise ConfigError(f"asr_compute_type {ctype!r} cannot run on {device} ({e}); use 'auto' or "
                          "int8 on CPU", field="asr_compute_type") from None
    except RuntimeError as e:
        if "CUDA" in str(e) or "cuda" in str(e):
            raise ConfigError(f"asr_device {device!r}: {e}; use 'cpu' on a machine without a GPU",
                              field="asr_device") from None
        raise ModelNotFoundError(f"speech model {model}: {path} could not be loaded ({e}); it may be "
                                 "damaged or from a newer CTranslate2: download or convert it again"
                                 ) from None
    log.info("speech model %s loaded from %s (%s, %s)", model, path, device, ctype)
    return loaded


def decode_audio(path: str, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The first audio stream of ``path`` as mono float32 samples at ``sample_rate`` Hz, shape
    (N,), sample 0 at 0 s of the file; empty when the file has no audio stream. Raises :class:`DecodeError` (``decode_failed``)
    when ffmpeg cannot decode it."""
    tools = require_tools()
    # aresample first_pts=0: an audio stream that starts late (or early) is padded (or trimmed)
    # so that sample 0 is at 0 s of the file, the clock of the frames and the captions
    cmd = [tools["ffmpeg"], "-nostdin", "-v", "error", "-i", path, "-map", "0:a:0", "-vn", "-sn",
           "-dn", "-ac", "1", "-ar", str(sample_rate), "-af", "aresample=async=1:first_pts=0",
           "-f", "f32le", "pipe:1"]
    try:
        r = subprocess.run(cmd, check=False, capture_output=True, stdin=subprocess.DEVNULL,
                           timeout=_AUDIO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DecodeError("decode_failed", f"{path}: decoding its audio took over {_AUDIO_TIMEOUT_S} s; "
                                           "check the file (a stalled mount?)") from None
    err = r.stderr.decode(errors="replace")
    if r.returncode != 0:
        if "matches no streams" in err:
            return np.zeros(0, dtype=np.float32)
        raise DecodeError("decode_failed", f"{path}: its audio could not be decoded "
                                           f"({ffmpeg_error_line(err)}); re-encode the audio "
                                           f"(ffmpeg -i {path} -c:v copy -c:a aac fixed.mp4)")
    return np.frombuffer(r.stdout, dtype=np.float32).copy()


def _clip(t: float, duration_sec: float) -> float:
    return min(max(float(t), 0.0), duration_sec)


#: decoding temperatures: greedy / beam search first, sampling at rising temperatures for a
#: window whose text looks wrong (repetitive or improbable); faster-whisper's default
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def transcribe(model: WhisperModel, audio_path: str, language: str | None = None, vad: bool = True,
               *, beam_size: int = 5, temperatures: Sequence[float] = TEMPERATURES
               ) -> list[TextSegment]:
    """What is said in the audio of ``audio_path`` (a video or audio file), as segments with
    ``source="asr"``, word times, and confidence exp(mean token log-probability) in [0, 1].

    language: an ISO code the model knows ("en", "de", ...); None: detected from the first
    30 s. vad: skip non-speech with the Silero filter. beam_size: 1 is greedy (faster);
    temperatures: (0.0,) never re-decodes a window (faster, more repetitions). Times are clipped to the audio's
    duration. A file without audio gives []. Raises :class:`ConfigError` (unknown language),
    :class:`DecodeError` (audio that ffmpeg cannot decode).
    """
    if language is not None and language not in model.supported_languages:
        raise ConfigError(f"asr_language {language!r} is not a language this speech model knows; "
                          f"use one of {', '.join(model.supported_languages[:12])}, ... or leave it "
                          "unset to detect it", field="asr_language")
    audio = decode_audio(audio_path)
    duration_sec = len(audio) / SAMPLE_RATE
    if len(audio) == 0:
        return []
    # condition_on_previous_text=False: on long archives, conditioning lets one misheard passage
    # repeat itself for minutes; each 30 s window is decoded on its own instead
    pieces, info = model.transcribe(audio, language=language, vad_filter=vad, word_timestamps=True,
                                    beam_size=beam_size, temperature=list(temperatures),
                                    condition_on_previous_text=False)
    out: list[TextSegment] = []
    for p in pieces:  # a generator: decoding happens here
        text = p.text.strip()
        if not text:
            continue
        start = _clip(p.start, duration_sec)
        end = max(start, _clip(p.end, duration_sec))
        words: list[Word] = []
        for w in p.words or ():
            w_start = max(_clip(w.start, duration_sec), words[-1].end_sec if words else start)
            w_end = max(w_start, _clip(w.end, duration_sec))
            words.append(Word(start_sec=w_start, end_sec=w_end, text=w.word.strip(),
                              confidence=min(max(float(w.probability), 0.0), 1.0)))
        out.append(TextSegment(start_sec=start, end_sec=end, text=text, source="asr",
                               confidence=min(max(math.exp(p.avg_logprob), 0.0), 1.0),
                               words=tuple(words)))
    log.info("%s: %d speech segments, language %s%s", audio_path, len(out), info.language,
             "" if language else f" (detected, p={info.language_probability:.2f})")
    return out
