"""``groundzero clip`` (one span of an indexed video to a file), and ``search --export``'s clips."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from groundzero.cli import render
from groundzero.cli.common import (
    S3_FLAGS,
    CacheDir,
    EndpointUrl,
    Verbose,
    json_flag,
    opt_str,
    reported,
    setup_logging,
)
from groundzero.errors import ConfigError

#: config field -> argument or flag of `clip`
CLIP_FLAGS = {"start_sec": "START", "end_sec": "END", "out_path": "-o", "force": "--force", **S3_FLAGS}
TIME_HELP = r"seconds (75.5) or \[hh:]mm:ss[.fff] (01:15.5)"  # \[: not rich markup


def clip(
    video_id: Annotated[str, typer.Argument(
        help="The video's id (video_id in `search --json`), or its path in the archive (`catalog list`).")],
    start: Annotated[str, typer.Argument(help=f"Start of the span: {TIME_HELP}.")],
    end: Annotated[str, typer.Argument(help=f"End of the span: {TIME_HELP}.")],
    output: Annotated[Path, typer.Option(
        "-o", "--output", help="File to write; .mp4, .m4v, .mov or .mkv (the container follows the suffix).")],
    index_dir: Annotated[str, typer.Option("--index", help="Index directory, or s3://bucket/prefix.")],
    exact: Annotated[bool, typer.Option(
        "--exact", help="Re-encode (H.264 crf 18, AAC) to start and end within a frame of the span; "
                        "default: copy the streams from the keyframe at or before START.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output file if it exists.")] = False,
    endpoint_url: EndpointUrl = None,
    cache_dir: CacheDir = None,
    json_out: Annotated[bool, json_flag("the clip")] = False,
    verbose: Verbose = False,
) -> None:
    """Cut START..END of an indexed video to a file."""
    setup_logging(verbose)
    from groundzero.search.clips import cut_video
    from groundzero.store.s3 import S3Config

    with reported(CLIP_FLAGS):
        start_sec, end_sec = parse_time(start, "start_sec"), parse_time(end, "end_sec")
        made, row = cut_video(index_dir, video_id, start_sec, end_sec, output, exact, force=force,
                              s3=S3Config(endpoint_url=endpoint_url), cache_dir=opt_str(cache_dir))
    if json_out:
        render.print_json({"video_id": row["video_id"], "rel_path": row["rel_path"], **made.to_dict()})
        return
    render.stdout().print(f"wrote {made.path}: {describe(made, row['rel_path'])}", highlight=False)


def parse_time(text: str, field: str) -> float:
    from groundzero.data.spans import parse_timestamp

    try:
        return parse_timestamp(text)
    except ValueError as e:
        raise ConfigError(f"{field}: {e}", field=field) from None


def describe(made, rel_path: str) -> str:
    """What a clip holds, in one line: its span of the source, and how it was cut."""
    from groundzero.data.spans import format_timestamp as ts

    line = f"{ts(made.start_sec)}–{ts(made.end_sec)} of {rel_path} ({made.end_sec - made.start_sec:.2f} s, " \
           f"{_size(made.bytes)}"
    if made.exact:
        return line + ", re-encoded)"
    early = made.requested_start_sec - made.start_sec
    note = f"; starts at the keyframe {early:.2f} s before {ts(made.requested_start_sec)}: --exact starts " \
           "on it" if early > 0.0005 else ""
    return line + f", stream copy{note})"


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.0f} kB"


# -- search --export ---------------------------------------------------------------------------

def export_clips(result, searcher, export_dir: Path) -> list:
    """The search hits' spans cut to ``export_dir`` (``groundzero.search.clips.export_hits``)."""
    from groundzero.search.clips import export_hits

    durations = {r["video_id"]: float(r["duration_sec"]) for r in searcher.videos.values()}
    return export_hits(result.hits, export_dir, durations)


def with_clips(body: dict, clips: list | None) -> dict:
    """``--json``'s result with each hit's clip (``clip``: path, the span it holds, bytes)."""
    if clips is not None:
        for h, c in zip(body["hits"], clips):
            h["clip"] = c.to_dict()
    return body


def print_exported(clips: list | None, export_dir: Path | None) -> None:
    if clips is None:
        return
    out = render.stdout()
    out.print(f"exported {len(clips)} clip(s) to {export_dir}:", highlight=False)
    for c in clips:
        out.print(f"  {Path(c.path).name}  {c.start_sec:.2f}–{c.end_sec:.2f} s"
                  f"{'' if c.exact else ' (from the keyframe at or before the start)'}", highlight=False)
