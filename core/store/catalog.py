"""The catalog: what was indexed, what failed and why, queryable with DuckDB.

The catalog of a snapshot is one Parquet file (one row per video ever seen in
the archive and still there); each index run leaves a JSON record. DuckDB
views over the snapshot's files make the whole store queryable:

* ``videos`` — the catalog (schema :data:`CATALOG_SCHEMA`)
* ``runs`` — one row per index run (started/finished, counts, failures by reason)
* ``frames`` — every frame embedding (``embedding FLOAT[D]``)
* ``proposals`` — every proposal window with its context tokens

DuckDB only ever reads here, so searches and catalog queries never contend
with the one writer.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from core.store.layout import IndexLayout
from core.store.manifest import Manifest, _atomic_write

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
    ("reason", pa.string()),          # failure code, "" when indexed (see core.errors.DecodeError)
    ("error", pa.string()),           # human explanation of the failure
    ("frames_file", pa.string()),     # relative to the index root; "" when failed
    ("proposals_file", pa.string()),
    ("run_id", pa.string()),          # run that wrote this row
    ("updated_at", pa.string()),      # ISO-8601 UTC
])


@dataclass
class RunRecord:
    """One index run, as stored in ``catalog/runs/<run_id>.json``."""

    run_id: str
    archive: str
    model: str
    started_at: str
    finished_at: str = ""
    status: str = "running"  #: running | completed | completed_with_failures | aborted
    n_listed: int = 0
    n_new: int = 0
    n_changed: int = 0
    n_unchanged: int = 0
    n_removed: int = 0
    n_indexed: int = 0
    n_failed: int = 0
    video_seconds_indexed: float = 0.0
    failures_by_reason: dict[str, int] = field(default_factory=dict)
    message: str = ""

    def save(self, layout: IndexLayout) -> None:
        _atomic_write(layout.runs_dir / f"{self.run_id}.json", json.dumps(asdict(self), indent=2))


def read_catalog(layout: IndexLayout, manifest: Manifest | None) -> list[dict]:
    """Rows of the snapshot's catalog (empty before the first commit)."""
    if manifest is None:
        return []
    return pq.read_table(layout.path(manifest.catalog_file)).to_pylist()


def write_catalog(path: Path, rows: list[dict]) -> None:
    table = pa.Table.from_pylist(rows, schema=CATALOG_SCHEMA)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def connect(layout: IndexLayout, manifest: Manifest) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the store's views (see module docstring)."""
    con = duckdb.connect(":memory:")
    cat = _sql_str(layout.path(manifest.catalog_file))
    con.execute(f"CREATE VIEW videos AS SELECT * FROM read_parquet({cat})")
    runs = sorted(layout.runs_dir.glob("*.json"))
    if runs:
        files = "[" + ", ".join(_sql_str(p) for p in runs) + "]"
        con.execute(
            f"CREATE VIEW runs AS SELECT * FROM read_json_auto({files}, union_by_name=true) ORDER BY started_at"
        )
    rows = con.execute("SELECT frames_file, proposals_file FROM videos WHERE status = 'indexed'").fetchall()
    if rows:
        frames = "[" + ", ".join(_sql_str(layout.path(r[0])) for r in rows) + "]"
        props = "[" + ", ".join(_sql_str(layout.path(r[1])) for r in rows) + "]"
        con.execute(f"CREATE VIEW frames AS SELECT * FROM read_parquet({frames})")
        con.execute(f"CREATE VIEW proposals AS SELECT * FROM read_parquet({props})")
    return con


def _sql_str(p: Path | str) -> str:
    return "'" + str(p).replace("'", "''") + "'"
