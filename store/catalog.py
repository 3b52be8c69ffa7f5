"""The catalog: what was indexed, what failed and why, queryable with DuckDB.

The catalog of a snapshot is one Parquet file (one row per video ever seen in
the archive and still there); each index run leaves a JSON record. DuckDB
views over the snapshot's files make the whole store queryable:

* ``videos`` — the catalog (schema :data:`CATALOG_SCHEMA`)
* ``runs`` — one row per index run (started/finished, counts, status; fields of :class:`RunRecord`,
  ``failures_by_reason`` as a ``MAP(VARCHAR, BIGINT)``)
* ``run_failures`` — ``run_id, reason, n``: the same failure counts, one row per reason
* ``frames`` — every frame embedding (``embedding FLOAT[D]``)
* ``proposals`` — every proposal window with its context tokens

DuckDB only ever reads here, so searches and catalog queries never contend
with the one writer.

Older catalogs stay readable: a column added since (``content_id``) reads as
"" — unknown — from a snapshot written before it existed, and run records
lacking newer fields read with their defaults.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from groundzero.errors import ConfigError
from groundzero.store.layout import IndexLayout
from groundzero.store.manifest import Manifest, atomic_write
from groundzero.store.s3 import S3Config

log = logging.getLogger(__name__)

CATALOG_SCHEMA = pa.schema([
    ("video_id", pa.string()),        # stable id of the uri (sha1 prefix)
    ("video_seq", pa.int64()),        # small integer used in FAISS ids
    ("uri", pa.string()),             # where the video lives (absolute path or s3://...)
    ("rel_path", pa.string()),        # path inside the archive, for display
    ("size_bytes", pa.int64()),
    ("mtime_ns", pa.int64()),
    ("content_hash", pa.string()),    # sha256 of the file's bytes ("" when unreadable)
    ("duration_sec", pa.float64()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("n_frames", pa.int32()),
    ("n_proposals", pa.int32()),
    ("status", pa.string()),          # "indexed" | "failed"
    ("reason", pa.string()),          # failure code, "" when indexed (see groundzero.errors.DecodeError)
    ("error", pa.string()),           # human explanation of the failure
    ("frames_file", pa.string()),     # relative to the index root; "" when failed
    ("proposals_file", pa.string()),
    ("run_id", pa.string()),          # run that wrote this row
    ("updated_at", pa.string()),      # ISO-8601 UTC
    ("content_id", pa.string()),      # what the listing identifies content by: "etag:<ETag>" (S3),
                                      # "sha256:<hex>" (local); "" unknown (and in catalogs before it)
])

#: values of columns missing from catalogs written by older versions
_DEFAULTS = {"content_id": ""}


@dataclass
class RunRecord:
    """One index run, as stored in ``catalog/runs/<run_id>.json``."""

    run_id: str
    archive: str  #: local folder or s3://bucket/prefix
    model: str
    started_at: str  #: ISO-8601 UTC
    finished_at: str = ""  #: ISO-8601 UTC; "" while running (or when the process died)
    status: str = "running"  #: running | completed | completed_with_failures | aborted
    n_listed: int = 0  #: candidate files in the archive listing
    n_new: int = 0
    n_changed: int = 0
    n_unchanged: int = 0  #: skipped: same content (size + mtime, or content hash / ETag)
    n_removed: int = 0  #: gone from the archive, removed from search
    n_indexed: int = 0
    n_failed: int = 0
    video_seconds_indexed: float = 0.0
    failures_by_reason: dict[str, int] = field(default_factory=dict)
    message: str = ""  #: why an aborted run stopped
    index: str = ""  #: the index written (local directory or s3://bucket/prefix)
    n_retry: int = 0  #: unchanged files that had failed before, tried again
    n_commits: int = 0  #: snapshots published by this run

    def save(self, layout: IndexLayout) -> Path:
        path = layout.runs_dir / f"{self.run_id}.json"
        atomic_write(path, json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def from_dict(cls, d: dict) -> "RunRecord":
        """Tolerant of records from older or newer versions (missing fields take defaults)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def read_runs(layout: IndexLayout) -> list[RunRecord]:
    """Every run record of the index, oldest first (unreadable records are skipped, with a warning)."""
    out = []
    for p in sorted(layout.runs_dir.glob("*.json")) if layout.runs_dir.is_dir() else []:
        try:
            out.append(RunRecord.from_dict(json.loads(p.read_text())))
        except (OSError, ValueError, TypeError) as e:
            log.warning("skipping unreadable run record %s: %s", p, e)
    return sorted(out, key=lambda r: (r.started_at, r.run_id))


def read_catalog(layout: IndexLayout, manifest: Manifest | None) -> list[dict]:
    """Rows of the snapshot's catalog (empty before the first commit)."""
    if manifest is None:
        return []
    rows = pq.read_table(layout.path(manifest.catalog_file)).to_pylist()
    for r in rows:
        for k, v in _DEFAULTS.items():
            if r.get(k) is None:
                r[k] = v
    return rows


