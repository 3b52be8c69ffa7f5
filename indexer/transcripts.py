"""What is said in a video, from the best source it has.

In order, the first that gives cues wins:

1. **sidecar subtitles**: ``.srt`` / ``.vtt`` files beside the video (:func:`sidecars_for`);
2. **subtitle streams** inside the container (mov_text in mp4, SRT / ASS in mkv, ...), read
   with ffmpeg as SRT;
3. **speech recognition** (:mod:`groundzero.indexer.asr`), when a model is configured and the
   video has audio;
4. nothing: a note says so.

A source that fails (a malformed file, a picture-based subtitle stream) adds a note for the
catalog and the next source is tried; the video itself never fails here.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from groundzero.data.segments import TextSegment
from groundzero.data.subtitles import decode_text, parse_srt, read_subtitles
from groundzero.errors import ConfigError, DecodeError, SubtitleError
from groundzero.indexer.asr import COMPUTE_TYPES, load_asr, transcribe
from groundzero.indexer.probe import ffmpeg_error_line, require_tools

log = logging.getLogger(__name__)

SUBTITLE_EXTENSIONS = (".srt", ".vtt")  #: sidecar extensions, in order of preference
#: one dotted tag between a video's stem and a sidecar's extension: a language (``en``,
#: ``eng``, ``pt-BR``, ``zh_Hans``) or a flag (``forced``, ``sdh``, ``cc``, ``hi``)
_TAG = re.compile(r"^(?:[a-z]{2,3}(?:[-_][a-z0-9]{2,8})?|forced|sdh|cc|hi|default)$", re.IGNORECASE)
_STREAM_TIMEOUT_S = 600  #: seconds ffmpeg may take to read one subtitle stream
_DEVICE = re.compile(r"^(cpu|auto|cuda(:\d+)?)$")


@dataclass(frozen=True)
class TranscriptConfig:
    """How an index run reads what is said in each video."""

    #: speech model: hub id (e.g. "Systran/faster-whisper-small") or local CTranslate2 Whisper
    #: directory; None: no speech recognition (captions only)
    asr_model: str | None = None
    asr_language: str | None = None  #: ISO code ("en"); None: detected per video
    asr_device: str = "cpu"  #: "cpu", "cuda", "cuda:N" or "auto"
    #: CTranslate2 compute type; "auto": int8 on CPU, float16 on CUDA
    asr_compute_type: str = "auto"
    vad: bool = True  #: skip non-speech (Silero voice-activity filter) before recognition
    captions: bool = True  #: read sidecar subtitles and subtitle streams

    def __post_init__(self) -> None:
        if self.asr_model is not None and not self.asr_model.strip():
            raise ConfigError("asr_model is empty; give a hub id or directory, or leave it unset",
                              field="asr_model")
        if not _DEVICE.match(self.asr_device):
            raise ConfigError(f"asr_device must be cpu, cuda, cuda:N or auto, got {self.asr_device!r}",
                              field="asr_device")
        if self.asr_compute_type not in COMPUTE_TYPES:
            raise ConfigError(f"asr_compute_type must be one of {', '.join(COMPUTE_TYPES)}, got "
                              f"{self.asr_compute_type!r}", field="asr_compute_type")
        if self.asr_language is not None and not re.match(r"^[a-z]{2,3}$", self.asr_language):
            raise ConfigError(f"asr_language must be an ISO 639-1 code such as 'en', got "
                              f"{self.asr_language!r}; leave it unset to detect the language",
                              field="asr_language")


def sidecar_key(video_name: str, subtitle_name: str) -> tuple | None:
    """Where the file ``subtitle_name`` ranks among the sidecars of the video ``video_name``
    (both bare file names, no folder; smaller first), or None when it is not one of its sidecars.

    ``stem.srt``, ``stem.vtt``, then language- or flag-tagged ones (``stem.en.srt``,
    ``stem.pt-BR.vtt``, ``stem.en.sdh.srt``) by name, with ``forced`` ones (which only cover
    foreign-language lines) last. Extensions match case-insensitively. A name-only rule, so the
    archive listing (local or S3) can use it too.
    """
    stem = os.path.splitext(video_name)[0]
    base, ext = os.path.splitext(subtitle_name)
    if ext.lower() not in SUBTITLE_EXTENSIONS:
        return None
    rank = SUBTITLE_EXTENSIONS.index(ext.lower())
    if base == stem:
        return (0, False, "", rank)
    if not base.startswith(stem + "."):
        return None
    tags = base[len(stem) + 1:].split(".")
    if not (1 <= len(tags) <= 2 and all(_TAG.match(t) for t in tags)):
        return None
    return (1, any(t.lower() == "forced" for t in tags), base.lower(), rank)


def sidecars_for(video_path: str | Path) -> list[str]:
    """Paths of the subtitle files beside a local video, best first (:func:`sidecar_key`);
    [] when there are none or the folder cannot be listed."""
    video = Path(video_path)
    try:
        entries = [e for e in os.scandir(video.parent) if e.is_file()]
    except OSError:
        return []
    keyed = [(key, e.path) for e in entries if (key := sidecar_key(video.name, e.name)) is not None]
    return [path for _, path in sorted(keyed)]


def read_stream_subtitles(video_path: str, stream_index: int) -> list[TextSegment]:
    """Cues of the subtitle stream ``stream_index`` (ffprobe's index, as in ``-map 0:N``) of a
    video, converted to SRT by ffmpeg. Raises :class:`SubtitleError` (``unreadable`` when ffmpeg
    cannot convert it, e.g. a picture-based stream; else as the SRT parser)."""
    tools = require_tools()
    name = f"{video_path} subtitle stream {stream_index}"
    cmd = [tools["ffmpeg"], "-nostdin", "-v", "error", "-i", video_path, "-map", f"0:{stream_index}",
           "-f", "srt", "pipe:1"]
    try:
        r = subprocess.run(cmd, check=False, capture_output=True, stdin=subprocess.DEVNULL,
                           timeout=_STREAM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SubtitleError("unreadable", f"{name}: ffmpeg did not finish reading it within "
                            f"{_STREAM_TIMEOUT_S} s", path=name) from None
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace")
        if "only possible from text to text or bitmap to bitmap" in err:
            what = "is picture-based (e.g. DVD / Blu-ray subtitles), not text; OCR it to SRT " \
                   "(e.g. with Subtitle Edit) and put the .srt beside the video"
        else:
            what = f"could not be read by ffmpeg ({ffmpeg_error_line(err)})"
        raise SubtitleError("unreadable", f"{name} {what}", path=name)
    return parse_srt(decode_text(r.stdout, name), name)


def _from_captions(video_path: str, sidecars: Sequence[str], subtitle_streams: Sequence[int],
                   notes: list[str]) -> list[TextSegment]:
    """The cues of the first caption source that has any; a note for each one that fails."""
    for path in sidecars:
        try:
            cues = read_subtitles(path)
        except SubtitleError as e:
            notes.append(f"captions: {e}; skipped")
            continue
        except OSError as e:
            notes.append(f"captions: {path} cannot be read ({e.strerror or e}); skipped")
            continue
        if cues:
            log.info("%s: %d caption cues from %s", video_path, len(cues), path)
            return cues
        notes.append(f"captions: {path} holds no cue with text; skipped")
    for index in subtitle_streams:
        try:
            cues = read_stream_subtitles(video_path, index)
        except SubtitleError as e:
            notes.append(f"captions: {e}; skipped")
            continue
        if cues:
            log.info("%s: %d caption cues from subtitle stream %d", video_path, len(cues), index)
            return cues
        notes.append(f"captions: subtitle stream {index} holds no cue with text; skipped")
    return []


def read_transcript(video_path: str, sidecars: Sequence[str], cfg: TranscriptConfig,
                    has_audio: bool, subtitle_streams: Sequence[int] = ()
                    ) -> tuple[list[TextSegment], list[str]]:
    """What is said in the local video ``video_path``: segments sorted by start, and notes for
    the catalog (sources that failed, or why nothing is indexed).

    sidecars: local subtitle files, in order of preference (:func:`sidecars_for`);
    has_audio / subtitle_streams: from :func:`groundzero.indexer.probe.probe`.
    A speech model that cannot be loaded raises :class:`~groundzero.errors.ModelNotFoundError`
    (check it before the run with :func:`groundzero.indexer.asr.check_asr_model`).
    """
    notes: list[str] = []
    if cfg.captions:
        cues = _from_captions(video_path, sidecars, subtitle_streams, notes)
        if cues:
            return cues, notes
    if not has_audio:
        notes.append("no captions and the video has no audio: nothing said is indexed for this video")
        return [], notes
    if cfg.asr_model is None:
        notes.append("no captions and no speech model (--asr-model): nothing said is indexed for this video")
        return [], notes
    model = load_asr(cfg.asr_model, cfg.asr_device, cfg.asr_compute_type)
    try:
        said = transcribe(model, video_path, cfg.asr_language, cfg.vad)
    except DecodeError as e:
        notes.append(f"speech recognition: {e}")
        return [], notes
    if not said:
        notes.append("speech recognition found no speech in this video")
    return said, notes
