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
* ``segments`` — every text segment (caption cue, ASR utterance, OCR block): ``video_id, seg_idx,
  start_sec, end_sec, text, source, confidence, speaker, words`` (JSON); empty without any

DuckDB only ever reads here, so searches and catalog queries never contend
with the one writer.

Older catalogs stay readable: a column added since reads with its default from
a snapshot written before it existed (``content_id``: "", unknown; ``note``:
NULL, nothing noted; ``segments_file``: "", ``n_segments``: 0, ``text_note``: "",
``sidecar_stamp``: ""), and run records lacking newer fields read with their defaults.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from groundzero.store.layout import IndexLayout, damaged, read_error
from groundzero.store.manifest import Manifest, atomic_write, write_hashed

if TYPE_CHECKING:
    import duckdb  # imported by connect(): reading the catalog (search) does not need it

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
    ("note", pa.string()),            # what the file holds that was not indexed, e.g. "2 video streams;
                                      # indexed stream 0 (...), ignored stream 1 (...)"; NULL: nothing
    ("segments_file", pa.string()),   # the video's text segments (relative); "" when it has none
    ("n_segments", pa.int32()),
    ("text_note", pa.string()),       # why text is missing or partial, e.g. "no captions and no speech
                                      # model: nothing said is indexed"; "" nothing to say
    ("sidecar_stamp", pa.string()),   # the subtitle sidecars listed with it (name:size:mtime;...); ""
])

#: values of columns missing from catalogs written by older versions
_DEFAULTS = {"content_id": "", "note": None, "segments_file": "", "n_segments": 0, "text_note": "",
             "sidecar_stamp": ""}


@dataclass
class RunRecord:
    """One index run, as stored in ``catalog/runs/<run_id>.json``."""

    run_id: str
    archive: str  #: local folder or s3://bucket/prefix
    model: str
    started_at: str  #: ISO-8601 UTC
    finished_at: str = ""  #: ISO-8601 UTC; "" while running (or when the process died)
    status: str = "running"  #: running | completed | completed_with_failures | aborted | failed (disk full)
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
    def from_dict(cls, d: dict) -> RunRecord:
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


#: columns every catalog has had (a catalog without one is not a catalog)
_REQUIRED = [f.name for f in CATALOG_SCHEMA if f.name not in _DEFAULTS]


def read_catalog(layout: IndexLayout, manifest: Manifest | None) -> list[dict]:
    """Rows of the snapshot's catalog (empty before the first commit).

    Raises IndexDamagedError, naming the file, for a catalog that is missing, truncated, damaged,
    outside the index directory, or lacks columns.
    """
    if manifest is None:
        return []
    path = layout.path(manifest.catalog_file)
    with layout.reading(path):  # ParquetFile, not read_table: no pyarrow.dataset (and pandas) to import
        table = pq.ParquetFile(path, page_checksum_verification=True).read()
    missing = [c for c in _REQUIRED if c not in table.column_names]
    if missing:
        raise damaged(path, f"not a catalog: it lacks the column(s) {', '.join(missing)}", layout.root)
    rows = table.to_pylist()
    for r in rows:
        for k, v in _DEFAULTS.items():
            if r.get(k) is None:
                r[k] = v
    return rows


def write_catalog(path: Path, rows: list[dict]) -> None:
    """Written under a temporary name and renamed; hashed as written (for the manifest)."""
    table = pa.Table.from_pylist(rows, schema=CATALOG_SCHEMA)
    with write_hashed(path) as f:
        pq.write_table(table, f, write_page_checksum=True)


