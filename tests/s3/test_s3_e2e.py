"""End to end over a real S3 API: `groundzero index s3://... --index s3://...`, nightly runs,
catalog and search on the S3 index, per-file fetch failures and a failed publish."""

import json
import uuid

import pytest
from typer.testing import CliRunner

from groundzero.cli.main import EXIT_SOME_FAILED, app
from groundzero.store.catalog import connect, read_catalog
from groundzero.store.manifest import require_manifest
from groundzero.store.s3_index import resolve_index_dir
from tests.s3.conftest import upload

pytestmark = [pytest.mark.s3, pytest.mark.e2e, pytest.mark.slow]

SECONDS = {"a.mp4": 5, "b.mp4": 4, "c.mp4": 4, "b2.mp4": 6, "d.mp4": 3, "e.mp4": 4}


@pytest.fixture(scope="module")
def world(direct, proxy, clips, tiny_model_dir, ray_session, tmp_path_factory):
    """An S3 archive (a, b, sub/c and a text file) indexed into an S3 index, under throttling."""
    bucket = f"gz-e2e-{uuid.uuid4().hex[:8]}"
    direct.create_bucket(Bucket=bucket)
    for key, clip in (("archive/a.mp4", "a.mp4"), ("archive/b.mp4", "b.mp4"), ("archive/sub/c.mp4", "c.mp4")):
        upload(direct, bucket, key, clips[clip])
    upload(direct, bucket, "archive/notes.txt", b"not a video\n" * 50)
    w = {"bucket": bucket, "archive": f"s3://{bucket}/archive", "index": f"s3://{bucket}/index",
         "cache": tmp_path_factory.mktemp("cache"), "model": str(tiny_model_dir), "endpoint": proxy.endpoint}
    proxy.clear()
    # throttle the first downloads of videos, from the Ray decode tasks (other processes)
    w["slow"] = [proxy.inject("GET", r"^/[^?]*/archive/.*\.mp4$", 503, "SlowDown", times=1),
                 proxy.inject("HEAD", r"^/[^?]*/archive/.*\.mp4$", 503, "SlowDown", times=1)]
    w["first"] = index(w)
    w["log"] = list(proxy.log)
    proxy.clear()
    return w


def index(w, *extra, index_to=None):
    return CliRunner().invoke(app, ["index", w["archive"], "--index", index_to or w["index"], "--cache-dir",
                                    str(w["cache"]), "--endpoint-url", w["endpoint"], "--model", w["model"],
                                    "--device", "cpu", "--json", *extra])


def latest(direct, w) -> int:
    return json.loads(direct.get_object(Bucket=w["bucket"], Key="index/LATEST")["Body"].read())["version"]


def test_s3_archive_is_indexed_into_an_s3_index_through_throttling(world, direct):
    r = world["first"]
    assert r.exit_code == EXIT_SOME_FAILED, r.output
    report = json.loads(r.stdout)
    assert report["run"]["n_indexed"] == 3 and report["run"]["n_failed"] == 1
    assert [(f["rel_path"], f["reason"]) for f in report["failures"]] == [("notes.txt", "not_video")]
    assert report["run"]["index"] == world["index"] and report["run"]["n_commits"] == 1
    assert [f.served for f in world["slow"]] == [1, 1]  # injected into Ray workers' requests, retried
    assert sum(s == 503 for _, _, s in world["log"]) == 2
    assert latest(direct, world) == 1


