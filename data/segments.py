"""Text segments: what is said (captions, speech recognition) and what is shown as text (OCR).

A video's *text channels* are lists of :class:`TextSegment`, each a time range of one video
with its text. Sources, in the order the indexer tries them for the spoken channel:

* ``caption``: a sidecar subtitle file beside the video (same stem, ``.srt`` / ``.vtt``), else
  a subtitle stream inside the container (read with ffmpeg);
* ``asr``: speech recognition, where a model is given;
* ``ocr``: text read off the frames where the picture changed (the on-screen channel).

Times are seconds from the start of the file, ``[start_sec, end_sec)``, like every span here
(:mod:`groundzero.data.spans`). Torch-free.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: the values of :attr:`TextSegment.source`
SOURCES = ("caption", "asr", "ocr")
#: channel names a search can be restricted to (``--channels``): frames, what is said, what is shown
CHANNELS = ("frames", "speech", "text")
#: which channel each segment source belongs to
CHANNEL_OF_SOURCE = {"caption": "speech", "asr": "speech", "ocr": "text"}


@dataclass(frozen=True)
class Word:
    """One word with its time, where the source gives word times (ASR)."""

    start_sec: float
    end_sec: float
    text: str
    confidence: float = 1.0


@dataclass(frozen=True)
class TextSegment:
    """One utterance, cue or on-screen text block of one video.

    ``confidence`` is in [0, 1] (1 for human captions); ``speaker`` is the label the source
    gives ("" if none): a caption's ``<v Name>`` voice or ``NAME:`` prefix, ``Q`` / ``A`` in
    deposition transcripts. ``words`` holds word times where the source has them (else empty).
    """

    start_sec: float
    end_sec: float
    text: str
    source: str  #: one of SOURCES
    confidence: float = 1.0
    speaker: str = ""
    words: tuple[Word, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        if not self.end_sec >= self.start_sec >= 0:
            raise ValueError(f"a segment needs 0 <= start_sec <= end_sec, got [{self.start_sec}, {self.end_sec})")

    @property
    def channel(self) -> str:
        return CHANNEL_OF_SOURCE[self.source]

    def to_json(self) -> dict:
        """A plain dict (JSON-safe), inverse of :meth:`from_json`."""
        d = asdict(self)
        d["words"] = [asdict(w) for w in self.words]
        return d

    @classmethod
    def from_json(cls, d: dict) -> TextSegment:
        words = tuple(Word(**w) for w in d.get("words") or ())
        return cls(start_sec=float(d["start_sec"]), end_sec=float(d["end_sec"]), text=str(d["text"]),
                   source=str(d["source"]), confidence=float(d.get("confidence", 1.0)),
                   speaker=str(d.get("speaker", "")), words=words)
