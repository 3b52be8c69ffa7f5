"""``groundzero``: index a video archive, search inside it, inspect the catalog.

The commands live by topic (``index_cmds``, ``search_cmds``, ``clip_cmds``,
``catalog_cmds``, ``train_cmds``); what they share (logging, errors, options) in ``common``, the
output in ``render``. This module assembles the app, in the order ``--help`` lists it.
"""

from __future__ import annotations

import typer

from groundzero.cli import catalog_cmds, clip_cmds, index_cmds, search_cmds, train_cmds
from groundzero.cli.common import EXIT_SOME_FAILED

__all__ = ["EXIT_SOME_FAILED", "app", "main"]

app = typer.Typer(
    name="groundzero",
    help="Natural-language search inside video archives: exact (video, start, end) spans.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command()(index_cmds.index)
app.command()(search_cmds.search)
app.command()(clip_cmds.clip)
app.add_typer(catalog_cmds.app, name="catalog")
app.command()(train_cmds.synth)
app.command()(index_cmds.reindex)
app.command()(train_cmds.train)
app.command("eval")(train_cmds.eval_)
app.command()(search_cmds.serve)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
