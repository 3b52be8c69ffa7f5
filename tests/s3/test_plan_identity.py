"""Content identity in incremental plans: ETag + size for S3, size + mtime then SHA-256 for local files."""

import os

import pyarrow as pa
import pyarrow.parquet as pq

from groundzero.indexer.plan import make_plan
from groundzero.indexer.rows import file_sha256
from groundzero.store.catalog import CATALOG_SCHEMA, RunRecord, connect, read_catalog
from groundzero.store.layout import IndexLayout
from groundzero.store.writer import VideoEntry


def _row(e: VideoEntry, status="indexed", reason="", content_hash="", content_id=""):
    return {"uri": e.uri, "size_bytes": e.size_bytes, "mtime_ns": e.mtime_ns, "status": status,
            "reason": reason, "content_hash": content_hash, "content_id": content_id}


def _entry(path) -> VideoEntry:
    st = os.stat(path)
    return VideoEntry(uri=str(path), rel_path=path.name, size_bytes=st.st_size, mtime_ns=st.st_mtime_ns)


def test_local_touch_is_not_a_change_but_an_edit_is(tmp_path):
    a, b, c = (tmp_path / n for n in ("a.mp4", "b.mp4", "c.mp4"))
    for p in (a, b, c):
        p.write_bytes(p.name.encode() * 100)
    before = {p: _entry(p) for p in (a, b, c)}
    previous = {str(p): _row(e, content_hash=file_sha256(str(p))) for p, e in before.items()}
    hashed = []

    def spy(path):
        hashed.append(os.path.basename(path))
        return file_sha256(path)

    os.utime(a, ns=(before[a].mtime_ns + 10**9,) * 2)  # touch: same bytes, new mtime
    b.write_bytes(b"B" * len(b"b.mp4" * 100))  # edited in place: same size, other bytes
    os.utime(b, ns=(before[b].mtime_ns + 10**9,) * 2)
    plan = make_plan([_entry(p) for p in (a, b, c)], previous, retry_failed=False, hash_file=spy)
    assert [e.rel_path for e in plan.unchanged] == ["a.mp4", "c.mp4"]
    assert [e.rel_path for e in plan.changed] == ["b.mp4"]
    assert sorted(hashed) == ["a.mp4", "b.mp4"]  # c's size and mtime matched: never read
    (touched,) = plan.touched  # a's new mtime is recorded so the next run takes the fast path
    assert touched.rel_path == "a.mp4" and touched.content_id == f"sha256:{file_sha256(str(a))}"

    c.write_bytes(b"longer now" * 100)  # size differs: changed without hashing
    hashed.clear()
    plan = make_plan([_entry(c)], {str(c): previous[str(c)]}, retry_failed=False, hash_file=spy)
    assert [e.rel_path for e in plan.changed] == ["c.mp4"] and hashed == []


def test_local_file_never_hashed_before_counts_as_changed(tmp_path):
    p = tmp_path / "bad.mp4"
    p.write_bytes(b"x" * 10)
    e = _entry(p)
    old = _row(e, status="failed", reason="not_video")  # failures have no content hash
    moved = VideoEntry(e.uri, e.rel_path, e.size_bytes, e.mtime_ns + 1)
    assert make_plan([moved], {e.uri: old}, False).changed == [moved]
    assert make_plan([e], {e.uri: old}, False).unchanged == [e]  # not retried without --retry-failed
    assert make_plan([e], {e.uri: old}, True).retry == [e]


def test_s3_identity_is_etag_and_size():
    e = VideoEntry("s3://b/a.mp4", "a.mp4", 100, 5, content_id="etag:abc")
    old = _row(e, content_id="etag:abc")
    later = VideoEntry(e.uri, e.rel_path, 100, 9, content_id="etag:abc")  # LastModified moved only
    plan = make_plan([later], {e.uri: old}, False, hash_file=lambda p: 1 / 0)
    assert plan.unchanged == [later] and plan.touched == [later]
    other = VideoEntry(e.uri, e.rel_path, 100, 9, content_id="etag:def")
    assert make_plan([other], {e.uri: old}, False).changed == [other]
    resized = VideoEntry(e.uri, e.rel_path, 101, 5, content_id="etag:abc")
    assert make_plan([resized], {e.uri: old}, False).changed == [resized]
    unknown = _row(e, content_id="")  # a row written before content ids: unknown -> re-index
    assert make_plan([e], {e.uri: unknown}, False).changed == [e]


def test_fetch_failures_are_retried_without_asking_and_deleted_files_removed():
    e = VideoEntry("s3://b/a.mp4", "a.mp4", 100, 5, content_id="etag:abc")
    plan = make_plan([e], {e.uri: _row(e, "failed", "fetch_failed", content_id="etag:abc"),
                           "s3://b/gone.mp4": _row(VideoEntry("s3://b/gone.mp4", "gone.mp4", 1, 1))}, False)
    assert plan.retry == [e] and plan.removed == ["s3://b/gone.mp4"]
    assert plan.counts() == {"new": 0, "changed": 0, "retry": 1, "unchanged": 0, "removed": 1}


def test_catalogs_and_run_records_from_before_content_ids_stay_readable(tmp_path):
    """A snapshot written without the content_id column: read_catalog and the videos view give ""."""
    layout = IndexLayout(tmp_path)
    layout.make_dirs()
    old_schema = pa.schema([f for f in CATALOG_SCHEMA if f.name != "content_id"])
    row = {f.name: None for f in old_schema}
    row.update(video_id="v", video_seq=0, uri="/a.mp4", rel_path="a.mp4", size_bytes=1, mtime_ns=1,
               status="failed", reason="not_video", frames_file="", proposals_file="", run_id="r1")
    pq.write_table(pa.Table.from_pylist([row], schema=old_schema), layout.path("catalog/videos-000001.parquet"))
    (layout.runs_dir / "r1.json").write_text('{"run_id": "r1", "archive": "/a", "model": "m", '
                                              '"started_at": "2026-01-01T00:00:00+00:00", "status": "completed"}')

    class M:  # only what read_catalog / connect use
        catalog_file = "catalog/videos-000001.parquet"

    assert read_catalog(layout, M)[0]["content_id"] == ""
    con = connect(layout, M)
    assert con.execute("SELECT content_id, reason FROM videos").fetchall() == [("", "not_video")]
    assert con.execute("SELECT run_id, n_retry, failures_by_reason FROM runs").fetchall() == [("r1", 0, {})]
    assert RunRecord.from_dict({"run_id": "x", "archive": "", "model": "", "started_at": "",
                                "a_field_from_the_future": 1}).run_id == "x"
