"""The FastAPI app: the search page, and the JSON API it runs on.

``create_app(cfg)`` loads the model and the index once and returns the ASGI app; no module
state. Routes (OpenAPI schema at ``/openapi.json``):

* ``GET /`` (and ``/watch``) — the search page; ``/static/*`` its script and styles
* ``GET /api/search`` — ranked moments for a sentence, filtered and paged; each hit with its evidence
  (what was seen, said or shown)
* ``GET /api/folders`` — the archive's folders (collections) with their video counts
* ``GET /api/videos/{video_id}`` — one video's catalog row
* ``GET /api/videos/{video_id}/stream`` — the video file, with HTTP Range (or a presigned S3 link)
* ``GET /api/videos/{video_id}/thumbnail?t=`` — a JPEG frame at ``t`` seconds
* ``GET /api/videos/{video_id}/captions.vtt`` — what is said in the video (captions, speech recognition)
  as WebVTT, the player's captions track
* ``GET /api/videos/{video_id}/transcript`` — what is said and what is shown as text, line by line
* ``GET /api/clip/{video_id}?start=&end=&exact=`` — a span of the video cut to a file, as a download
* ``GET /api/health`` — index version, model, video counts

A video id is only ever a key into the snapshot's catalog; the file served is the catalog's
``uri``. Bad input is a 4xx with a ``detail`` that says what to change.
"""

# No `from __future__ import annotations` here: FastAPI reads the routes' Annotated[...] hints at
# definition time, and they name `cfg` from create_app's scope.
import functools
import logging
import os
import re
import shutil
import stat
import tempfile
from datetime import date
from email.utils import formatdate
from pathlib import Path
from typing import Annotated, BinaryIO, Literal

import anyio
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles

from groundzero.data.segments import CHANNELS, TextSegment
from groundzero.data.subtitles import to_vtt
from groundzero.errors import ConfigError, EmptyClipError, GroundZeroError
from groundzero.search.clips import Clip, ClipRequest, clip_name, clip_suffix, cut_clip
from groundzero.search.searcher import MAX_QUERY_CHARS
from groundzero.search.service.config import ServeConfig
from groundzero.search.service.guards import AccessGuard
from groundzero.search.service.media import (
    RangeNotSatisfiable,
    Thumbnailer,
    ThumbnailError,
    content_type,
    iter_file,
    iter_then_close,
    parse_range,
)
from groundzero.search.service.query import Filters, page_of, row_time
from groundzero.search.service.schemas import (
    ErrorOut,
    FolderOut,
    HealthOut,
    SearchOut,
    SegmentOut,
    VideoOut,
)
from groundzero.search.service.state import IndexState, Snapshot, folder_of
from groundzero.store.s3 import presigned_url

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
_ID = re.compile(r"[0-9A-Za-z_-]{1,128}")
E404 = {404: {"model": ErrorOut, "description": "no such video in the catalog"}}
E503 = {503: {"model": ErrorOut, "description": "the snapshot in service lost this file (a newer one replaced it)"}}
#: ``channels=`` of /api/search: one or more of frames, speech, text, comma-separated
_CHANNEL = "|".join(CHANNELS)
CHANNELS_PATTERN = rf"^({_CHANNEL})(,({_CHANNEL}))*$"


