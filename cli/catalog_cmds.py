"""``groundzero catalog list | failed | summary | verify | sql``: what an index holds (DuckDB)."""

from __future__ import annotations

from typing import Annotated

import typer

from groundzero.cli import render
from groundzero.cli.common import (
    S3_FLAGS,
    CacheDir,
    EndpointUrl,
    json_flag,
    reported,
    setup_logging,
)

app = typer.Typer(no_args_is_help=True)

IndexOpt = Annotated[str, typer.Option("--index", help="Index directory, or s3://bucket/prefix.")]
JsonRows = Annotated[bool, json_flag("the rows")]


@app.callback()
def catalog() -> None:
    """What was indexed, what failed and why; any SQL over the store."""
    setup_logging(False)


def _open(index_dir: str, endpoint_url: str | None, cache_dir: str | None, level: str = "catalog"):
    from groundzero.store.queries import open_catalog
    from groundzero.store.s3 import S3Config

    return open_catalog(index_dir, S3Config(endpoint_url=endpoint_url), cache_dir, level)


def _title(cat) -> str:
    return f"{cat.index} (snapshot {cat.manifest.version})"


@app.command("list")
def list_videos(index_dir: IndexOpt, endpoint_url: EndpointUrl = None, cache_dir: CacheDir = None,
                json_out: JsonRows = False) -> None:
    """Every video: status, length, frames, and why it failed."""
    from groundzero.store import queries

    with reported(S3_FLAGS):
        cat = _open(index_dir, endpoint_url, cache_dir)
        rows, counts = queries.list_videos(cat.con), queries.video_counts(cat.con)
    render.video_list(_title(cat), rows, counts, cat.manifest.model.name, json_out)


@app.command()
def failed(index_dir: IndexOpt, endpoint_url: EndpointUrl = None, cache_dir: CacheDir = None,
           json_out: JsonRows = False) -> None:
    """Only the videos that failed, with the reason and the error."""
    from groundzero.store.queries import failed_videos

    with reported(S3_FLAGS):
        cat = _open(index_dir, endpoint_url, cache_dir)
        rows = failed_videos(cat.con)
    render.query_rows(_title(cat), rows, json_out)


@app.command()
def summary(index_dir: IndexOpt, endpoint_url: EndpointUrl = None, cache_dir: CacheDir = None,
            json_out: Annotated[bool, json_flag("the summary")] = False) -> None:
    """Hours indexed, and the last run: its counts, what failed and why."""
    from groundzero.store.queries import summary as catalog_summary

    with reported(S3_FLAGS):
        cat = _open(index_dir, endpoint_url, cache_dir)
        d = {"index": index_dir, **catalog_summary(cat.con, cat.manifest)}
    render.catalog_summary(d, json_out)


@app.command()
def verify(index_dir: IndexOpt, endpoint_url: EndpointUrl = None, cache_dir: CacheDir = None,
           json_out: Annotated[bool, json_flag("the problems")] = False) -> None:
    """Check that manifest, catalog, Parquet, FAISS agree; exit 1 if not."""
    from groundzero.store.queries import check_index
    from groundzero.store.s3 import S3Config

    with reported(S3_FLAGS):
        report = check_index(index_dir, S3Config(endpoint_url=endpoint_url), cache_dir)
    render.check_report(report, json_out)
    if report.n_errors:
        raise typer.Exit(1)


@app.command()
def sql(query: Annotated[str, typer.Argument(
            help="DuckDB SQL over the views videos, runs, run_failures, frames, proposals "
                 "(read-only: no COPY, ATTACH, INSTALL/LOAD, settings, or files outside the index).")],
        index_dir: IndexOpt, endpoint_url: EndpointUrl = None, cache_dir: CacheDir = None,
        json_out: JsonRows = False) -> None:
    """Run read-only QUERY over the store; exit 2 when it fails or is refused."""
    from groundzero.store.queries import run_sql, sql_level

    with reported(S3_FLAGS):
        # an s3:// index is pulled first; its per-video files only when the query reads them
        cat = _open(index_dir, endpoint_url, cache_dir, sql_level(query))
        rows = run_sql(cat.con, query)
    if rows is not None:  # None: a statement without a result (e.g. SET)
        render.query_rows(_title(cat), rows, json_out)