def write_catalog(path: Path, rows: list[dict]) -> None:
    table = pa.Table.from_pylist(rows, schema=CATALOG_SCHEMA)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def connect(layout: IndexLayout, manifest: Manifest) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the store's views (see module docstring)."""
    con = duckdb.connect(":memory:")
    cat_path = layout.path(manifest.catalog_file)
    have = set(pq.read_schema(cat_path).names)
    missing = "".join(f", {_sql_str(v)} AS {k}" for k, v in _DEFAULTS.items() if k not in have)
    con.execute(f"CREATE VIEW videos AS SELECT *{missing} FROM read_parquet({_sql_str(cat_path)})")
    runs = read_runs(layout)
    con.register("runs_arrow", runs_table(runs))
    con.execute("CREATE VIEW runs AS SELECT * FROM runs_arrow ORDER BY started_at, run_id")
    con.register("run_failures_arrow", pa.table({
        "run_id": pa.array([r.run_id for r in runs for _ in r.failures_by_reason], pa.string()),
        "reason": pa.array([k for r in runs for k in r.failures_by_reason], pa.string()),
        "n": pa.array([int(v) for r in runs for v in r.failures_by_reason.values()], pa.int64()),
    }))
    con.execute("CREATE VIEW run_failures AS SELECT * FROM run_failures_arrow")
    rows = con.execute("SELECT frames_file, proposals_file FROM videos WHERE status = 'indexed'").fetchall()
    for i, view in enumerate(("frames", "proposals")):
        paths = [layout.path(r[i]) for r in rows]
        # a partial copy of an S3 index (groundzero.store.s3_index) may lack per-video files: no view then
        if paths and all(p.exists() for p in paths):
            files = "[" + ", ".join(_sql_str(p) for p in paths) + "]"
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet({files})")
    return con


def runs_table(runs: list[RunRecord]) -> pa.Table:
    """Run records as an Arrow table with fixed column types (``failures_by_reason`` a map)."""
    types = {int: pa.int64(), float: pa.float64(), str: pa.string()}
    cols = {}
    for f in fields(RunRecord):
        values = [getattr(r, f.name) for r in runs]
        if f.name == "failures_by_reason":
            cols[f.name] = pa.array([list(v.items()) for v in values], pa.map_(pa.string(), pa.int64()))
        else:
            t = types[type(getattr(RunRecord("", "", "", ""), f.name))]
            cols[f.name] = pa.array(values, t)
    return pa.table(cols)


def _sql_str(p: Path | str) -> str:
    return "'" + str(p).replace("'", "''") + "'"


# ------------------------------------------------------------- reading (`groundzero catalog`)


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

    return require_manifest(resolve_index_dir(index, s3, cache_dir, level))


def open_catalog(index: str | Path, s3: S3Config | None = None,
                 cache_dir: str | Path | None = None, level: str = "catalog") -> Catalog:
    """:func:`open_index`, then :func:`connect`. ``level="all"`` (or :func:`sql_level`) pulls an S3
    index's per-video files too, which the ``frames`` and ``proposals`` views read."""
    layout, manifest = open_index(index, s3, cache_dir, level)
    return Catalog(str(index), layout, manifest, connect(layout, manifest))


def sql_level(sql: str) -> str:
    """How much of an S3 index ``sql`` needs pulled: "all" if it reads ``frames``, ``proposals``."""
    return "all" if re.search(r"\b(frames|proposals)\b", sql, re.IGNORECASE) else "catalog"


def run_sql(con: duckdb.DuckDBPyConnection, sql: str) -> Rows | None:
    """Any DuckDB SQL over the views; None for a statement without a result (e.g. SET).

    Raises ConfigError ("SQL failed: ..." with DuckDB's first line) for a bad query.
    """
    try:
        rel = con.sql(sql)
        return None if rel is None else Rows(list(rel.columns), rel.fetchall())
    except duckdb.Error as e:
        raise ConfigError(f"SQL failed: {str(e).splitlines()[0]}") from None


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
    ``last_run`` (dict or None) and ``last_run_failures`` (``rel_path``, ``reason``, ``error``).
    """
    last = last_run(con)
    failed = failed_videos(con, last["run_id"]) if last else Rows([], [])
    return {"snapshot": manifest.version, "model": manifest.model.name, **video_counts(con),
            "last_run": last, "last_run_failures": failed.dicts()}


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

    An ``s3://`` index is pulled whole first. Raises IndexNotFoundError for a missing index.
    """
    from groundzero.store.check import verify_index

    layout, manifest = open_index(index, s3, cache_dir, "all")
    return CheckReport(str(index), manifest.version, verify_index(layout.root, deep=True))