def create_app(cfg: ServeConfig, state: IndexState | None = None) -> FastAPI:
    """The service over ``cfg.index_dir``; pass ``state`` to share one loaded index between apps."""
    cfg = cfg.validate()
    if not (STATIC / "index.html").is_file():
        raise ConfigError(f"the search page's files are missing from this install ({STATIC}); install "
                          "GroundZero with its package data (pip install -e . from the repository)")
    state = state or IndexState(cfg)
    thumbs = Thumbnailer(cfg.thumb_cache, cfg.thumb_timeout_sec, max_procs=cfg.thumb_procs or None)
    # Thumbnails wait for one of these worker threads on the event loop, outside the thread pool that
    # the other routes run in: a burst queues here and /api/health and searches still answer at once.
    thumb_workers = anyio.CapacityLimiter(thumbs.max_procs)
    clip_workers = anyio.CapacityLimiter(cfg.clip_procs)  # the same for clips, fewer at once (each may be long)
    # Searches run in parallel on their own worker threads, up to cfg.search_threads at once (the searcher is
    # thread-safe; FAISS, torch and Parquet reads release the GIL); more wait in line here, on the event loop.
    search_workers = anyio.CapacityLimiter(cfg.searches_at_once)
    app = FastAPI(title="GroundZero", version="1", docs_url=None, redoc_url=None,
                  description="Natural-language search inside a video archive: (video, start, end) spans.")
    app.state.gz = state
    app.state.thumbs = thumbs  # its peak count of ffmpeg processes is read by the tests
    app.add_middleware(AccessGuard, token=cfg.token)
    _add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    @app.get("/watch", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/health", response_model=HealthOut)
    async def health() -> dict:  # on the event loop: answers even while every worker thread is busy
        snap = state.snapshot()
        s = snap.searcher
        return {"status": "damaged" if state.damage else "ok", "index_dir": str(state.layout.root), "index_version": snap.version,
                "loaded_at": snap.loaded_at, "checked_at": state.checked_at, "reload_error": state.reload_error,
                "model": s.manifest.model.name, "head": getattr(s, "head_dir", cfg.head),
                "grounding": "head" if s.head else "zero-shot", "videos": snap.n_indexed,
                "failed": len(snap.catalog) - snap.n_indexed, "auth": bool(cfg.token)}

    @app.get("/api/search", response_model=SearchOut,
             responses={422: {"description": "bad parameters (empty or too long query, bad range)"},
                        400: {"model": ErrorOut, "description": "query string is not UTF-8"}})
    async def search(
        q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS,
                                description="a sentence describing the moment")],
        k: Annotated[int, Query(ge=1, le=cfg.max_k, description="moments ranked before filters and paging")] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=cfg.max_limit, description="hits per page (groups, when grouped)")] = 10,
        folder: Annotated[str | None, Query(max_length=1000, description="only videos in this folder (and below)")]
        = None,
        min_duration: Annotated[float | None, Query(ge=0, allow_inf_nan=False, description="seconds, whole video")]
        = None,
        max_duration: Annotated[float | None, Query(ge=0, allow_inf_nan=False, description="seconds, whole video")]
        = None,
        since: Annotated[date | None, Query(description="only videos modified (or indexed) on or after this day")]
        = None,
        until: Annotated[date | None, Query(description="... on or before this day (UTC)")] = None,
        date_field: Annotated[Literal["modified", "indexed"], Query()] = "modified",
        group: Annotated[Literal["none", "video"], Query(description="video: hits grouped per video, groups paged")]
        = "none",
        channels: Annotated[str | None, Query(
            max_length=100, pattern=CHANNELS_PATTERN,
            description="what to search, comma-separated: frames (the picture), speech (what is said), text "
                        "(on-screen text); default: all the index has")] = None,
    ) -> dict:
        filters = Filters(folder=folder or None, min_duration_sec=min_duration, max_duration_sec=max_duration,
                          since=since, until=until, date_field=date_field).validate()
        chosen = None if channels is None else tuple(c for c in CHANNELS if c in channels.split(","))

        def answer() -> dict:  # on a worker thread, once one is free
            snap = state.snapshot()  # the search, its page and its catalog rows from one snapshot, even mid-reload
            page = page_of(snap.search(q, k, chosen), snap.catalog, filters, offset, limit, group == "video")
            body = page.result.to_dict()  # exactly what `groundzero search --json` prints
            ids = dict.fromkeys(h.video_id for h in page.result.hits)
            body.update(total=page.total, offset=offset, limit=limit, k=k, group=group, index_version=snap.version,
                        videos={v: video_json(snap.catalog[v]) for v in ids},
                        groups=None if page.groups is None else [
                            {"video_id": g.video_id, "best_score": g.best_score,
                             "hits": [h.to_dict() for h in g.hits]} for g in page.groups])
            return body

        return await anyio.to_thread.run_sync(answer, limiter=search_workers)

    @app.get("/api/folders", response_model=list[FolderOut])
    def folders() -> list[dict]:
        return [{"folder": f, "videos": n} for f, n in state.snapshot().folders().items()]

    @app.get("/api/videos/{video_id}", response_model=VideoOut, responses=E404)
    def video(video_id: str) -> dict:
        return video_json(_row(state.snapshot(), video_id, playable=False))

    @app.get("/api/videos/{video_id}/stream", response_class=Response, responses={
        **E404, 200: {"content": {"video/mp4": {}}, "description": "the whole file"},
        206: {"description": "the byte range asked for"}, 307: {"description": "presigned S3 link"},
        416: {"description": "the Range lies outside the file"}})
    def stream(video_id: str, request: Request) -> Response:
        row = _row(state.snapshot(), video_id)
        uri = row["uri"]
        if uri.startswith("s3://"):
            return RedirectResponse(_presign(uri), 307)
        return _file_response(uri, request.headers.get("range"), request.headers.get("if-range"))

    @app.get("/api/videos/{video_id}/thumbnail", response_class=Response, responses={
        **E404, 200: {"content": {"image/jpeg": {}}, "description": "a JPEG frame"},
        422: {"description": "t outside the video"}})
    async def thumbnail(  # any t in [0, duration] has a frame: the one shown at t
        video_id: str,
        t: Annotated[float, Query(ge=0, allow_inf_nan=False, description="seconds from the start")] = 0.0,
        w: Annotated[int, Query(ge=16, le=1280, description="width in pixels")] = 320,
    ) -> Response:
        row = _row(state.snapshot(), video_id)
        duration = float(row["duration_sec"])
        if t > duration:
            raise HTTPException(422, f"t={t:g} s is past the end of {row['rel_path']} ({duration:.1f} s long)")
        uri = row["uri"]
        local = None if uri.startswith("s3://") else _local_file(uri)  # gone since indexed: 404, cached or not
        data = thumbs.cached(uri, t, w)
        if data is None:
            source = local or _presign(uri)
            try:
                data = await anyio.to_thread.run_sync(thumbs.jpeg, uri, t, w, source, limiter=thumb_workers)
            except ThumbnailError as e:
                raise HTTPException(404, str(e)) from e
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/videos/{video_id}/captions.vtt", response_class=Response, responses={
        **E404, **E503, 200: {"content": {"text/vtt": {}}, "description": "WebVTT of what is said (a file of "
                              "its header alone when nothing is): one cue per caption or utterance, the "
                              "speaker as <v Name>"}})
    def captions(video_id: str) -> Response:
        snap = state.snapshot()  # the row and its segments file from one snapshot, even mid-reload
        speech = [s for s in snap.segments(_row(snap, video_id)) if s.channel == "speech"]
        return Response(to_vtt(speech), media_type="text/vtt", headers={"Cache-Control": "private, no-cache"})

    @app.get("/api/videos/{video_id}/transcript", response_model=list[SegmentOut], responses={**E404, **E503})
    def transcript(video_id: str) -> list[dict]:
        """What is said (captions, speech recognition) and shown as text (OCR), by start time."""
        snap = state.snapshot()
        return [segment_json(s) for s in snap.segments(_row(snap, video_id))]

    @app.get("/api/clip/{video_id}", response_class=Response, responses={
        **E404, 200: {"content": {t: {} for t in CLIP_TYPES}, "description": "the span, as a file to download "
                      "(X-Clip-Start-Sec / X-Clip-End-Sec: where it really starts and ends in the video)"},
        422: {"description": "a bad span: reversed, past the video's end, longer than the longest clip, no frame"}})
    async def clip(
        video_id: str,
        start: Annotated[float, Query(ge=0, allow_inf_nan=False, description="seconds from the video's start")],
        end: Annotated[float, Query(gt=0, allow_inf_nan=False, description="seconds; past the video's end: its end")],
        exact: Annotated[bool, Query(description="1: re-encode, start and end exact to a frame; 0: copy the "
                                                 "streams from the keyframe at or before start")] = False,
    ) -> Response:
        row = _row(state.snapshot(), video_id)
        req = ClipRequest(start, end, exact).validate(float(row["duration_sec"]), cfg.max_clip_sec)  # else 422
        uri = row["uri"]
        source = _presign(uri) if uri.startswith("s3://") else _local_file(uri)
        name = clip_name(row["rel_path"], req.start_sec, req.end_sec, clip_suffix(uri))
        cut = functools.partial(_cut_to_open_file, source, req, name, float(row["duration_sec"]),
                                cfg.clip_timeout_sec)
        try:
            made, f = await anyio.to_thread.run_sync(cut, limiter=clip_workers)
        except EmptyClipError as e:
            raise HTTPException(422, str(e)) from e
        return StreamingResponse(iter_then_close(f), media_type=content_type(name), headers={
            "Content-Length": str(made.bytes), "Content-Disposition": f'attachment; filename="{name}"',
            "X-Clip-Start-Sec": f"{made.start_sec:.6f}", "X-Clip-End-Sec": f"{made.end_sec:.6f}",
            "Cache-Control": "private, no-store"})

    return app


