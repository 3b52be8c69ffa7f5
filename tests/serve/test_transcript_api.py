"""The text channels over HTTP: search hits carry their evidence, ``channels=`` picks what is
searched, a video's speech is a WebVTT captions track and its speech and on-screen text a
transcript; both follow the snapshot in service and fail clearly when gc took its files."""

from __future__ import annotations

import time

import httpx
import pytest

from groundzero.data.segments import TextSegment
from groundzero.data.subtitles import parse_vtt
from tests.serve.conftest import DEPOSITION_CUES, copy_index, make_cfg
from tests.serve.test_api import raw_get

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module")
def c(text_url):
    with httpx.Client(base_url=text_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def ids(text_rows):
    return {"talk": text_rows["talk/deposition.mp4"]["video_id"], "silent": text_rows["silent.mp4"]["video_id"]}


def test_captions_track_parses_back_with_times_and_speakers(c, ids):
    r = c.get(f"/api/videos/{ids['talk']}/captions.vtt")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/vtt; charset=utf-8"
    assert r.text.startswith("WEBVTT\n") and "<v MR. SMITH>Objection &amp; move to strike: 3 &lt; 4." in r.text
    cues = [(s.start_sec, s.end_sec, s.text, s.speaker) for s in parse_vtt(r.text, "captions.vtt")]
    assert cues == DEPOSITION_CUES


def test_transcript_lists_segments_by_time(c, ids):
    r = c.get(f"/api/videos/{ids['talk']}/transcript")
    assert r.status_code == 200, r.text
    lines = r.json()
    assert [(x["start_sec"], x["end_sec"], x["text"], x["speaker"]) for x in lines] == DEPOSITION_CUES
    assert {(x["source"], x["channel"]) for x in lines} == {("caption", "speech")}
    assert set(lines[0]) == {"start_sec", "end_sec", "text", "source", "speaker", "channel"}


def test_video_without_text_has_an_empty_track_and_transcript(c, ids, text_rows):
    assert text_rows["silent.mp4"]["segments_file"] == ""
    r = c.get(f"/api/videos/{ids['silent']}/captions.vtt")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/vtt")
    assert r.text == "WEBVTT\n" and parse_vtt(r.text) == []
    assert c.get(f"/api/videos/{ids['silent']}/transcript").json() == []


@pytest.mark.parametrize("target", [
    "/api/videos/0123456789abcdef/captions.vtt", "/api/videos/0123456789abcdef/transcript",
    "/api/videos/..%2F..%2Fetc%2Fpasswd/captions.vtt", "/api/videos/..%2f..%2fetc%2fpasswd/transcript",
    "/api/videos/../../etc/passwd/captions.vtt", "/api/videos/%2e%2e/transcript",
    "/api/videos/%00/captions.vtt", "/api/videos/a%5C..%5Cb/transcript", "/api/videos//transcript",
])
def test_unknown_and_traversal_ids_are_404(text_url, target):
    status, _, body = raw_get(text_url, target)
    assert status == 404, (target, status, body[:200])
    assert b"WEBVTT" not in body and b"Objection" not in body


def test_search_hits_carry_their_evidence(c, ids):
    r = c.get("/api/search", params={"q": "exhibit 12", "k": 10, "limit": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["found"] and body["channels_found"]["speech"] is True
    top = body["hits"][0]
    assert top["video_id"] == ids["talk"] and (top["start_sec"], top["end_sec"]) == (1.0, 3.5)
    assert "speech" in top["channels"]
    said = next(e for e in top["evidence"] if e["channel"] == "speech")
    assert said["source"] == "caption" and said["speaker"] == "Q" and said["text"] == "Please look at exhibit 12."
    assert [said["snippet"][a:b] for a, b in said["marks"]] == ["exhibit", "12"]
    for h in body["hits"]:  # every hit, frames-only ones too, says what supports it
        assert h["channels"] and {e["channel"] for e in h["evidence"]} <= set(h["channels"])
    grouped = c.get("/api/search", params={"q": "exhibit 12", "group": "video"}).json()
    assert grouped["groups"][0]["hits"][0]["evidence"] == top["evidence"]


def test_channels_parameter(c, ids):
    speech = c.get("/api/search", params={"q": "exhibit 12", "channels": "speech"}).json()
    assert speech["hits"] and all(h["channels"] == ["speech"] for h in speech["hits"])
    assert set(speech["channels_found"]) == {"speech"}
    frames = c.get("/api/search", params={"q": "exhibit 12", "channels": "frames"}).json()
    assert frames["hits"] and all(h["channels"] == ["frames"] for h in frames["hits"])
    both = c.get("/api/search", params={"q": "exhibit 12", "channels": "text,speech,speech"})
    assert both.status_code == 200 and set(both.json()["channels_found"]) == {"speech", "text"}
    for bad in ("", "audio", "speech,", "speech,,text", "Speech", " speech", "frames;speech", "x" * 200):
        r = c.get("/api/search", params={"q": "exhibit 12", "channels": bad})
        assert r.status_code == 422, (bad, r.status_code, r.text[:200])
        assert "channels" in r.text


def test_openapi_documents_evidence_and_the_new_routes(c):
    spec = c.get("/openapi.json").json()
    paths = spec["paths"]
    assert "text/vtt" in paths["/api/videos/{video_id}/captions.vtt"]["get"]["responses"]["200"]["content"]
    assert "/api/videos/{video_id}/transcript" in paths
    schemas = spec["components"]["schemas"]
    assert {"channels", "evidence"} <= set(schemas["HitOut"]["required"])
    assert {"marks", "snippet", "speaker", "channel"} <= set(schemas["EvidenceOut"]["properties"])
    params = {p["name"]: p for p in paths["/api/search"]["get"]["parameters"]}
    assert "pattern" in params["channels"]["schema"]["anyOf"][0]


# -- snapshots: the served one's files, and what happens when gc took them ----------------------

def _recommit_with(idx, rel_path: str, segments: list[TextSegment]) -> None:
    """A newer snapshot in which ``rel_path`` has ``segments`` (what re-indexing an edited caption file does)."""
    from groundzero.data.proposals import make_windows, zero_shot_tokens
    from groundzero.store import tables
    from groundzero.store.manifest import require_manifest
    from groundzero.store.writer import IndexWriter, VideoEntry

    layout, m = require_manifest(idx)
    with IndexWriter.open(idx, m.model, m.params) as w:
        row = next(r for r in w.rows.values() if r["rel_path"] == rel_path)
        ts, emb = tables.read_frames(layout.path(row["frames_file"]))
        windows = make_windows(len(ts), m.params.fps, m.params.proposals)
        entry = VideoEntry(uri=row["uri"], rel_path=rel_path, size_bytes=int(row["size_bytes"]),
                           mtime_ns=time.time_ns(), content_hash="edited", duration_sec=float(row["duration_sec"]),
                           width=int(row["width"]), height=int(row["height"]))
        w.put_indexed(entry, "edited", ts, emb, windows,
                      zero_shot_tokens(emb, windows, m.params.proposals.tokens_per_proposal), segments=segments)
        w.commit("edited")


def _served(idx, reload_every_sec: float):
    from groundzero.search.service.app import create_app
    from groundzero.search.service.server import BackgroundServer
    from groundzero.search.service.state import IndexState

    cfg = make_cfg(idx, reload_every_sec=reload_every_sec)
    st = IndexState(cfg)
    return st, BackgroundServer(create_app(cfg, state=st))


EDITED = [TextSegment(2.0, 4.0, "The witness is excused.", "caption", speaker="JUDGE"),
          TextSegment(6.0, 7.0, "EXHIBIT 12", "ocr")]


def test_a_newer_snapshot_serves_its_own_transcript(text_index, text_rows, tmp_path):
    idx = copy_index(text_index, tmp_path / "index")
    vid = text_rows["talk/deposition.mp4"]["video_id"]
    st, server = _served(idx, reload_every_sec=0.05)
    with server as url, httpx.Client(base_url=url.rstrip("/"), timeout=60) as c:
        v0 = st.snapshot().version
        assert len(c.get(f"/api/videos/{vid}/transcript").json()) == 3
        _recommit_with(idx, "talk/deposition.mp4", EDITED)
        deadline = time.monotonic() + 30
        while c.get("/api/health").json()["index_version"] == v0:
            assert time.monotonic() < deadline, "the newer snapshot was never served"
            time.sleep(0.05)
        lines = c.get(f"/api/videos/{vid}/transcript").json()
        assert [(x["text"], x["speaker"], x["channel"]) for x in lines] == [
            ("The witness is excused.", "JUDGE", "speech"), ("EXHIBIT 12", "", "text")]
        cues = parse_vtt(c.get(f"/api/videos/{vid}/captions.vtt").text)  # on-screen text is not a caption
        assert [(s.start_sec, s.end_sec, s.text, s.speaker) for s in cues] == [
            (2.0, 4.0, "The witness is excused.", "JUDGE")]


def test_segments_file_deleted_by_gc_is_a_clear_503(text_index, text_rows, tmp_path):
    from groundzero.store.gc import RetentionPolicy, collect_garbage
    from groundzero.store.manifest import require_manifest

    idx = copy_index(text_index, tmp_path / "index")
    vid = text_rows["talk/deposition.mp4"]["video_id"]
    st, server = _served(idx, reload_every_sec=-1)  # stays on the old snapshot
    with server as url, httpx.Client(base_url=url.rstrip("/"), timeout=60) as c:
        old = st.snapshot().catalog[vid]["segments_file"]
        _recommit_with(idx, "talk/deposition.mp4", EDITED)
        layout, m = require_manifest(idx)
        collect_garbage(layout, m, RetentionPolicy(keep_snapshots=1, keep_sec=0))
        assert not (layout.root / old).exists()
        for route in ("captions.vtt", "transcript"):
            r = c.get(f"/api/videos/{vid}/{route}")
            assert r.status_code == 503, (route, r.status_code, r.text[:300])
            detail = r.json()["detail"]
            assert "garbage collection" in detail and old in detail and "restart" in detail
        assert c.get(f"/api/videos/{text_rows['silent.mp4']['video_id']}/captions.vtt").text == "WEBVTT\n"
        assert "garbage collection" in c.get("/api/health").json()["reload_error"]
