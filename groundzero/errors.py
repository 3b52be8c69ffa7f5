"""Typed errors. Every message says what happened, where, and what to do.

Library code raises these; only ``cli`` turns them into one line on stderr and
an exit status. Nothing here prints or exits.
"""

from __future__ import annotations


class GroundZeroError(Exception):
    """Base class of every error a user can act on."""

    exit_code: int = 1


class ConfigError(GroundZeroError):
    """A flag or config value is out of range or inconsistent.

    ``field`` names the config field at fault (e.g. ``"fps"``), and the message
    calls it by that name; the CLI shows each field under its own flag
    (``fps`` -> ``--fps``). None when no single field is at fault.
    """

    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class EmptyQueryError(ConfigError):
    """The search sentence is empty or only whitespace."""


class ModelNotFoundError(GroundZeroError):
    """A model directory or hub id could not be loaded."""


class UnsupportedModelError(GroundZeroError):
    """The checkpoint loads, but is not an architecture GroundZero can use."""


class IndexNotFoundError(GroundZeroError):
    """The index directory does not exist or holds no committed index."""


class IndexMismatchError(GroundZeroError):
    """An index was built with another model (or other parameters) than the one in use."""


class IndexLockedError(GroundZeroError):
    """Another process is writing to this index directory."""


class FFmpegNotFoundError(GroundZeroError):
    """The ffmpeg / ffprobe executables are not on PATH."""


class DecodeError(GroundZeroError):
    """One video could not be decoded. The run records it and goes on.

    ``reason`` is a short stable code stored in the catalog (``empty_file``,
    ``unreadable``, ``not_video``, ``no_video_stream``, ``truncated``,
    ``decode_failed``, and ``fetch_failed`` for an S3 object that could not be
    downloaded); the message is the human explanation.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class RemoteStoreError(GroundZeroError):
    """An S3 (or S3-compatible) archive or index could not be listed, read or written.

    Raised for problems of the run as a whole (bucket missing, access denied,
    endpoint unreachable, retries exhausted on a commit); a single video that
    cannot be downloaded is a :class:`DecodeError` with reason ``fetch_failed``.
    """


class IndexDamagedError(GroundZeroError):
    """A file of the index is damaged (truncated, not what it should be, bit rot), missing, or
    named by the manifest or catalog at a path outside the index directory (tampered with).

    ``path`` is the file at fault (None when not one file); ``missing`` is True when that file
    does not exist. The message names the file and says what to do (``catalog verify``, then
    re-index or restore). Exit status 4.
    """

    exit_code = 4

    def __init__(self, message: str, *, path: str | None = None, missing: bool = False) -> None:
        super().__init__(message)
        self.path = path
        self.missing = missing


class DiskFullError(GroundZeroError):
    """The disk (or the user's quota) holding the index ran out of space during a run.

    The run has deleted what it wrote since its last commit and recorded itself ``failed``;
    every snapshot committed before stays whole. ``path`` is the file being written (None when
    unknown), ``written_bytes`` what the run had written, ``needed_bytes`` about how much more
    it needs (0 when unknown).
    """

    def __init__(self, message: str, *, path: str | None = None, written_bytes: int = 0,
                 needed_bytes: int = 0) -> None:
        super().__init__(message)
        self.path = path
        self.written_bytes = written_bytes
        self.needed_bytes = needed_bytes


class VideoNotFoundError(GroundZeroError):
    """A video id names no video of the index's catalog, or names one that cannot be read
    (it failed to index, or its file is gone since)."""


class ClipError(GroundZeroError):
    """ffmpeg could not cut a clip out of a video.

    ``stderr_tail`` holds ffmpeg's last lines of error output ("" when it printed none); the
    message already quotes them.
    """

    def __init__(self, message: str, *, stderr_tail: str = "") -> None:
        super().__init__(message)
        self.stderr_tail = stderr_tail


class EmptyClipError(ClipError):
    """The span asked for holds no video frame (it is shorter than one frame, or the video has
    no frames there); a wider span would work."""


class SubtitleError(GroundZeroError):
    """A subtitle file (``.srt`` / ``.vtt``) or subtitle stream could not be read.

    ``reason`` is a short stable code: ``undecodable`` (not UTF-8 / UTF-16 text),
    ``bad_timestamp`` (a cue timing line that does not parse), ``end_before_start`` (a cue that
    ends before it starts) or ``no_cues`` (a non-empty file without a single cue). ``path`` names
    the file (or stream) and ``line`` the 1-based line at fault (None when not one line). The
    indexer notes the problem in the catalog and tries the next caption source.
    """

    def __init__(self, reason: str, message: str, *, path: str = "", line: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.path = path
        self.line = line