#: media types of the clips ``/api/clip`` makes (their suffix is the video's own, or .mkv)
CLIP_TYPES = ("video/mp4", "video/quicktime", "video/x-matroska")


def video_json(row: dict) -> dict:
    """A catalog row as the API shows it (:class:`~groundzero.search.service.schemas.VideoOut`)."""
    vid = row["video_id"]
    modified = row_time(row, "modified")
    return {
        "video_id": vid, "rel_path": row["rel_path"], "name": Path(row["rel_path"]).name,
        "folder": folder_of(row["rel_path"]), "uri": row["uri"], "status": row["status"],
        "reason": row["reason"] or "", "error": row["error"] or "", "duration_sec": float(row["duration_sec"]),
        "width": int(row["width"] or 0), "height": int(row["height"] or 0), "size_bytes": int(row["size_bytes"] or 0),
        "n_frames": int(row["n_frames"] or 0), "modified_at": modified.isoformat() if modified else None,
        "indexed_at": row["updated_at"] or "", "stream_url": f"/api/videos/{vid}/stream",
        "thumbnail_url": f"/api/videos/{vid}/thumbnail", "clip_url": f"/api/clip/{vid}",
        "captions_url": f"/api/videos/{vid}/captions.vtt", "transcript_url": f"/api/videos/{vid}/transcript",
        "n_segments": int(row.get("n_segments") or 0), "text_note": row.get("text_note") or "",
    }


