"""The JSON API over real HTTP: search (same answer as the CLI), filters, paging, grouping,
video metadata, byte ranges, thumbnails, and a clear 4xx for every kind of bad input."""

from __future__ import annotations

import http.client
import json
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from tests.serve.conftest import GOOD

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

QUERY = "a red circle"


def raw_get(base_url: str, target: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """GET with the request target sent byte for byte (httpx would normalise '..' and escapes)."""
    u = urlsplit(base_url)
    con = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        con.putrequest("GET", target, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            con.putheader(k, v)
        con.endheaders()
        r = con.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        con.close()


def test_health(client, index_dir):
    h = client.get("/api/health").json()
    assert h["status"] == "ok" and h["index_version"] >= 1 and h["videos"] == 3 and h["failed"] == 1
    assert h["grounding"] == "zero-shot" and h["auth"] is False and h["index_dir"] == str(index_dir)


def test_page_and_static_files_need_no_network(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert client.get("/watch").status_code == 200
    for asset in ("/static/app.js", "/static/style.css"):
        r = client.get(asset)
        assert r.status_code == 200, asset
        assert "http://" not in r.text and "https://" not in r.text, f"{asset} reaches the network"
    assert "http://" not in page.text and "https://" not in page.text
    assert client.get("/openapi.json").json()["paths"].keys() >= {
        "/api/search", "/api/videos/{video_id}", "/api/videos/{video_id}/stream",
        "/api/videos/{video_id}/thumbnail", "/api/health", "/api/folders"}


def test_search_answers_like_the_cli(client, index_dir):
    r = CliRunner().invoke(__import__("groundzero.cli.main", fromlist=["app"]).app,
                           ["search", QUERY, "--index", str(index_dir), "--top", "5", "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    cli = json.loads(r.stdout)
    api = client.get("/api/search", params={"q": QUERY, "k": 5, "limit": 5}).json()
    shared = set(cli) - {"timings_ms"}  # query, found, hits (and whatever SearchResult.to_dict adds)
    assert {"query", "found", "hits"} <= shared
    assert {k: api[k] for k in shared} == {k: cli[k] for k in shared}
    assert api["total"] == len(cli["hits"]) >= 1
    for h in api["hits"]:
        v = api["videos"][h["video_id"]]
        assert v["rel_path"] == h["rel_path"] and 0 <= h["start_sec"] < h["end_sec"] <= v["duration_sec"]
        assert h["start"].count(":") == 2  # hh:mm:ss.s, groundzero.data.spans.format_timestamp


def test_paging_walks_the_ranked_list(client):
    full = client.get("/api/search", params={"q": QUERY, "k": 20, "limit": 20}).json()
    assert full["total"] >= 3
    pages = [client.get("/api/search", params={"q": QUERY, "k": 20, "limit": 2, "offset": o}).json()
             for o in range(0, full["total"], 2)]
    assert len(pages[0]["hits"]) == 2
    assert [h for p in pages for h in p["hits"]] == full["hits"]
    assert all(p["total"] == full["total"] for p in pages)
    past = client.get("/api/search", params={"q": QUERY, "k": 20, "offset": 500}).json()
    assert past["hits"] == [] and past["total"] == full["total"]


def test_grouped_by_video(client):
    r = client.get("/api/search", params={"q": QUERY, "k": 30, "limit": 10, "group": "video"}).json()
    groups = r["groups"]
    assert r["group"] == "video" and r["total"] == len(groups) >= 2
    assert len({g["video_id"] for g in groups}) == len(groups)
    best = [g["best_score"] for g in groups]
    assert best == sorted(best, reverse=True)
    for g in groups:
        assert all(h["video_id"] == g["video_id"] for h in g["hits"])
        assert g["best_score"] == max(h["score"] for h in g["hits"])
    assert r["hits"] == [h for g in groups for h in g["hits"]]
    one = client.get("/api/search", params={"q": QUERY, "k": 30, "limit": 1, "offset": 1, "group": "video"}).json()
    assert [g["video_id"] for g in one["groups"]] == [groups[1]["video_id"]]


def _paths(client, **params) -> set[str]:
    r = client.get("/api/search", params={"q": QUERY, "k": 50, "limit": 100, **params})
    assert r.status_code == 200, r.text
    return {h["rel_path"] for h in r.json()["hits"]}


def test_filters_by_folder_duration_and_date(client):
    everything = _paths(client)
    assert everything == set(GOOD)
    assert _paths(client, folder="lectures") == {"lectures/a.mp4", "lectures/b.mp4"}
    assert _paths(client, folder="court/") == {"court/c.mp4"}
    assert _paths(client, folder="nowhere") == set()
    assert _paths(client, min_duration=61) == {"lectures/a.mp4"}  # 65 s
    assert _paths(client, max_duration=45) == {"lectures/b.mp4"}  # 40 s
    assert _paths(client, min_duration=50, max_duration=62) == {"court/c.mp4"}  # 60 s
    today, tomorrow = date.today(), date.today() + timedelta(days=1)
    assert _paths(client, since=str(today - timedelta(days=2)), until=str(tomorrow)) == everything
    assert _paths(client, since=str(tomorrow + timedelta(days=1))) == set()
    assert _paths(client, since=str(today - timedelta(days=1)), date_field="indexed") == everything
    assert _paths(client, until="2000-01-01", date_field="indexed") == set()
    folders = {f["folder"]: f["videos"] for f in client.get("/api/folders").json()}
    assert folders == {"lectures": 2, "court": 1}


def test_video_metadata(client, videos):
    row = videos["lectures/a.mp4"]
    v = client.get(f"/api/videos/{row['video_id']}").json()
    assert v["rel_path"] == "lectures/a.mp4" and v["folder"] == "lectures" and v["name"] == "a.mp4"
    assert v["status"] == "indexed" and abs(v["duration_sec"] - 65) < 0.5 and v["width"] == 160
    assert v["stream_url"] == f"/api/videos/{row['video_id']}/stream"
    failed = client.get(f"/api/videos/{videos['notes.txt']['video_id']}").json()
    assert failed["status"] == "failed" and failed["reason"] == "not_video"


def test_stream_whole_file_and_byte_ranges(client, videos):
    row = videos["lectures/a.mp4"]
    data = Path(row["uri"]).read_bytes()
    size, url = len(data), f"/api/videos/{row['video_id']}/stream"
    r = client.get(url)
    assert r.status_code == 200 and r.content == data and r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-type"] == "video/mp4" and int(r.headers["content-length"]) == size
    for header, (a, b) in {"bytes=0-99": (0, 99), "bytes=100-": (100, size - 1), "bytes=-50": (size - 50, size - 1),
                           f"bytes={size - 1}-{size + 500}": (size - 1, size - 1)}.items():
        r = client.get(url, headers={"Range": header})
        assert r.status_code == 206, header
        assert r.headers["content-range"] == f"bytes {a}-{b}/{size}" and r.content == data[a:b + 1], header
        assert int(r.headers["content-length"]) == b - a + 1
    for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=50-10", "bytes=abc", "bytes=-0",
                   "bytes=--5", "bytes=", "bytes=1-2-3"):
        r = client.get(url, headers={"Range": header})
        assert r.status_code == 416, header
        assert r.headers["content-range"] == f"bytes */{size}" and "detail" in r.json()
    for header in ("items=0-5", "bytes=0-1,5-9", "nonsense"):  # ignored (RFC 9110): the whole file
        r = client.get(url, headers={"Range": header})
        assert r.status_code == 200 and len(r.content) == size, header
    etag = r.headers["etag"]
    assert client.get(url, headers={"Range": "bytes=0-9", "If-Range": etag}).status_code == 206
    assert client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'}).status_code == 200


@pytest.mark.parametrize("header, status", [
    ("bytes=0-" + "9" * 5000, 206), ("bytes=-" + "9" * 5000, 206), ("bytes=" + "9" * 5000 + "-", 416),
    ("bytes=" + "9" * 5000 + "-" + "9" * 5000, 416), ("bytes=" + "0" * 5000 + "1-" + "0" * 5000 + "4", 206),
    ("bytes=1" + "0" * 4299 + "-", 416),
])
def test_range_numbers_of_any_length(client, videos, header, status):
    """Past int()'s 4300-digit limit: read as larger than the file, never a 500."""
    vid, size = videos["lectures/b.mp4"]["video_id"], videos["lectures/b.mp4"]["size_bytes"]
    r = client.get(f"/api/videos/{vid}/stream", headers={"Range": header})
    assert r.status_code == status, (r.status_code, r.text[:200])
    if status == 206:
        first, last = (1, 4) if header.startswith("bytes=0000") else (0, size - 1)
        assert r.headers["content-range"] == f"bytes {first}-{last}/{size}" and len(r.content) == last - first + 1


def test_thumbnail(client, videos):
    vid = videos["lectures/a.mp4"]["video_id"]
    for t in (0, 30.5, 64.9, 65):
        r = client.get(f"/api/videos/{vid}/thumbnail", params={"t": t, "w": 64})
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", (t, r.text[:200])
        assert r.content[:2] == b"\xff\xd8"
    for params in ({"t": 65.5}, {"t": -1}, {"t": "nan"}, {"t": "inf"}, {"t": "soon"}, {"w": 5}, {"w": 10_000}):
        r = client.get(f"/api/videos/{vid}/thumbnail", params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["detail"]
    failed = videos["notes.txt"]["video_id"]
    assert client.get(f"/api/videos/{failed}/thumbnail").status_code == 404
    assert client.get(f"/api/videos/{failed}/stream").status_code == 404


@pytest.mark.parametrize("params, status, words", [
    ({}, 422, "q"),
    ({"q": ""}, 422, "q"),
    ({"q": "   \t "}, 422, "empty"),
    ({"q": "\u200b\u200c\u200d\u2060\ufeff"}, 422, "empty"),  # only zero-width characters
    ({"q": "\x00\u00ad\u202e \x1b"}, 422, "empty"),  # only controls and format characters
    ({"q": "x" * 1001}, 422, "1000"),
    ({"q": QUERY, "k": 0}, 422, "k"),
    ({"q": QUERY, "k": 100_000}, 422, "k"),
    ({"q": QUERY, "limit": 0}, 422, "limit"),
    ({"q": QUERY, "offset": -1}, 422, "offset"),
    ({"q": QUERY, "min_duration": -5}, 422, "min_duration"),
    ({"q": QUERY, "min_duration": "nan"}, 422, "min_duration"),
    ({"q": QUERY, "min_duration": 100, "max_duration": 10}, 422, "larger than"),
    ({"q": QUERY, "since": "yesterday"}, 422, "since"),
    ({"q": QUERY, "since": "2024-02-30"}, 422, "since"),
    ({"q": QUERY, "since": "2024-05-01", "until": "2024-01-01"}, 422, "after"),
    ({"q": QUERY, "group": "folder"}, 422, "group"),
    ({"q": QUERY, "date_field": "birthday"}, 422, "date_field"),
])
def test_bad_search_parameters_are_422(client, params, status, words):
    r = client.get("/api/search", params=params)
    assert r.status_code == status, r.text
    assert words in json.dumps(r.json()["detail"])


@pytest.mark.parametrize("target", [
    "/api/search?q=%ff", "/api/search?q=caf%C3", "/api/search?q=%C0%AF", "/api/search?q=ok&folder=%fe%ff",
    "/api/search?q=%ED%A0%80",  # a lone UTF-16 surrogate, encoded: not UTF-8
    "/api/videos/x/thumbnail?t=1&w=%ff",
])
def test_query_strings_that_are_not_utf8_are_400(base_url, target):
    status, _, body = raw_get(base_url, target)
    assert status == 400, (target, body)
    assert b"UTF-8" in body


def test_huge_query_string_is_refused_not_crashed(base_url):
    status, _, _ = raw_get(base_url, "/api/search?q=" + "a%20" * 6000)
    assert 400 <= status < 500


@pytest.mark.parametrize("suffix", ["", "/stream", "/thumbnail?t=1"])
@pytest.mark.parametrize("vid", [
    "0000000000000000", "nope", "..%2f..%2f..%2fetc%2fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%2e%2e", "..", "%2Fetc%2Fpasswd", "..%5c..%5cwindows", "%00", "a" * 5000, "%ff%fe",
    "lectures%2Fa.mp4", "a.mp4", "~root",
])
def test_unknown_and_traversal_ids_are_404(base_url, vid, suffix):
    status, _, body = raw_get(base_url, f"/api/videos/{vid}{suffix}")
    assert status == 404, (vid, suffix, status, body[:200])
    assert b"ftyp" not in body and b"root:" not in body


def test_raw_traversal_paths_and_file_paths_as_ids_are_404(base_url, videos):
    uri = videos["lectures/a.mp4"]["uri"]
    targets = ["/api/videos/../../../../etc/passwd", "/api/videos/../../../../etc/passwd/stream",
               "/api/videos//etc/passwd/stream", f"/api/videos/{uri}/stream",
               f"/api/videos/{uri.replace('/', '%2F')}/stream", "/static/../search/service/app.py",
               "/static/%2e%2e/app.py", "/static/..%2fapp.py", "/static/%2e%2e%2f%2e%2e%2fcore%2ferrors.py",
               "/static/" + uri]
    for t in targets:
        status, _, body = raw_get(base_url, t)
        assert status == 404, (t, status)
        assert b"ftyp" not in body and b"import" not in body, t