def connect(layout: IndexLayout, manifest: Manifest) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the store's views (see module docstring), sandboxed:
    it reads files of this index only, and cannot write files, attach databases, or install or
    load extensions (:func:`_sandbox`; :func:`run_sql` also refuses such statements)."""
    import duckdb

    con = duckdb.connect(":memory:")
    root = Path(os.path.abspath(layout.root))  # the sandbox compares path strings
    layout = IndexLayout(root)
    cat_path = layout.path(manifest.catalog_file)
    with layout.reading(cat_path, also=(duckdb.Error,)):  # damaged: IndexDamagedError naming the file
        have = set(pq.read_schema(cat_path).names)
        missing = "".join(f", {_sql_value(v)} AS {k}" for k, v in _DEFAULTS.items() if k not in have)
        con.execute(f"CREATE VIEW videos AS SELECT *{missing} FROM read_parquet({_sql_str(cat_path)})")
        # reads the path columns whole: a damaged catalog fails here, not in a later query
        rows = con.execute("SELECT frames_file, proposals_file, segments_file FROM videos "
                           "WHERE status = 'indexed'").fetchall()
    runs = read_runs(layout)
    con.register("runs_arrow", runs_table(runs))
    con.execute("CREATE VIEW runs AS SELECT * FROM runs_arrow ORDER BY started_at, run_id")
    con.register("run_failures_arrow", pa.table({
        "run_id": pa.array([r.run_id for r in runs for _ in r.failures_by_reason], pa.string()),
        "reason": pa.array([k for r in runs for k in r.failures_by_reason], pa.string()),
        "n": pa.array([int(v) for r in runs for v in r.failures_by_reason.values()], pa.int64()),
    }))
    con.execute("CREATE VIEW run_failures AS SELECT * FROM run_failures_arrow")
    for i, view in enumerate(("frames", "proposals", "segments")):
        paths = [layout.path(r[i]) for r in rows if r[i]]  # each confined to the index directory
        if view == "segments" and not paths:  # no video has text: an empty view, so queries still run
            con.execute(f"CREATE VIEW segments AS SELECT * FROM ({_EMPTY_SEGMENTS}) WHERE false")
        # a partial copy of an S3 index (groundzero.store.s3_index) may lack per-video files: no view then
        if paths and all(p.exists() for p in paths):
            files = "[" + ", ".join(_sql_str(p) for p in paths) + "]"
            try:
                con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet({files})")
            except duckdb.Error as e:  # binding the view reads a file's footer
                raise read_error(_named_file(e, paths), e, layout.root) from e
    _sandbox(con, root)
    return con


_EMPTY_SEGMENTS = ("SELECT NULL::VARCHAR AS video_id, NULL::INTEGER AS seg_idx, NULL::DOUBLE AS start_sec, "
                   "NULL::DOUBLE AS end_sec, NULL::VARCHAR AS text, NULL::VARCHAR AS source, "
                   "NULL::DOUBLE AS confidence, NULL::VARCHAR AS speaker, NULL::VARCHAR AS words")


def _named_file(e: Exception, paths: list[Path]) -> Path | str:
    """The file of ``paths`` a DuckDB error names (else: one of them, unknown which)."""
    hit = next((p for p in paths if str(p) in str(e)), None)
    return hit if hit is not None else f"(one of the {len(paths)} files {paths[0].parent}/*.parquet)"


def _sandbox(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """Lock ``con`` down to reading files under ``root``.

    The views read their Parquet files lazily, at query time, so external access stays
    allowed for ``root`` (``allowed_directories``) and is off for every other path: no
    ``read_csv('/etc/passwd')``, ``COPY ... TO`` elsewhere, ``ATTACH 'file.db'``, ``INSTALL``
    (DuckDB's extension directory is outside ``root``), persistent secrets. Extensions are never
    auto-installed or auto-loaded, Python variables are not scanned as tables, and the
    configuration is locked, so no ``SET`` turns any of it back on. Writing inside ``root`` is
    refused by :func:`run_sql`'s statement check.
    """
    allowed = str(root).rstrip(os.sep) + os.sep  # a directory prefix: not a sibling "root2"
    for setting, value in (("allowed_directories", f"[{_sql_str(allowed)}]"),
                           ("enable_external_access", "false"),
                           ("autoinstall_known_extensions", "false"),
                           ("autoload_known_extensions", "false"),
                           ("allow_community_extensions", "false"),
                           ("python_enable_replacements", "false"),
                           ("lock_configuration", "true")):  # last: nothing can be SET after it
        con.execute(f"SET {setting} = {value}")


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


def _sql_value(v: str | int | None) -> str:
    if isinstance(v, int):
        return f"{v}::INTEGER"
    return "NULL::VARCHAR" if v is None else _sql_str(v)
