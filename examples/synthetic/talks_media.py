"""Pictures, speech, captions and the container of a talk (:mod:`groundzero.synthetic.talks_script`).

- :func:`iter_talk_frames`: lecture slides (TrueType text, large enough to OCR at 640x360) with
  a small moving speaker inset; a static deposition room with exhibit cards held up; the
  demo's full-frame scenes (:func:`groundzero.synthetic.render.render_frame`) for cutaways.
- :class:`Speech`: espeak-ng sentences as int16 samples, trimmed to their voiced span (so the
  times a script records are when the voice is heard); :func:`mix_speech` places them.
- :func:`subtitles`: SRT or WebVTT text of a script's utterances, with speaker labels.
- :func:`mux_talk`: H.264 + AAC (+ a ``mov_text`` / ``srt`` subtitle stream) with ffmpeg.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from groundzero.errors import FFmpegNotFoundError, GroundZeroError
from groundzero.synthetic.render import render_frame
from groundzero.synthetic.talks_script import Slide, TalkScript, Utterance

#: TrueType fonts tried in order (Debian's DejaVu, then Liberation); else Pillow's own
FONT_CANDIDATES: tuple[tuple[str, str], ...] = (
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    ("/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
     "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"),
)  # fmt: skip

SLIDE_BG, TITLE_BAR, INK = (246, 244, 238), (28, 40, 78), (25, 25, 30)
WALL, FLOOR, TABLE, SKIN, SUIT = (196, 184, 160), (120, 110, 100), (104, 70, 44), (222, 184, 150), (52, 56, 70)


def find_fonts() -> tuple[str, str] | None:
    """``(bold_path, regular_path)`` of the first TrueType pair present, or None (Pillow's font)."""
    for bold, regular in FONT_CANDIDATES:
        if Path(bold).is_file() and Path(regular).is_file():
            return bold, regular
    return None


def _font(fonts: tuple[str, str] | None, bold: bool, px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if fonts is None:
        return ImageFont.load_default(size=px)
    return ImageFont.truetype(fonts[0] if bold else fonts[1], px)


# --------------------------------------------------------------------------- pictures


def slide_image(slide: Slide, size: tuple[int, int], fonts: tuple[str, str] | None) -> Image.Image:
    """A lecture slide: title on a dark bar (~9 % of the height), bullets below (~6.5 %)."""
    w, h = size
    img = Image.new("RGB", size, SLIDE_BG)
    draw = ImageDraw.Draw(img)
    bar = round(0.2 * h)
    draw.rectangle([0, 0, w, bar], fill=TITLE_BAR)
    draw.text((round(0.05 * w), bar // 2), slide.title, fill=(255, 255, 255),
              font=_font(fonts, True, round(0.09 * h)), anchor="lm")
    body = _font(fonts, False, round(0.065 * h))
    for i, line in enumerate(slide.lines):
        y = bar + round((0.12 + 0.13 * i) * h)
        draw.ellipse([round(0.05 * w), y - 4, round(0.05 * w) + 8, y + 4], fill=INK)
        draw.text((round(0.08 * w), y), line, fill=INK, font=body, anchor="lm")
    return img


def deposition_image(size: tuple[int, int], card: Slide | None, fonts: tuple[str, str] | None) -> Image.Image:
    """The witness at a table (drawn shapes, no text), with ``card`` held up beside him if any."""
    w, h = size
    img = Image.new("RGB", size, WALL)
    d = ImageDraw.Draw(img)
    d.rectangle([0, round(0.78 * h), w, h], fill=FLOOR)
    cx = round(0.62 * w)
    d.polygon([(cx - 0.12 * w, 0.72 * h), (cx + 0.12 * w, 0.72 * h), (cx + 0.09 * w, 0.38 * h),
               (cx - 0.09 * w, 0.38 * h)], fill=SUIT)
    r = 0.075 * h * 1.3
    d.ellipse([cx - r, 0.2 * h, cx + r, 0.2 * h + 2 * r], fill=SKIN)
    d.rectangle([round(0.25 * w), round(0.62 * h), round(0.95 * w), round(0.7 * h)], fill=TABLE)
    d.rectangle([round(0.3 * w), round(0.7 * h), round(0.33 * w), round(0.9 * h)], fill=TABLE)
    d.rectangle([round(0.87 * w), round(0.7 * h), round(0.9 * w), round(0.9 * h)], fill=TABLE)
    d.line([(cx - 0.08 * w, 0.62 * h), (cx - 0.06 * w, 0.45 * h)], fill=(40, 40, 40), width=3)
    if card is not None:
        x0, y0, x1, y1 = round(0.04 * w), round(0.1 * h), round(0.5 * w), round(0.62 * h)
        d.rectangle([x0, y0, x1, y1], fill=(252, 252, 250), outline=(30, 30, 30), width=3)
        d.text(((x0 + x1) // 2, y0 + round(0.11 * h)), card.title, fill=INK,
               font=_font(fonts, True, round(0.1 * h)), anchor="mm")
        small = _font(fonts, False, round(0.055 * h))
        for i, line in enumerate(card.lines):
            d.text(((x0 + x1) // 2, y0 + round((0.26 + 0.1 * i) * h)), line, fill=INK, font=small, anchor="mm")
    return img


def _inset(img: Image.Image, t: float) -> None:
    """The lecturer in a corner box, swaying (period 5 s) and nodding, so no two seconds match."""
    w, h = img.size
    bw, bh = round(0.2 * w), round(0.27 * h)
    x0, y0 = w - bw - 8, h - bh - 8
    d = ImageDraw.Draw(img)
    d.rectangle([x0, y0, x0 + bw, y0 + bh], fill=(60, 64, 72), outline=(20, 20, 20), width=2)
    cx = x0 + bw / 2 + 0.18 * bw * math.sin(2 * math.pi * t / 5.0)
    cy = y0 + 0.38 * bh + 0.04 * bh * math.sin(2 * math.pi * t / 1.3)
    r = 0.16 * bh
    d.rectangle([cx - 0.3 * bw, y0 + 0.62 * bh, cx + 0.3 * bw, y0 + bh - 2], fill=SUIT)
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=SKIN)


def iter_talk_frames(script: TalkScript, fps: int, size: tuple[int, int],
                     fonts: tuple[str, str] | None) -> Iterator[np.ndarray]:
    """Frames ``i = 0 .. duration * fps - 1`` at ``t = i / fps`` s, each (H, W, 3) uint8 RGB.

    A cutaway (a picture event) fills the frame while active; otherwise a lecture shows its
    active slide plus the inset, a deposition its room plus the active exhibit card. Static
    deposition frames are yielded again (same array): consumers must not modify them.
    """
    cache: dict[object, Image.Image] = {}
    last_key: object = None
    frame = np.empty(0)
    for i in range(round(script.duration_sec * fps)):
        t = i / fps
        pics = [e for e in script.pictures if e.active(t)]
        if pics:
            frame, last_key = render_frame(pics, t, size), None
        elif script.kind == "lecture":
            slide = next((s for s in script.slides if s.start_sec <= t < s.end_sec), script.slides[-1])
            if slide not in cache:
                cache[slide] = slide_image(slide, size, fonts)
            img = cache[slide].copy()
            _inset(img, t)
            frame, last_key = np.asarray(img, dtype=np.uint8), None
        else:
            card = next((s for s in script.slides if s.start_sec <= t < s.end_sec), None)
            key = ("room", card)
            if key != last_key:
                if key not in cache:
                    cache[key] = deposition_image(size, card, fonts)
                frame, last_key = np.asarray(cache[key], dtype=np.uint8), key
        yield frame


# --------------------------------------------------------------------------- sound


class Speech:
    """espeak-ng sentences as mono int16 samples at :attr:`sample_rate`, cached per (text, voice).

    Each is trimmed to its voiced span (samples above a small threshold), so a caption's
    times are when the voice is heard. espeak-ng is deterministic: same text, voice and rate,
    same samples.
    """

    def __init__(self, work_dir: Path, rate_wpm: int = 160) -> None:
        exe = shutil.which("espeak-ng")
        if exe is None:
            raise FFmpegNotFoundError("espeak-ng not found on PATH; install it (Debian: apt-get install espeak-ng)")
        self.exe, self.work_dir, self.rate_wpm = exe, Path(work_dir), rate_wpm
        self.sample_rate = 22050
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    def samples(self, text: str, voice: str) -> np.ndarray:
        key = (text, voice)
        if key not in self._cache:
            wav = self.work_dir / f"utt_{len(self._cache)}.wav"
            cmd = [self.exe, "-v", voice, "-s", str(self.rate_wpm), "-w", str(wav), text]
            proc = subprocess.run(cmd, check=False, capture_output=True)
            if proc.returncode != 0:
                raise GroundZeroError(f"espeak-ng failed on {text!r} (voice {voice}): "
                                      f"{proc.stderr.decode(errors='replace')[-500:]}")
            with wave.open(str(wav)) as f:
                self.sample_rate = f.getframerate()
                x = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
            wav.unlink()
            loud = np.flatnonzero(np.abs(x.astype(np.int32)) > 300)
            self._cache[key] = x[loud[0]: loud[-1] + 1].copy() if loud.size else x[:1].copy()
        return self._cache[key]

    def duration_sec(self, text: str, voice: str) -> float:
        """Length in seconds of the voiced span of ``text`` said by ``voice``."""
        return len(self.samples(text, voice)) / self.sample_rate


def mix_speech(script: TalkScript, speech: Speech) -> np.ndarray:
    """The talk's audio track: int16 mono, ``duration * sample_rate`` samples, each utterance at
    ``round(start_sec * sample_rate)``."""
    sr = speech.sample_rate
    track = np.zeros(round(script.duration_sec * sr), dtype=np.int16)
    for u in script.utterances:
        x = speech.samples(u.text, u.voice)
        i = round(u.start_sec * sr)
        track[i: i + len(x)] = x[: len(track) - i]
    return track


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(samples.astype("<i2").tobytes())
    return path


# --------------------------------------------------------------------------- captions


def _stamp(sec: float, sep: str) -> str:
    ms = round(sec * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def cue_text(u: Utterance, fmt: str) -> str:
    """A cue's text: ``Q: ...`` / ``A: ...`` in depositions; ``<v Name>...`` (vtt) or
    ``NAME: ...`` (srt) in lectures."""
    if u.role in ("Q", "A"):
        return f"{u.role}: {u.text}"
    return f"<v {u.speaker}>{u.text}" if fmt == "vtt" else f"{u.speaker.split()[-1].upper()}: {u.text}"


def subtitles(script: TalkScript, fmt: str) -> str:
    """SRT (``fmt="srt"``) or WebVTT (``"vtt"``) text: one cue per utterance, at its times (ms)."""
    cues = []
    for k, u in enumerate(script.utterances, 1):
        if fmt == "vtt":
            cues.append(f"{_stamp(u.start_sec, '.')} --> {_stamp(u.end_sec, '.')}\n{cue_text(u, fmt)}\n")
        else:
            cues.append(f"{k}\n{_stamp(u.start_sec, ',')} --> {_stamp(u.end_sec, ',')}\n{cue_text(u, fmt)}\n")
    return ("WEBVTT\n\n" if fmt == "vtt" else "") + "\n".join(cues)


# --------------------------------------------------------------------------- the container


def mux_talk(out: Path, video: Path, audio: Path, subs: Path | None) -> Path:
    """``video`` (H.264, copied) + ``audio`` (-> AAC) + ``subs`` (an .srt, -> ``mov_text`` in
    .mp4, ``srt`` in .mkv) into ``out``; the file appears under its name only once complete."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise FFmpegNotFoundError("ffmpeg not found on PATH; install it (Debian: apt-get install ffmpeg)")
    part = out.with_name(out.name + ".part")
    cmd = [exe, "-hide_banner", "-loglevel", "error", "-y", "-i", str(video), "-i", str(audio)]
    maps = ["-map", "0:v", "-map", "1:a"]
    codecs = ["-c:v", "copy", "-c:a", "aac", "-b:a", "64k"]
    if subs is not None:
        cmd += ["-i", str(subs)]
        maps += ["-map", "2:s"]
        codecs += ["-c:s", "mov_text" if out.suffix == ".mp4" else "srt", "-metadata:s:s:0", "language=eng"]
    fmt = "mp4" if out.suffix == ".mp4" else "matroska"
    cmd += [*maps, *codecs, "-map_metadata", "-1", "-fflags", "+bitexact", "-f", fmt, str(part)]
    proc = subprocess.run(cmd, check=False, capture_output=True)
    if proc.returncode != 0:
        part.unlink(missing_ok=True)
        raise GroundZeroError(f"{out}: ffmpeg failed to mux (exit {proc.returncode}): "
                              f"{proc.stderr.decode(errors='replace')[-2000:]}")
    part.replace(out)
    return out
