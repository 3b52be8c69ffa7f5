"""``catalog sql`` / :func:`run_sql` only read the index: no file written, no database attached,
no extension installed or loaded, no file read outside the index, no setting turned back on."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from groundzero.cli.main import app
from groundzero.errors import ConfigError
from groundzero.model.identity import read_identity
from groundzero.store.catalog import RunRecord, connect
from groundzero.store.manifest import require_manifest
from groundzero.store.queries import open_catalog, run_sql
from groundzero.store.writer import IndexWriter, VideoEntry
from tests.planted import plant_index


@pytest.fixture(scope="module")
def index(tmp_path_factory, tiny_model_dir) -> Path:
    """Two planted videos, one failed video, one run record."""
    index = tmp_path_factory.mktemp("sql") / "index"
    _, ident = read_identity(str(tiny_model_dir))
    q = np.random.default_rng(0).normal(size=ident.embed_dim)
    plant_index(index, tiny_model_dir, q, durations=[30, 40], target_video=1, target_start=5, target_end=10)
    layout, m = require_manifest(index)
    with IndexWriter.open(index, ident, m.params) as w:
        w.put_failed(VideoEntry("/archive/bad.mp4", "bad.mp4", 0, 0), "r1", "empty_file", "bad.mp4 is empty")
        w.commit("r1")
    RunRecord(run_id="r1", archive="/archive", model=ident.name, started_at="2026-01-01T00:00:00+00:00",
              status="completed_with_failures", n_indexed=2, n_failed=1,
              failures_by_reason={"empty_file": 1}).save(layout)
    return index


@pytest.fixture
def outside(tmp_path) -> Path:
    """A Parquet file outside the index."""
    d = tmp_path / "other"
    d.mkdir()
    pq.write_table(pa.table({"secret": [42]}), d / "o.parquet")
    return d


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _refused(index: Path, tmp_path: Path, outside: Path) -> list[str]:
    x = tmp_path / "x.csv"
    return [
        f"COPY (SELECT 42) TO '{x}'",
        f"COPY (SELECT 42) TO '{index}/x.csv'",  # not even inside the index
        f"COPY videos TO '{index}/catalog/x.parquet' (FORMAT parquet)",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        f"SELECT * FROM read_parquet('{outside}/*.parquet')",
        f"SELECT * FROM read_parquet('{index}/{os.path.relpath(outside, index)}/o.parquet')",  # via ..
        f"SELECT * FROM '{outside}/o.parquet'",
        "SELECT * FROM glob('/etc/*')",
        f"ATTACH '{tmp_path}/new.db'",
        f"ATTACH '{index}/new.db'",
        "ATTACH ':memory:' AS other",
        "INSTALL httpfs",
        "FORCE INSTALL httpfs",
        "LOAD httpfs",
        "LOAD parquet",
        "SET enable_external_access = true",
        "RESET enable_external_access",
        "SET lock_configuration = false",
        f"SET allowed_directories = ['{tmp_path}']",
        "SET autoinstall_known_extensions = true",
        f"EXPORT DATABASE '{tmp_path}/exported'",
        f"EXPORT DATABASE '{index}/exported'",
        f"IMPORT DATABASE '{tmp_path}/exported'",
        "PRAGMA version",
        f"PREPARE p AS COPY (SELECT 1) TO '{index}/p.csv'",
        "UPDATE EXTENSIONS",
        f"SELECT 1; COPY (SELECT 42) TO '{x}'",  # every statement is checked before any runs
        f"-- a comment first\nCOPY (SELECT 42) TO '{x}'",
    ]


def test_refused_statements_touch_nothing(index, tmp_path, outside):
    before_index, before_tmp = _tree(index), _tree(tmp_path)
    cwd_before = set(os.listdir())
    cat = open_catalog(index)
    for sql in _refused(index, tmp_path, outside):
        with pytest.raises(ConfigError, match=r"^SQL refused: ") as e:
            run_sql(cat.con, sql)
        assert "\n" not in str(e.value), sql
        assert e.value.exit_code == 2
    assert _tree(index) == before_index
    assert _tree(tmp_path) == before_tmp
    assert set(os.listdir()) == cwd_before
    # and the settings are still what connect() set, after every attempt to change them
    got = dict(cat.con.execute(
        "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
        "'lock_configuration', 'autoinstall_known_extensions', 'autoload_known_extensions', "
        "'allow_community_extensions')").fetchall())
    assert got == {"enable_external_access": "false", "lock_configuration": "true",
                   "autoinstall_known_extensions": "false", "autoload_known_extensions": "false",
                   "allow_community_extensions": "false"}
    assert run_sql(cat.con, "SELECT count(*) FROM videos").rows == [(3,)]


def test_refusals_name_what_was_refused(index):
    con = open_catalog(index).con
    for sql, word in (("COPY (SELECT 1) TO 'x.csv'", "COPY"), ("ATTACH 'a.db'", "ATTACH"),
                      ("INSTALL httpfs", "INSTALL"), ("LOAD httpfs", "LOAD"),
                      ("EXPORT DATABASE 'd'", "EXPORT"), ("FORCE INSTALL httpfs", "FORCE INSTALL")):
        with pytest.raises(ConfigError, match=f"SQL refused: {word} statements are not allowed"):
            run_sql(con, sql)
    with pytest.raises(ConfigError, match=r"SQL refused: Permission Error: .*/etc/passwd.*only reads the index"):
        run_sql(con, "SELECT * FROM read_csv('/etc/passwd')")
    with pytest.raises(ConfigError, match="SQL refused: .*locked"):
        run_sql(con, "SET enable_external_access = true")


def test_queries_over_all_five_views_still_work(index):
    con = open_catalog(index).con
    assert run_sql(con, "SELECT rel_path, status FROM videos ORDER BY rel_path").rows == [
        ("bad.mp4", "failed"), ("video_00.mp4", "indexed"), ("video_01.mp4", "indexed")]
    assert run_sql(con, "SELECT count(*) FROM frames").rows == [(70,)]
    assert run_sql(con, "SELECT count(DISTINCT video_id) FROM proposals").rows == [(2,)]
    assert run_sql(con, "SELECT run_id, n_failed FROM runs").rows == [("r1", 1)]
    assert run_sql(con, "SELECT reason, n FROM run_failures").rows == [("empty_file", 1)]
    assert run_sql(con, "SELECT note FROM videos").rows == [(None,)] * 3
    # joins, DESCRIBE / SHOW / SUMMARIZE / EXPLAIN, and the index's own files read directly
    assert run_sql(con, "SELECT v.rel_path, count(*) FROM frames f JOIN videos v USING (video_id) "
                        "GROUP BY 1 ORDER BY 1").rows == [("video_00.mp4", 30), ("video_01.mp4", 40)]
    assert "rel_path" in [r[0] for r in run_sql(con, "DESCRIBE videos").rows]
    assert {r[0] for r in run_sql(con, "SHOW TABLES").rows} >= {"videos", "runs", "run_failures", "frames", "proposals"}
    assert run_sql(con, "SUMMARIZE runs").rows
    assert run_sql(con, "EXPLAIN SELECT * FROM frames").rows
    layout, m = require_manifest(index)
    assert run_sql(con, f"SELECT count(*) FROM read_parquet('{layout.path(m.catalog_file)}')").rows == [(3,)]


def test_in_memory_tables_and_variables_are_allowed_and_write_nothing(index, tmp_path):
    before = _tree(index)
    con = open_catalog(index).con
    run_sql(con, "CREATE TABLE t AS SELECT * FROM frames")
    assert run_sql(con, "SELECT count(*) FROM t").rows == [(70,)]
    assert run_sql(con, "CREATE TEMP VIEW w AS SELECT 1 AS one; SELECT * FROM w").rows == [(1,)]
    run_sql(con, "SET VARIABLE n = (SELECT count(*) FROM videos)")
    assert run_sql(con, "SELECT getvariable('n')").rows == [(3,)]
    run_sql(con, "DROP TABLE t")
    assert _tree(index) == before
    # the one database is in memory (no file behind it)
    assert con.execute("SELECT database_name, path FROM duckdb_databases() WHERE NOT internal").fetchall() == [
        ("memory", None)]


def test_python_variables_are_not_tables(index):
    secret_df = pa.table({"x": [1]})  # noqa: F841 - DuckDB would scan a local like this by name
    con = open_catalog(index).con
    with pytest.raises(ConfigError, match="SQL failed: Catalog Error"):
        run_sql(con, "SELECT * FROM secret_df")


def test_connect_works_with_a_relative_index_path(index, monkeypatch):
    monkeypatch.chdir(index.parent)
    layout, m = require_manifest(Path(index.name))
    con = connect(layout, m)
    assert run_sql(con, "SELECT count(*) FROM frames").rows == [(70,)]


def test_cli_sql_refuses_with_one_line_and_exit_2(index, tmp_path, outside):
    runner = CliRunner()
    before = _tree(tmp_path)
    for sql in _refused(index, tmp_path, outside):
        r = runner.invoke(app, ["catalog", "sql", "--index", str(index), "--", sql])  # "--": SQL may start "--"
        assert r.exit_code == 2, (sql, r.output)
        assert r.stderr.count("\n") == 1 and "SQL refused" in r.stderr, (sql, r.stderr)
        assert "Traceback" not in r.output and "root:" not in r.output  # no /etc/passwd content
    assert _tree(tmp_path) == before


def test_cli_sql_reads_the_views(index):
    runner = CliRunner()
    for sql, want in (("SELECT count(*) AS n FROM videos", 3), ("SELECT count(*) AS n FROM frames", 70),
                      ("SELECT count(*) AS n FROM proposals WHERE video_id IS NOT NULL", None),
                      ("SELECT count(*) AS n FROM runs", 1), ("SELECT sum(n) AS n FROM run_failures", 1)):
        r = runner.invoke(app, ["catalog", "sql", sql, "--index", str(index), "--json"])
        assert r.exit_code == 0, (sql, r.output)
        n = json.loads(r.stdout)[0]["n"]
        assert n == want if want is not None else n > 0
    r = runner.invoke(app, ["catalog", "sql", "SELECT nope FROM videos", "--index", str(index)])
    assert r.exit_code == 2 and "SQL failed" in r.stderr and r.stderr.count("\n") == 1


def test_catalogs_from_before_the_note_column_read_it_as_null(tmp_path):
    from groundzero.store.catalog import CATALOG_SCHEMA, read_catalog
    from groundzero.store.layout import IndexLayout

    layout = IndexLayout(tmp_path)
    layout.make_dirs()
    old_schema = pa.schema([f for f in CATALOG_SCHEMA if f.name != "note"])
    row = {f.name: None for f in old_schema}
    row.update(video_id="v", video_seq=0, uri="/a.mp4", rel_path="a.mp4", size_bytes=1, mtime_ns=1,
               status="failed", reason="not_video", frames_file="", proposals_file="", run_id="r1", content_id="")
    pq.write_table(pa.Table.from_pylist([row], schema=old_schema), layout.path("catalog/videos-000001.parquet"))

    class M:  # only what read_catalog / connect use
        catalog_file = "catalog/videos-000001.parquet"

    assert read_catalog(layout, M)[0]["note"] is None
    assert run_sql(connect(layout, M), "SELECT reason, note FROM videos").rows == [("not_video", None)]
