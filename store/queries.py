"""Reading an index for ``groundzero catalog``: open it (local or ``s3://``), the sandboxed SQL,
the listings and the summary, and the consistency check. The views themselves are
:func:`groundzero.store.catalog.connect`'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from groundzero.errors import ConfigError, GroundZeroError, IndexDamagedError
from groundzero.store.catalog import connect
from groundzero.store.layout import READ_ERRORS, IndexLayout
from groundzero.store.manifest import Manifest
from groundzero.store.s3 import S3Config


@dataclass
class Catalog:
    """An index opened for catalog queries: its snapshot and a DuckDB connection with the views."""

    index: str  #: the index as given (local directory or s3://bucket/prefix)
    layout: IndexLayout  #: the local directory read (for s3://, the pulled cache)
    manifest: Manifest
    con: duckdb.DuckDBPyConnection


@dataclass
class Rows:
    """A query's result: column names and row tuples."""

    columns: list[str]
    rows: list[tuple]

    def dicts(self) -> list[dict]:
        return [dict(zip(self.columns, r)) for r in self.rows]


def open_index(index: str | Path, s3: S3Config | None = None, cache_dir: str | Path | None = None,
               level: str = "catalog") -> tuple[IndexLayout, Manifest]:
    """The committed snapshot of a local or ``s3://`` index (pulled to ``level``, see ``s3_index``).

    Raises IndexNotFoundError for a missing or never-committed index.
    """
    from groundzero.store.manifest import require_manifest
    from groundzero.store.s3_index import resolve_index_dir

    try:
        root = resolve_index_dir(index, s3, cache_dir, level)
    except GroundZeroError:
        raise
    except READ_ERRORS as e:  # an s3:// index whose published manifest or catalog is damaged
        raise IndexDamagedError(f"index {index}: its snapshot could not be pulled, a file of it is damaged "
                                f"({type(e).__name__}: {e}); restore it, or re-index into a new --index") from e
    return require_manifest(root)


def open_catalog(index: str | Path, s3: S3Config | None = None,
                 cache_dir: str | Path | None = None, level: str = "catalog") -> Catalog:
    """:func:`open_index`, then :func:`connect`. ``level="all"`` (or :func:`sql_level`) pulls an S3
    index's per-video files too, which the ``frames`` and ``proposals`` views read."""
    layout, manifest = open_index(index, s3, cache_dir, level)
    return Catalog(str(index), layout, manifest, connect(layout, manifest))


def sql_level(sql: str) -> str:
    """How much of an S3 index ``sql`` needs pulled: "all" if it reads ``frames``, ``proposals``;
    "writer" (no frames) if it reads ``segments``."""
    if re.search(r"\b(frames|proposals)\b", sql, re.IGNORECASE):
        return "all"
    return "writer" if re.search(r"\bsegments\b", sql, re.IGNORECASE) else "catalog"


#: statement types :func:`run_sql` runs: queries, and the in-memory session's own tables, views,
#: macros and variables (gone when the connection closes). Everything else is refused: COPY and
#: EXPORT (write files), ATTACH / DETACH, INSTALL / LOAD, PRAGMA (IMPORT DATABASE, COPY FROM
#: DATABASE hide there), PREPARE / EXECUTE (could run any of those), VACUUM, and any new kind.
_ALLOWED_STATEMENTS = frozenset({
    "SELECT", "EXPLAIN", "CALL", "CREATE", "DROP", "ALTER", "INSERT", "UPDATE", "DELETE",
    "MERGE_INTO", "MULTI", "SET", "VARIABLE_SET", "TRANSACTION", "ANALYZE",
})
_READ_ONLY = "catalog SQL only reads the index"
_LEADING_COMMENTS = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)


def _statement_kind(query: str, type_name: str) -> str:
    """What a refused statement is, in its own words: "COPY", "ATTACH", "FORCE INSTALL"..."""
    words = _LEADING_COMMENTS.sub("", query).split(None, 2)
    if not words:
        return type_name
    kind = words[0].upper()
    if kind == "FORCE" and len(words) > 1:
        kind += " " + words[1].upper()
    return kind


