"""``groundzero search`` (one query, on the command line) and ``groundzero serve`` (page + API)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from groundzero.cli import clip_cmds, render
from groundzero.cli.common import (
    Device,
    ModelOpt,
    Verbose,
    error,
    json_flag,
    opt_str,
    reported,
    setup_logging,
)

#: SearchConfig field -> flag of `search`
SEARCH_FLAGS = {"top_k": "--top", "refine_fps": "--refine", "channels": "--channels"}
#: ServeConfig field -> flag of `serve`
SERVE_FLAGS = {"host": "--host", "port": "--port", "token": "--token", "search_threads": "--search-threads"}

def parse_channels(text: str) -> tuple[str, ...]:
    """``"frames, speech"`` -> ``("frames", "speech")`` (validated by SearchConfig)."""
    return tuple(dict.fromkeys(c.strip().lower() for c in text.split(",") if c.strip()))


HeadOpt = Annotated[Path | None, typer.Option(
    "--head", help="Trained grounding head; default: the one the index's context tokens were made "
    "with (groundzero reindex), else zero-shot.")]


def search(
    query: Annotated[str, typer.Argument(help="A sentence describing the moment.")],
    index_dir: Annotated[str, typer.Option(
        "--index", help="Index built by `groundzero index`, or s3://bucket/prefix (endpoint: "
        "AWS_ENDPOINT_URL).")],
    top: Annotated[int, typer.Option("--top", help="Number of moments to return.")] = 5,
    model: ModelOpt = None,
    device: Device = "auto",
    head: HeadOpt = None,
    refine: Annotated[bool, typer.Option(
        "--refine/--no-refine", help="Re-ground the top hits' edges from the video at 4 fps "
        "(needs the videos; off by default: docs/RESULTS.md).")] = False,
    channels: Annotated[str, typer.Option(
        "--channels", help="Channels to search, comma-separated: frames (the picture), speech "
        "(captions, speech recognition), text (on-screen text). Default: all the index has.")
    ] = "frames,speech,text",
    json_out: Annotated[bool, json_flag("the results")] = False,
    verbose: Verbose = False,
    export: Annotated[Path | None, typer.Option(
        "--export", help="Also cut each hit's span to a file in this folder (01_<video>_<span>.mp4, ... "
        "by rank; stream copy from the keyframe at or before the start).")] = None,
) -> None:
    """Find the moments that match QUERY across the whole archive."""
    setup_logging(verbose)
    from groundzero.search.config import SearchConfig
    from groundzero.search.searcher import Searcher, normalize_query

    with reported(SEARCH_FLAGS):
        query = normalize_query(query)  # a query that can never be searched is refused before the model loads
        cfg = SearchConfig(top_k=top, refine=refine, channels=parse_channels(channels)).validate()
        # One query in a fresh process: on a CPU the text tower runs in NumPy, so neither torch nor
        # transformers' model code is imported (seconds of start-up). A process that already holds torch
        # (the CLI called in-process) embeds with it, bit for bit as its other searches do.
        numpy_text = "torch" not in sys.modules
        searcher = Searcher(index_dir, model=model, device=device, cfg=cfg, head=opt_str(head),
                            numpy_text=numpy_text)
        result = searcher.search(query)
        clips = clip_cmds.export_clips(result, searcher, export) if export is not None else None
    if json_out:
        render.print_json(clip_cmds.with_clips(result.to_dict(), clips))
        return
    out = render.stdout()
    if not result.hits:
        out.print(f"no moments found for “{result.query}” (the index holds no videos)")
        return
    out.print(render.hits_table(result))
    if not result.found:
        out.print("[yellow]not found:[/] no span is a confident match in any channel; the best guesses are "
                  "listed above")
    clip_cmds.print_exported(clips, export)


def serve(
    index_dir: Annotated[str, typer.Option("--index", help="Index built by `groundzero index`.")],
    host: Annotated[str, typer.Option(
        help="Interface to bind; anything but loopback needs --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0: any free port).")] = 8000,
    token: Annotated[str | None, typer.Option(
        envvar="GROUNDZERO_TOKEN", show_envvar=True,
        help="Access token; API requests then need 'Authorization: Bearer TOKEN'.")] = None,
    model: ModelOpt = None,
    head: HeadOpt = None,
    device: Device = "auto",
    reload_every: Annotated[float, typer.Option(
        help="Seconds between checks for a newer snapshot (negative: never).")] = 5.0,
    search_threads: Annotated[int, typer.Option(
        help="Searches run at once, in parallel (0: one per CPU); more requests wait. The CPUs are "
             "shared out among them for torch's threads, unless OMP_NUM_THREADS is set.")] = 0,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Log every request.")] = False,
) -> None:
    """Serve the search page and JSON API (loopback only, unless --token)."""
    setup_logging(verbose)
    from groundzero.search.service.app import create_app
    from groundzero.search.service.config import ServeConfig
    from groundzero.search.service.server import serve_forever, share_cores

    with reported(SERVE_FLAGS):
        cfg = ServeConfig(index_dir=index_dir, host=host, port=port, token=token or None, model=model,
                          head=opt_str(head), device=device, reload_every_sec=reload_every,
                          search_threads=search_threads).validate()
        share_cores(cfg.searches_at_once)
        application = create_app(cfg)

    def ready(url: str) -> None:
        note = " (API requests need the token; open the page as /?token=...)" if cfg.token else ""
        render.stdout().print(f"serving {index_dir} at {url}{note}; Ctrl-C to stop", highlight=False)
        sys.stdout.flush()

    try:
        serve_forever(application, host, port, ready, log_level="info" if verbose else "warning")
    except OSError as e:
        error(f"cannot listen on {host}:{port}: {e.strerror or e}; pick another --port")
        raise typer.Exit(1) from None
