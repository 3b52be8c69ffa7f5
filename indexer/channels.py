"""The text channels of one video, read inside its decode task beside the frames.

* what is **said**: :mod:`groundzero.indexer.transcripts` (sidecar subtitles, subtitle streams in
  the container, else speech recognition where a model is given);
* what is **shown** as text: :mod:`groundzero.indexer.ocr`, on the frames where the picture
  changed (:mod:`groundzero.indexer.changes`, fed the decoded frames as they stream past).

A failure here never fails the video: its frames are indexed all the same, and the catalog's
``text_note`` says what was not read and why.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from groundzero.data.segments import TextSegment
from groundzero.indexer.changes import ChangeDetector
from groundzero.indexer.ocr import OcrConfig, screen_text
from groundzero.indexer.probe import VideoInfo
from groundzero.indexer.transcripts import TranscriptConfig, read_transcript

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChannelsConfig:
    """What an index run reads beside the frames."""

    transcript: TranscriptConfig = field(default_factory=TranscriptConfig)
    ocr: OcrConfig | None = None  #: on-screen text; None: not read

    @property
    def heavy(self) -> bool:
        """Whether a model runs in the decode task (OCR, speech recognition): it needs more memory."""
        return self.ocr is not None or self.transcript.asr_model is not None


class ChannelReader:
    """One video's text channels: fed its decoded frames in order (:meth:`feed`), then :meth:`read`."""

    def __init__(self, cfg: ChannelsConfig):
        self.cfg = cfg
        self._changes = ChangeDetector(cfg.ocr.change) if cfg.ocr is not None else None
        self.change_times_sec: list[float] = []
        self.info: VideoInfo | None = None  #: the video's probe, set by the decoder

    def feed(self, frames: np.ndarray, timestamps_sec: np.ndarray) -> None:
        """frames: uint8 (T, S, S, 3) as decoded for the image tower; timestamps_sec: (T,)."""
        if self._changes is not None:
            changed = self._changes.feed(frames, timestamps_sec)
            self.change_times_sec.extend(np.asarray(timestamps_sec)[changed].tolist())

    def read(self, path: str, sidecars: Sequence[str]) -> tuple[list[TextSegment], list[str]]:
        """The video's segments (speech first, then on-screen text) and notes for the catalog,
        once its frames are decoded (:attr:`info` set). ``path`` and ``sidecars`` are local files."""
        info = self.info
        assert info is not None, "read() after the frames were decoded"
        segments: list[TextSegment] = []
        notes: list[str] = []
        try:
            said, said_notes = read_transcript(path, sidecars, self.cfg.transcript, info.has_audio,
                                               info.subtitle_streams)
            segments += said
            notes += said_notes
        except Exception as e:  # the frames are indexed regardless; the catalog says why
            log.warning("transcript of %s not read", path, exc_info=True)
            notes.append(f"what is said was not read: {type(e).__name__}: {e}")
        if self.cfg.ocr is not None:
            try:
                segments += screen_text(path, self.change_times_sec, info.duration_sec, self.cfg.ocr, info)
            except Exception as e:
                log.warning("on-screen text of %s not read", path, exc_info=True)
                notes.append(f"on-screen text was not read: {type(e).__name__}: {e}")
        return segments, notes
