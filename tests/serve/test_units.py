"""The service's pure parts, without a server: byte ranges, filters and pages, UTF-8 and S3 links."""

from __future__ import annotations

from datetime import date

import pytest

from groundzero.errors import ConfigError
from groundzero.search.results import Hit, SearchResult
from groundzero.search.service.guards import invalid_utf8_param
from groundzero.search.service.media import (
    ByteRange,
    RangeNotSatisfiable,
    Thumbnailer,
    ThumbnailError,
    content_type,
    iter_file,
    parse_range,
)
from groundzero.search.service.query import Filters, page_of
from groundzero.search.service.state import folder_of
from groundzero.store.s3 import presigned_url


@pytest.mark.parametrize("header, want", [
    (None, None), ("", None), ("bytes=0-0", ByteRange(0, 0)), ("bytes=0-99", ByteRange(0, 99)),
    ("bytes=10-", ByteRange(10, 999)), ("bytes=-1", ByteRange(999, 999)), ("bytes=-5000", ByteRange(0, 999)),
    ("bytes=990-5000", ByteRange(990, 999)), (" bytes = 5 - 9 ", ByteRange(5, 9)), ("BYTES=1-2", ByteRange(1, 2)),
    ("items=0-5", None), ("bytes=0-1,4-5", None), ("nonsense", None),
])
def test_parse_range(header, want):
    assert parse_range(header, 1000) == want


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5-2", "bytes=", "bytes=-", "bytes=-0", "bytes=a-b",
                                    "bytes=1-2-3", "bytes=0x10-", "bytes=١-٢"])
def test_unsatisfiable_ranges(header):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 1000)


HUGE = "9" * 5000  #: past int()'s 4300-digit limit


@pytest.mark.parametrize("header, want", [
    (f"bytes=0-{HUGE}", ByteRange(0, 999)), (f"bytes=-{HUGE}", ByteRange(0, 999)),
    (f"bytes=10-{HUGE}0", ByteRange(10, 999)), ("bytes=" + "0" * 5000 + "5-" + "0" * 6000 + "9", ByteRange(5, 9)),
    ("bytes=0-" + "9" * 19, ByteRange(0, 999)), ("bytes=" + "0" * 4400 + "-" + "0" * 4400 + "1", ByteRange(0, 1)),
    (f"bytes={HUGE}-0,0-1", None),
])
def test_huge_numbers_in_ranges(header, want):
    assert parse_range(header, 1000) == want


@pytest.mark.parametrize("header", [f"bytes={HUGE}-", f"bytes={HUGE}-{HUGE}", f"bytes={HUGE}-1", "bytes=1" + "0" * 18 + "-",
                                    f"bytes=5-{HUGE}x", f"bytes={HUGE}", "bytes=-" + "0" * 5000, f"bytes={HUGE}-{HUGE[:-1]}"])
def test_huge_unsatisfiable_ranges(header):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 1000)


def test_empty_file_has_no_satisfiable_range():
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=0-", 0)