def check_sql(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Raise ConfigError ("SQL refused: ...") unless every statement of ``sql`` is of a kind
    :func:`run_sql` runs (see ``_ALLOWED_STATEMENTS``); "SQL failed: ..." when it does not parse."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as e:
        raise ConfigError(f"SQL failed: {str(e).splitlines()[0]}") from None
    if not statements:
        raise ConfigError("SQL failed: no statement given")
    for st in statements:
        try:
            type_name = st.type.name
        except ValueError:  # a statement type newer than the Python enum (e.g. UPDATE EXTENSIONS)
            type_name = "unknown"
        if type_name not in _ALLOWED_STATEMENTS:
            raise ConfigError(f"SQL refused: {_statement_kind(st.query, type_name)} statements are not "
                              f"allowed; {_READ_ONLY} (SELECT, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN)")


def run_sql(con: duckdb.DuckDBPyConnection, sql: str) -> Rows | None:
    """DuckDB SQL over the views; None for a statement without a result.

    Read-only and sandboxed (with :func:`connect`'s connection): queries run, and so do
    statements on the in-memory session's own tables; writing files, attaching databases,
    installing or loading extensions, changing settings and reading files outside the index
    are refused. Raises ConfigError, one line: "SQL refused: ..." for a statement it does not
    run, "SQL failed: ..." (DuckDB's first line) for a bad query.
    """
    check_sql(con, sql)
    try:
        rel = con.sql(sql)
        return None if rel is None else Rows(list(rel.columns), rel.fetchall())
    except duckdb.PermissionException as e:
        raise ConfigError(f"SQL refused: {str(e).splitlines()[0]}; {_READ_ONLY}'s own files") from None
    except duckdb.Error as e:
        msg = str(e).splitlines()[0]
        if "configuration has been locked" in msg:
            raise ConfigError(f"SQL refused: {msg}; {_READ_ONLY}") from None
        raise ConfigError(f"SQL failed: {msg}") from None


def list_videos(con: duckdb.DuckDBPyConnection) -> Rows:
    """Every video of the snapshot: the indexed ones, then the failed ones, each by path."""
    return run_sql(con, "SELECT rel_path AS video, status, round(duration_sec, 1) AS seconds, "
                        "n_frames AS frames, reason FROM videos ORDER BY status DESC, rel_path")


def failed_videos(con: duckdb.DuckDBPyConnection, run_id: str | None = None) -> Rows:
    """The failed videos (only run ``run_id``'s when given), with reason and error."""
    where = "" if run_id is None else " AND run_id = ?"
    rel = con.execute(f"SELECT rel_path, reason, error FROM videos WHERE status = 'failed'{where} "
                      "ORDER BY rel_path", [] if run_id is None else [run_id])
    return Rows([c[0] for c in rel.description], rel.fetchall())


def video_counts(con: duckdb.DuckDBPyConnection) -> dict:
    """``videos_indexed``, ``videos_failed`` and ``hours_indexed`` of the snapshot."""
    n_ok, n_failed, seconds = con.execute(
        "SELECT count(*) FILTER (status='indexed'), count(*) FILTER (status='failed'), "
        "coalesce(sum(duration_sec) FILTER (status='indexed'), 0) FROM videos").fetchone()
    return {"videos_indexed": n_ok, "videos_failed": n_failed,
            "hours_indexed": round(seconds / 3600, 4)}


def segment_counts(con: duckdb.DuckDBPyConnection) -> dict:
    """``segments_indexed`` (the catalog's ``n_segments`` of indexed videos) and ``segments_by_source``
    (source -> segments; {} when the segments files are not at hand, e.g. an S3 index pulled for
    its catalog only)."""
    (total,) = con.execute("SELECT coalesce(sum(n_segments) FILTER (status='indexed'), 0) FROM videos").fetchone()
    try:
        by_source = dict(con.execute("SELECT source, count(*) FROM segments GROUP BY source ORDER BY source").fetchall())
    except duckdb.CatalogException:  # no segments view: the files were not pulled
        by_source = {}
    return {"segments_indexed": int(total), "segments_by_source": by_source}


def last_run(con: duckdb.DuckDBPyConnection) -> dict | None:
    """The latest run record (a :class:`RunRecord` as a dict); None before the first run."""
    cur = con.execute("SELECT * FROM runs ORDER BY started_at DESC, run_id DESC LIMIT 1")
    row = cur.fetchone()
    if row is None:
        return None
    d = dict(zip([c[0] for c in cur.description], row))
    d["failures_by_reason"] = dict(d.get("failures_by_reason") or {})
    return d


def summary(con: duckdb.DuckDBPyConnection, manifest: Manifest) -> dict:
    """Hours and videos indexed, the last run, and what failed in it (with the reason).

    Keys: ``snapshot``, ``model``, ``videos_indexed``, ``videos_failed``, ``hours_indexed``,
    ``segments_indexed``, ``segments_by_source`` (:func:`segment_counts`), ``last_run`` (dict or None)
    and ``last_run_failures`` (``rel_path``, ``reason``, ``error``).
    """
    last = last_run(con)
    failed = failed_videos(con, last["run_id"]) if last else Rows([], [])
    return {"snapshot": manifest.version, "model": manifest.model.name, **video_counts(con),
            **segment_counts(con), "last_run": last, "last_run_failures": failed.dicts()}


@dataclass
class CheckReport:
    """What ``verify`` found in an index's committed snapshot (``groundzero.store.check``)."""

    index: str
    snapshot: int
    problems: list  #: of ``groundzero.store.check.Problem``

    @property
    def n_errors(self) -> int:
        return sum(p.severity == "error" for p in self.problems)

    @property
    def n_warnings(self) -> int:
        return len(self.problems) - self.n_errors


def check_index(index: str | Path, s3: S3Config | None = None,
                cache_dir: str | Path | None = None) -> CheckReport:
    """Check that manifest, catalog, Parquet files and FAISS agree (deep: the vectors too).

    An ``s3://`` index is pulled whole first. Raises IndexNotFoundError for a missing index; a
    damaged one is reported, not raised (a manifest that cannot be read: snapshot 0).
    """
    from groundzero.store.check import verify_index
    from groundzero.store.manifest import read_manifest

    try:
        layout, manifest = open_index(index, s3, cache_dir, "all")
        root, version = layout.root, manifest.version
    except IndexDamagedError:
        if str(index).startswith("s3://"):  # the pull itself failed: nothing local to check
            raise
        root, version = Path(index).expanduser(), 0
        try:
            version = read_manifest(IndexLayout(root), confine=False).version
        except GroundZeroError:
            pass
    return CheckReport(str(index), version, verify_index(root, deep=True))