def test_catalog_summary_and_sql_read_the_s3_index(world, tmp_path):
    runner = CliRunner()
    where = ["--index", world["index"], "--endpoint-url", world["endpoint"], "--cache-dir", str(tmp_path / "c")]
    r = runner.invoke(app, ["catalog", "summary", *where, "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["videos_indexed"] == 3 and s["videos_failed"] == 1
    assert abs(s["hours_indexed"] - 13 / 3600) < 1e-3
    assert s["last_run"]["failures_by_reason"] == {"not_video": 1} and s["last_run"]["status"] == \
        "completed_with_failures"
    assert [f["rel_path"] for f in s["last_run_failures"]] == ["notes.txt"]
    r = runner.invoke(app, ["catalog", "summary", *where])
    assert "3 videos indexed" in r.stdout and "failures by reason: not_video 1" in r.stdout, r.stdout
    r = runner.invoke(app, ["catalog", "sql", *where, "--json",
                            "SELECT r.n_indexed, f.reason, f.n FROM runs r JOIN run_failures f USING (run_id)"])
    assert json.loads(r.stdout) == [{"n_indexed": 3, "reason": "not_video", "n": 1}]
    r = runner.invoke(app, ["catalog", "sql", *where, "--json", "SELECT count(*) AS n FROM frames"])
    assert json.loads(r.stdout) == [{"n": 13}], r.output  # frames pulled on demand


def test_search_reads_the_s3_index(world, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL", world["endpoint"])
    monkeypatch.setenv("GROUNDZERO_CACHE_DIR", str(tmp_path))
    r = CliRunner().invoke(app, ["search", "a red screen", "--index", world["index"], "--json", "--top", "3"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)["hits"]
    assert hits and {h["rel_path"] for h in hits} <= {"a.mp4", "b.mp4", "sub/c.mp4"}


def test_nightly_run_skips_unchanged_reindexes_changed_and_removes_deleted(world, direct, clips, tmp_path):
    b = world["bucket"]
    r = index(world, "--dry-run")
    assert json.loads(r.stdout)["counts"] == {"new": 0, "changed": 0, "retry": 0, "unchanged": 4, "removed": 0}
    upload(direct, b, "archive/b.mp4", clips["b2.mp4"])  # a new version
    direct.delete_object(Bucket=b, Key="archive/sub/c.mp4")
    upload(direct, b, "archive/d.mp4", clips["d.mp4"])
    direct.copy_object(Bucket=b, Key="archive/a.mp4", CopySource={"Bucket": b, "Key": "archive/a.mp4"},
                       Metadata={"touched": "1"}, MetadataDirective="REPLACE")  # new LastModified, same ETag
    r = index(world, "--dry-run")
    plan = json.loads(r.stdout)
    assert (plan["new"], plan["changed"], plan["unchanged"], plan["retry"]) == \
        (["d.mp4"], ["b.mp4"], ["a.mp4", "notes.txt"], [])
    assert plan["removed"] == [f"s3://{b}/archive/sub/c.mp4"]
    r = CliRunner().invoke(app, ["index", world["archive"], "--index", world["index"], "--cache-dir",
                                 str(world["cache"]), "--endpoint-url", world["endpoint"], "--dry-run"])
    assert "2 to index (1 new, 1 changed, 0 retry), 2 unchanged, 1 to remove" in r.stdout, r.stdout
    assert "sub/c.mp4" in r.stdout and "d.mp4" in r.stdout

    r = index(world)
    assert r.exit_code == 0, r.output
    run = json.loads(r.stdout)["run"]
    assert (run["n_indexed"], run["n_unchanged"], run["n_removed"], run["n_failed"]) == (2, 2, 1, 0)
    assert latest(direct, world) == 2
    layout, m = require_manifest(resolve_index_dir(world["index"], _cfg(world), tmp_path / "r"))
    rows = {r["rel_path"]: r for r in read_catalog(layout, m)}
    assert sorted(rows) == ["a.mp4", "b.mp4", "d.mp4", "notes.txt"]
    etag = direct.head_object(Bucket=b, Key="archive/b.mp4")["ETag"].strip('"')
    assert rows["b.mp4"]["content_id"] == f"etag:{etag}" and rows["b.mp4"]["n_frames"] == SECONDS["b2.mp4"]
    assert rows["a.mp4"]["run_id"] != run["run_id"]  # a was not re-indexed
    assert connect(layout, m).execute("SELECT count(*) FROM frames").fetchone()[0] == 5 + 6 + 3


def test_fetch_failure_is_per_file_and_retried_by_the_next_run(world, proxy, tmp_path):
    """S3 archive -> local index; one object cannot be read."""
    proxy.clear()
    proxy.inject("*", r"^/[^?]*/archive/a\.mp4$", 403, "AccessDenied", times=-1)
    local = str(tmp_path / "local-index")
    try:
        r = index(world, index_to=local)
    finally:
        proxy.clear()
    assert r.exit_code == EXIT_SOME_FAILED, r.output
    report = json.loads(r.stdout)
    assert report["run"]["n_indexed"] == 2  # b, d
    failures = {f["rel_path"]: f for f in report["failures"]}
    assert failures["a.mp4"]["reason"] == "fetch_failed" and "access denied" in failures["a.mp4"]["error"]
    assert failures["a.mp4"]["uri"] in failures["a.mp4"]["error"]  # names the object, not a temp file
    r = index(world, "--dry-run", index_to=local)
    assert json.loads(r.stdout)["retry"] == ["a.mp4"]  # fetch failures are retried without asking


def test_a_failed_publish_leaves_the_previous_snapshot_whole(world, direct, proxy, clips, monkeypatch, tmp_path):
    upload(direct, world["bucket"], "archive/e.mp4", clips["e.mp4"])
    before = latest(direct, world)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    proxy.clear()
    fault = proxy.inject("PUT", r"/index/manifests/", 503, "SlowDown", times=-1)
    try:
        r = index(world)
    finally:
        proxy.clear()
    assert r.exit_code == 1 and fault.served == 2, r.output
    # (Ray Data's own logger may also complain about CliRunner's closed streams: look at the last line)
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: publishing") and "kept answering SlowDown" in last, r.stderr
    assert latest(direct, world) == before
    layout, m = require_manifest(resolve_index_dir(world["index"], _cfg(world), tmp_path / "r"))
    assert m.version == before and "e.mp4" not in {r["rel_path"] for r in read_catalog(layout, m)}
    assert connect(layout, m).execute("SELECT count(*) FROM frames").fetchone()[0] == 14  # whole
    runs = connect(layout, m).execute("SELECT status, message FROM runs ORDER BY started_at").fetchall()
    assert runs[-1][0] == "aborted" and "SlowDown" in runs[-1][1]


def _cfg(world):
    from groundzero.store.s3 import S3Config

    return S3Config(endpoint_url=world["endpoint"])


def test_s3_sidecar_captions_are_downloaded_and_searched(direct, proxy, clips, tiny_model_dir, ray_session,
                                                         tmp_path):
    """A caption file beside an S3 video is its sidecar: listed with it (never as a video), fetched
    by the decode task, and searchable as what is said; a later edit of it re-indexes the video."""
    bucket = f"gz-sub-{uuid.uuid4().hex[:8]}"
    direct.create_bucket(Bucket=bucket)
    upload(direct, bucket, "talks/a.mp4", clips["a.mp4"])
    upload(direct, bucket, "talks/a.srt", b"1\n00:00:01,000 --> 00:00:02,500\nQ: Exhibit twelve, please.\n")
    w = {"bucket": bucket, "archive": f"s3://{bucket}/talks", "index": str(tmp_path / "idx"),
         "cache": tmp_path / "cache", "model": str(tiny_model_dir), "endpoint": proxy.endpoint}
    r = index(w)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["run"]["n_indexed"] == 1
    out = CliRunner().invoke(app, ["search", "exhibit twelve", "--index", w["index"], "--channels", "speech",
                                   "--json"])
    assert out.exit_code == 0, out.output
    top = json.loads(out.stdout)["hits"][0]
    assert (top["rel_path"], top["start_sec"], top["end_sec"]) == ("a.mp4", 1.0, 2.5)
    assert top["evidence"][0]["speaker"] == "Q"
    upload(direct, bucket, "talks/a.srt", b"1\n00:00:01,000 --> 00:00:02,500\nQ: Exhibit thirteen, please.\n")
    r = index(w)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["run"]["n_changed"] == 1