def test_iter_file_reads_exactly_the_range(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(bytes(range(256)) * 10)
    assert b"".join(iter_file(str(f), 5, 1000, chunk=7)) == f.read_bytes()[5:1005]
    assert b"".join(iter_file(str(f), 2500, 1000)) == f.read_bytes()[2500:]  # past the end: what there is


def test_content_types():
    assert content_type("/a/b.MP4") == "video/mp4" and content_type("x.webm") == "video/webm"
    assert content_type("x.unknownext") == "application/octet-stream"


def test_invalid_utf8():
    assert invalid_utf8_param(b"") is None and invalid_utf8_param(b"q=%E2%82%AC+x&k=1") is None
    assert invalid_utf8_param(b"q=ok&f=%ff") == "f=%ff"
    assert invalid_utf8_param(b"q=\xff") is not None  # raw, unescaped bytes too


def test_folder_of():
    assert folder_of("a/b/c.mp4") == "a/b" and folder_of("c.mp4") == "" and folder_of("./c.mp4") == ""


def _row(vid, rel, dur, mtime_ns=1_700_000_000 * 10**9, updated="2024-06-01T10:00:00+00:00"):
    return {"video_id": vid, "rel_path": rel, "duration_sec": dur, "mtime_ns": mtime_ns, "updated_at": updated,
            "status": "indexed"}


CATALOG = {"a": _row("a", "x/a.mp4", 60), "b": _row("b", "x/y/b.mp4", 600), "c": _row("c", "c.mp4", 6000,
                                                                                     updated="2025-01-01T00:00:00")}


def _hit(vid, start, score):
    return Hit(vid, f"/{vid}", CATALOG[vid]["rel_path"], start, start + 10, score, 0.7)


RESULT = SearchResult("q", [_hit("a", 0, 0.9), _hit("b", 5, 0.8), _hit("a", 30, 0.7), _hit("c", 1, 0.6),
                            _hit("b", 50, 0.5)], True, {})


def test_page_filters_keep_rank_order():
    def ids(**kw):
        return [(h.video_id, h.start_sec) for h in page_of(RESULT, CATALOG, Filters(**kw).validate(), 0, 10,
                                                           False).result.hits]
    assert ids() == [(h.video_id, h.start_sec) for h in RESULT.hits]
    assert ids(folder="x") == [("a", 0), ("b", 5), ("a", 30), ("b", 50)]
    assert ids(folder="x/y") == [("b", 5), ("b", 50)] == ids(folder="/x/y/")
    assert ids(folder="x/") == ids(folder="x") and ids(folder="xy") == []
    assert ids(min_duration_sec=600) == [("b", 5), ("c", 1), ("b", 50)]
    assert ids(max_duration_sec=600, min_duration_sec=100) == [("b", 5), ("b", 50)]
    assert ids(since=date(2023, 11, 14)) == ids()  # mtime 1.7e9 s = 2023-11-14 22:13 UTC
    assert ids(since=date(2023, 11, 15)) == [] and ids(until=date(2023, 11, 14)) == ids()
    assert ids(since=date(2024, 12, 31), date_field="indexed") == [("c", 1)]  # naive time: read as UTC
    assert ids(until=date(2024, 6, 1), date_field="indexed") == [("a", 0), ("b", 5), ("a", 30), ("b", 50)]


def test_pages_and_groups():
    p = page_of(RESULT, CATALOG, Filters(), 1, 2, False)
    assert p.total == 5 and [h.score for h in p.result.hits] == [0.8, 0.7] and p.groups is None
    g = page_of(RESULT, CATALOG, Filters(), 0, 10, True)
    assert g.total == 3 and [x.video_id for x in g.groups] == ["a", "b", "c"]
    assert [h.start_sec for h in g.groups[0].hits] == [0, 30]
    assert [h.video_id for h in g.result.hits] == ["a", "a", "b", "b", "c"]
    g2 = page_of(RESULT, CATALOG, Filters(), 1, 1, True)
    assert [x.video_id for x in g2.groups] == ["b"] and g2.total == 3
    assert page_of(RESULT, {"a": CATALOG["a"]}, Filters(), 0, 10, False).total == 2  # unknown ids dropped


@pytest.mark.parametrize("kw, words", [
    ({"date_field": "born"}, "date_field"), ({"min_duration_sec": 5, "max_duration_sec": 1}, "larger"),
    ({"since": date(2024, 2, 1), "until": date(2024, 1, 1)}, "after"),
])
def test_bad_filters(kw, words):
    with pytest.raises(ConfigError, match=words):
        Filters(**kw).validate()


def test_presigned_url_is_local_and_signed(monkeypatch):
    import boto3

    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="AKIAEXAMPLE",
                          aws_secret_access_key="secret")
    url = presigned_url("s3://my-bucket/dir/v 1.mp4", 600, client=client)
    assert url.startswith("https://my-bucket.s3.amazonaws.com/dir/v%201.mp4?") and "Signature" in url
    assert "Expires=" in url or "X-Amz-Expires=600" in url
    for bad in ("s3://", "s3://bucket", "s3:///key"):
        with pytest.raises(ValueError):
            presigned_url(bad, client=client)


def test_thumbnail_errors_are_typed(tmp_path):
    t = Thumbnailer(timeout_sec=10)
    with pytest.raises(ThumbnailError, match="no frame"):
        t.jpeg(str(tmp_path / "missing.mp4"), 1.0, 64)
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(ThumbnailError):
        t.jpeg(str(tmp_path / "text.mp4"), 0.0, 64)
    with pytest.raises(ThumbnailError, match="ffmpeg is not installed"):
        Thumbnailer(ffmpeg=str(tmp_path / "no-ffmpeg")).jpeg(str(tmp_path / "text.mp4"), 0.0, 64)


def test_thumbnails_run_a_bounded_number_of_ffmpegs(tmp_path):
    """A burst of distinct frames from many threads: at most ``max_procs`` ffmpeg processes at once."""
    from concurrent.futures import ThreadPoolExecutor

    from tests import media

    video = str(media.make_testsrc(tmp_path / "t.mp4", 4, fps=5))
    t = Thumbnailer(max_procs=2)
    with ThreadPoolExecutor(12) as pool:
        frames = list(pool.map(lambda i: t.jpeg(video, i * 0.1, 48), range(36)))
    assert all(f[:2] == b"\xff\xd8" for f in frames)
    assert 1 <= t.peak <= 2 and t.running == 0
    assert Thumbnailer().max_procs >= 1


def test_thumbnail_in_the_last_frame_interval_is_the_last_frame(tmp_path):
    """At 1 fps the last frame stands for [duration - 1, duration): a grab at any t in there finds it."""
    from tests import media

    video = str(media.make_testsrc(tmp_path / "one.mp4", 8, fps=1))
    t = Thumbnailer(max_procs=1)
    last = t.jpeg(video, 7.0, 48)
    for at in (7.4, 7.5, 7.9, 8.0):
        assert t.jpeg(video, at, 48) == last, at
    short = str(media.make_testsrc(tmp_path / "short.mp4", 0.4, fps=1))  # one frame, at 0
    assert t.jpeg(short, 0.4, 48) == t.jpeg(short, 0.0, 48)


def test_thumbnail_procs_must_not_be_negative():
    from groundzero.search.service.config import ServeConfig

    with pytest.raises(ConfigError, match="thumb_procs") as e:
        ServeConfig(index_dir="x", thumb_procs=-1).validate()
    assert e.value.field == "thumb_procs"
