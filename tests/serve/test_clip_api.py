"""``GET /api/clip/{video_id}``: a span of an indexed video as a download, found by id only (never a
path from the client), bounded in length, its temporary file gone once sent."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import tempfile

import httpx
import pytest

from tests.serve.conftest import TOKEN, make_cfg
from tests.serve.test_api import raw_get

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def leftovers() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "gz-clip-*")))


def video_seconds(data: bytes, tmp_path) -> float:
    f = tmp_path / "got.mp4"
    f.write_bytes(data)
    r = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
                        "stream=codec_name,nb_read_packets", "-of", "json", str(f)], capture_output=True, text=True,
                       check=True)
    s = json.loads(r.stdout)["streams"][0]
    assert s["codec_name"] == "h264"
    return int(s["nb_read_packets"]) / 10  # the test archive is 10 fps


def test_a_clip_downloads_as_a_video_file(client, videos, tmp_path):
    before = leftovers()
    row = videos["lectures/a.mp4"]
    r = client.get(f"/api/clip/{row['video_id']}", params={"start": 21.0, "end": 31.0})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "video/mp4" and int(r.headers["content-length"]) == len(r.content) > 0
    cd = r.headers["content-disposition"]
    assert cd.startswith("attachment;") and 'filename="a_00h00m21.0s-00h00m31.0s.mp4"' in cd
    start, end = float(r.headers["x-clip-start-sec"]), float(r.headers["x-clip-end-sec"])
    assert start <= 21.0 and end == pytest.approx(31.0, abs=0.11)  # a copy starts on the keyframe at or before
    assert video_seconds(r.content, tmp_path) == pytest.approx(end - start, abs=0.11)

    exact = client.get(f"/api/clip/{row['video_id']}", params={"start": 21.0, "end": 31.0, "exact": 1})
    assert exact.status_code == 200
    assert float(exact.headers["x-clip-start-sec"]) == 21.0
    assert video_seconds(exact.content, tmp_path) == pytest.approx(10.0, abs=0.11)
    assert leftovers() <= before  # the temporary files are gone


def test_the_end_is_cut_to_the_video(client, videos):
    row = videos["lectures/b.mp4"]  # 40 s long
    r = client.get(f"/api/clip/{row['video_id']}", params={"start": 35, "end": 1e6})
    assert r.status_code == 200 and float(r.headers["x-clip-end-sec"]) == pytest.approx(40.0, abs=0.11)


@pytest.mark.parametrize("params, needle", [
    ({"start": 10, "end": 5}, "must be after"), ({"start": 10, "end": 10}, "must be after"),
    ({"start": 65, "end": 70}, "at or past the end"), ({"start": 1e9, "end": 2e9}, "at or past the end"),
    ({"start": -1, "end": 5}, ""), ({"start": "nan", "end": 5}, ""), ({"start": 1, "end": "inf"}, ""),
    ({"start": 1}, ""), ({"end": 1}, ""), ({"start": "abc", "end": 2}, ""), ({"start": 0, "end": 2, "exact": "x"}, ""),
])
def test_bad_spans_are_422(client, videos, params, needle):
    r = client.get(f"/api/clip/{videos['lectures/a.mp4']['video_id']}", params=params)
    assert r.status_code == 422, (params, r.text)
    assert needle in json.dumps(r.json()["detail"])


@pytest.mark.parametrize("vid", [
    "0000000000000000", "nope", "..%2f..%2f..%2fetc%2fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "%2e%2e",
    "..%5c..%5cwindows", "%00", "a" * 5000, "lectures%2Fa.mp4", "a.mp4", "~root",
])
def test_unknown_and_traversal_ids_are_404(base_url, vid):
    status, _, body = raw_get(base_url, f"/api/clip/{vid}?start=0&end=1")
    assert status == 404, (vid, status, body[:200])


def test_raw_traversal_paths_and_file_paths_are_404(base_url, videos):
    uri = videos["lectures/a.mp4"]["uri"]
    for target in ["/api/clip/../../../../etc/passwd?start=0&end=1", "/api/clip/../videos?start=0&end=1",
                   f"/api/clip/{uri}?start=0&end=1", f"/api/clip/{uri.replace('/', '%2F')}?start=0&end=1"]:
        status, _, body = raw_get(base_url, target)
        assert status == 404, (target, status, body[:200])


def test_a_video_that_failed_to_index_is_404(client, videos):
    r = client.get(f"/api/clip/{videos['notes.txt']['video_id']}", params={"start": 0, "end": 1})
    assert r.status_code == 404 and "could not be indexed" in r.json()["detail"]


def test_the_longest_clip_is_configurable(index_dir, state, videos):
    from groundzero.search.service.app import create_app
    from groundzero.search.service.server import BackgroundServer

    vid = videos["lectures/a.mp4"]["video_id"]
    with BackgroundServer(create_app(make_cfg(index_dir, max_clip_sec=5), state=state)) as url:
        too_long = httpx.get(f"{url}api/clip/{vid}", params={"start": 0, "end": 6}, timeout=60)
        assert too_long.status_code == 422 and "longer than the 5 s" in too_long.json()["detail"]
        assert httpx.get(f"{url}api/clip/{vid}", params={"start": 0, "end": 5}, timeout=60).status_code == 200


def test_a_clip_needs_the_token(token_url, videos):
    url = f"{token_url}/api/clip/{videos['lectures/a.mp4']['video_id']}?start=0&end=2"
    assert httpx.get(url, timeout=60).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60).status_code == 200


def test_videos_name_their_clip_url(client, videos):
    row = videos["lectures/a.mp4"]
    assert client.get(f"/api/videos/{row['video_id']}").json()["clip_url"] == f"/api/clip/{row['video_id']}"


def test_search_export_cuts_the_top_hits(index_dir, tmp_path):
    from typer.testing import CliRunner

    from groundzero.cli.main import app

    out = tmp_path / "clips"
    r = CliRunner().invoke(app, ["search", "a red circle", "--index", str(index_dir), "--top", "3", "--device", "cpu",
                                 "--json", "--export", str(out)])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)["hits"]
    names = [os.path.basename(h["clip"]["path"]) for h in hits]
    assert len(hits) == 3 and names == sorted(os.listdir(out)) and names[0].startswith("01_")
    for h in hits:
        assert h["clip"]["start_sec"] <= h["start_sec"] and h["clip"]["bytes"] > 0
    again = CliRunner().invoke(app, ["search", "a red circle", "--index", str(index_dir), "--top", "3",
                                     "--device", "cpu", "--export", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output and "Traceback" not in again.output