def segment_json(seg: TextSegment) -> dict:
    """A text segment as the transcript lists it (:class:`~groundzero.search.service.schemas.SegmentOut`)."""
    return {"start_sec": seg.start_sec, "end_sec": seg.end_sec, "text": seg.text, "source": seg.source,
            "speaker": seg.speaker, "channel": seg.channel}


def _row(snap: Snapshot, video_id: str, playable: bool = True) -> dict:
    """The catalog row of ``video_id`` (only a dictionary key: never a path), else 404."""
    row = snap.catalog.get(video_id) if _ID.fullmatch(video_id) else None
    if row is None:
        raise HTTPException(404, "no such video in the catalog; take ids from /api/search results")
    if playable and row["status"] != "indexed":
        raise HTTPException(404, f"{row['rel_path']} could not be indexed ({row['reason']}): nothing to play")
    return row


def _local_file(uri: str) -> str:
    try:
        st = os.stat(uri)
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode) or not os.access(uri, os.R_OK):
        raise HTTPException(404, f"the file of this video is no longer readable at {uri}; re-run groundzero index")
    return uri


def _cut_to_open_file(source: str, req: ClipRequest, name: str, duration_sec: float,
                      timeout_sec: float) -> tuple[Clip, BinaryIO]:
    """The clip cut into a temporary folder, opened, and its folder deleted: the open file stays readable
    until closed, and nothing is left on disk whatever the client does."""
    work = tempfile.mkdtemp(prefix="gz-clip-")
    try:
        made = cut_clip(source, req.start_sec, req.end_sec, os.path.join(work, name), req.exact,
                        duration_sec=duration_sec, timeout_sec=timeout_sec)
        return made, open(made.path, "rb")  # closed by iter_then_close once sent
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _presign(uri: str) -> str:
    try:
        return presigned_url(uri)
    except Exception as e:  # no credentials, a bad uri: nothing the client can change
        raise HTTPException(503, f"cannot make a link to {uri}: {e}; give the server AWS credentials") from e


def _file_response(path: str, range_header: str | None, if_range: str | None) -> Response:
    path = _local_file(path)
    st = os.stat(path)
    size = st.st_size
    etag = f'"{st.st_mtime_ns:x}-{size:x}"'
    headers = {"Accept-Ranges": "bytes", "ETag": etag, "Last-Modified": formatdate(st.st_mtime, usegmt=True),
               "Cache-Control": "private, no-cache"}
    if if_range is not None and if_range.strip() != etag:
        range_header = None  # the client's copy is stale: send the whole file (RFC 9110 13.1.5)
    try:
        rng = parse_range(range_header, size)
    except RangeNotSatisfiable as e:
        return JSONResponse({"detail": str(e)}, 416, headers={"Content-Range": f"bytes */{size}", **headers})
    media_type = content_type(path)
    if rng is None:
        return StreamingResponse(iter_file(path, 0, size), 200, media_type=media_type,
                                 headers={**headers, "Content-Length": str(size)})
    return StreamingResponse(iter_file(path, rng.start, rng.length), 206, media_type=media_type, headers={
        **headers, "Content-Length": str(rng.length), "Content-Range": f"bytes {rng.start}-{rng.end}/{size}"})


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ConfigError)
    async def bad_value(request: Request, e: ConfigError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, 422)

    @app.exception_handler(GroundZeroError)
    async def unavailable(request: Request, e: GroundZeroError) -> JSONResponse:
        log.warning("%s: %s", request.url.path, e)
        return JSONResponse({"detail": str(e)}, 503)
