"""The JSON API's response bodies (pydantic models; FastAPI publishes them in ``/openapi.json``).

``SearchOut`` extends what ``groundzero search --json`` prints (``SearchResult.to_dict()``:
query, found, hits, timings_ms) with paging and the videos the hits belong to; the hits
themselves are the very same dicts.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EvidenceOut(BaseModel):
    """Why a hit was returned, from one channel (``groundzero.search.results.Evidence``)."""

    channel: str = Field(description="frames (the picture) | speech (what is said) | text (on-screen text)")
    source: str = Field(description="frames | caption | asr | ocr")
    start_sec: float
    end_sec: float
    score: float
    text: str = Field(description="the matching segment; 'seen' for frames")
    snippet: str = Field(description="the part of the segment around the matches ('' for frames)")
    speaker: str = Field(description="who speaks, where the source says; '' if unknown")
    coverage: float = Field(description="share of the query's words the segment holds")
    marks: list[tuple[int, int]] = Field(
        description="[start, end) character offsets (Unicode code points) of the matched words in snippet")


class HitOut(BaseModel):
    video_id: str
    uri: str
    rel_path: str
    start_sec: float
    end_sec: float
    score: float
    found_prob: float = Field(description="probability that the moment is present in this span at all")
    start: str = Field(description="start_sec as hh:mm:ss.s")
    end: str = Field(description="end_sec as hh:mm:ss.s")
    channels: list[str] = Field(description="the channels that support this hit: frames, speech, text")
    evidence: list[EvidenceOut] = Field(description="what each channel found, best first")


class VideoOut(BaseModel):
    video_id: str
    rel_path: str
    name: str = Field(description="file name")
    folder: str = Field(description="folder inside the archive (the collection); '' at the top")
    uri: str
    status: str = Field(description="indexed | failed")
    reason: str = Field(description="failure code; '' when indexed")
    error: str
    duration_sec: float
    width: int
    height: int
    size_bytes: int
    n_frames: int
    modified_at: str | None = Field(description="the file's modification time (ISO-8601 UTC)")
    indexed_at: str = Field(description="when this row was written (ISO-8601 UTC)")
    stream_url: str
    thumbnail_url: str
    clip_url: str = Field(description="add ?start=&end= (seconds; &exact=1 to re-encode) for the span as a file")
    captions_url: str = Field(description="what is said, as WebVTT (the player's captions track)")
    transcript_url: str = Field(description="what is said and shown as text, line by line (JSON)")
    n_segments: int = Field(description="text segments indexed: captions, speech recognition, on-screen text")
    text_note: str = Field(description="why text is missing or partial; '' when none")


class GroupOut(BaseModel):
    video_id: str
    best_score: float
    hits: list[HitOut]


class SearchOut(BaseModel):
    # whatever SearchResult.to_dict() adds later passes through unchanged, as in the CLI's --json
    model_config = ConfigDict(extra="allow")

    query: str
    found: bool = Field(description="false when no span is a confident match: 'not found'")
    found_prob: float | None = Field(None, description="the best candidate's probability that the moment exists")
    found_threshold: float | None = Field(None, description="found is found_prob >= found_threshold")
    channels_found: dict[str, bool] = Field(
        default_factory=dict, description="per channel searched: whether it found the moment (found: any)")
    hits: list[HitOut] = Field(description="this page's hits (the same dicts as `groundzero search --json`)")
    timings_ms: dict[str, float]
    total: int = Field(description="hits (groups, when grouped) that pass the filters, before paging")
    offset: int
    limit: int
    k: int = Field(description="moments the search ranked before filtering")
    group: str = Field(description="none | video")
    groups: list[GroupOut] | None = None
    videos: dict[str, VideoOut] = Field(description="catalog rows of the videos on this page, by id")
    index_version: int


class SegmentOut(BaseModel):
    """One line of a video's transcript: an utterance, a caption cue or a block of on-screen text."""

    start_sec: float
    end_sec: float
    text: str
    source: str = Field(description="caption | asr | ocr")
    speaker: str = Field(description="'' if unknown")
    channel: str = Field(description="speech (what is said: caption, asr) | text (shown on screen: ocr)")


class FolderOut(BaseModel):
    folder: str
    videos: int = Field(description="indexed videos in this folder and below")


class HealthOut(BaseModel):
    status: str
    index_dir: str
    index_version: int
    loaded_at: str
    checked_at: str = Field(description="last time the manifest was checked for a newer snapshot")
    reload_error: str = Field(description="why a newer snapshot could not be opened; '' when none")
    model: str
    head: str | None
    grounding: str = Field(description="zero-shot | head")
    videos: int = Field(description="indexed videos")
    failed: int = Field(description="videos the index could not read")
    auth: bool = Field(description="whether requests need the access token")


class ErrorOut(BaseModel):
    detail: str
