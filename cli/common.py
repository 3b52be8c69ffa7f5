"""What every command shares: logging, one-line errors, and the options several commands take.

A command turns its flags into a config, makes one library call inside
``with reported(FLAGS):`` and renders the result (``render``). Library errors
name config fields (``ConfigError.field``, e.g. ``fps``); ``FLAGS`` maps a
command's fields to its flags, so the user reads ``error: --fps must be ...``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.markup import escape

from groundzero.cli import render
from groundzero.errors import ConfigError, GroundZeroError

#: ``groundzero index``: finished, but some files failed (each recorded in the catalog)
EXIT_SOME_FAILED = 3


def setup_logging(verbose: bool) -> None:
    """Logs to stderr: warnings and errors by default; with ``-v`` (or ``GROUNDZERO_LOG=debug``)
    our INFO lines and the libraries' own output (Ray, transformers, the hub's progress bars)."""
    level = os.environ.get("GROUNDZERO_LOG", "").strip().lower()
    verbose = verbose or level in ("debug", "info")
    if verbose:
        os.environ["GROUNDZERO_LOG"] = level or "info"  # read by groundzero.indexer.ray_runtime
    logging.basicConfig(level=logging.DEBUG if level == "debug" else logging.INFO if verbose else logging.WARNING,
                        stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:  # transformers' and the hub's progress bars and notices are noise on the command line
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def error(message: str) -> None:
    """One line on stderr: ``error: message``."""
    render.stderr().print(f"[bold red]error:[/] {escape(message)}", highlight=False)


def flag_message(e: GroundZeroError, flags: Mapping[str, str]) -> str:
    """``e``'s message, with every config field of ``flags`` named as its flag.

    Only for a ConfigError that names a field: its message calls fields by their config
    names, and each one ``flags`` maps is replaced as a whole word (``window_sec=48`` ->
    ``--window=48``), so a message mentioning a second field reads right too.
    """
    msg = str(e)
    if not isinstance(e, ConfigError) or e.field is None or not flags:
        return msg
    names = "|".join(re.escape(n) for n in sorted(flags, key=len, reverse=True))
    return re.sub(rf"(?<![\w.-])({names})(?![\w-])", lambda m: flags[m.group(1)], msg)


@contextmanager
def reported(flags: Mapping[str, str] | None = None) -> Iterator[None]:
    """Turn a GroundZeroError into one line on stderr and its exit status (no traceback)."""
    try:
        yield
    except GroundZeroError as e:
        error(flag_message(e, flags or {}))
        raise typer.Exit(e.exit_code) from None


def opt_str(value: object) -> str | None:
    """A path-like option as the library's string (None stays None)."""
    return None if value is None else str(value)


# -- options several commands share --------------------------------------------------------

Device = Annotated[str, typer.Option(help="auto | cpu | cuda[:n].")]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", help="Log progress details.")]
EndpointUrl = Annotated[str | None, typer.Option(
    "--endpoint-url", help="S3-compatible endpoint (MinIO, R2...); default: AWS_ENDPOINT_URL, "
    "else AWS.")]
CacheDir = Annotated[str | None, typer.Option(
    "--cache-dir", help="Local copy of an s3:// index (default: ~/.cache/groundzero/s3/...).")]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", help="Query model; default: the one that built the index.")]


def json_flag(what: str) -> object:
    """``--json``: print ``what`` as JSON instead of a table (for scripts)."""
    return typer.Option("--json", help=f"Print {what} as JSON.")


#: field -> flag of the S3 options (S3Config)
S3_FLAGS = {"endpoint_url": "--endpoint-url"}
