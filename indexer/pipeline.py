"""An index run: list the archive, plan, decode + embed on Ray Data, store, commit.

::

    archive listing ──plan──> videos to (re)index
        │  ray.data.from_items            one row per video
        │  .map_batches(decode_rows)      CPU tasks: ffmpeg -> frame rows (streamed)
        │  .map_batches(EmbedFrames)      actor pool (GPU when present): frames -> embeddings
        ▼  .iter_batches()                driver: VideoAssembler -> proposals + tokens -> IndexWriter
    commit (every ``commit_every`` videos and at the end): one atomic snapshot

Ray is local by default; with ``RAY_ADDRESS`` set, ``ray.init()`` joins that
cluster instead, with no code change.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from core.model.backbone import pick_device, read_identity
from core.proposals import make_windows
from core.store.catalog import RunRecord, read_catalog
from core.store.layout import IndexLayout
from core.store.manifest import IndexParams, read_manifest
from core.store.writer import IndexWriter, VideoEntry, utc_now, video_id_for
from indexer.config import IndexConfig
from indexer.decode import DecodeConfig
from indexer.embed import EmbedFrames
from indexer.rows import AssembledVideo, VideoAssembler, decode_rows
from indexer.sources import list_local
from indexer.tokens import ZERO_SHOT, TokenMaker, head_token_kind

log = logging.getLogger(__name__)

#: Ray memory reservation of one decode task, bytes.
DECODE_TASK_MEMORY = 256 * 1024 * 1024


@dataclass
class Plan:
    """What a run will do with each listed file."""

    new: list[VideoEntry] = field(default_factory=list)
    changed: list[VideoEntry] = field(default_factory=list)
    retry: list[VideoEntry] = field(default_factory=list)
    unchanged: list[VideoEntry] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  #: uris in the catalog, gone from the archive

    @property
    def todo(self) -> list[VideoEntry]:
        return self.new + self.changed + self.retry


@dataclass
class Progress:
    """Live counters handed to the progress callback."""

    total: int = 0
    indexed: int = 0
    failed: int = 0
    frames: int = 0
    commits: int = 0
    last: str = ""


@dataclass
class RunReport:
    record: RunRecord
    plan: Plan
    failures: list[dict]  #: catalog rows of the videos that failed in this run


def make_plan(entries: list[VideoEntry], previous: dict[str, dict], retry_failed: bool) -> Plan:
    """Compare the listing with the catalog: size + mtime unchanged means unchanged."""
    plan = Plan()
    for e in entries:
        old = previous.get(e.uri)
        if old is None:
            plan.new.append(e)
        elif (old["size_bytes"], old["mtime_ns"]) != (e.size_bytes, e.mtime_ns):
            plan.changed.append(e)
        elif old["status"] == "failed" and retry_failed:
            plan.retry.append(e)
        else:
            plan.unchanged.append(e)
    listed = {e.uri for e in entries}
    plan.removed = sorted(u for u in previous if u not in listed)
    return plan


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def plan_index(cfg: IndexConfig) -> Plan:
    """The plan of a run without running it (``--dry-run``); takes no lock, loads no model."""
    cfg.validate()
    layout = IndexLayout(Path(cfg.index_dir).expanduser())
    previous = {r["uri"]: r for r in read_catalog(layout, read_manifest(layout))} if layout.root.is_dir() else {}
    return make_plan(list_local(cfg.archive, cfg.exclude), previous, cfg.retry_failed)


def run_index(cfg: IndexConfig, on_progress: Callable[[Progress], None] | None = None) -> RunReport:
    """Index ``cfg.archive`` into ``cfg.index_dir``; returns what happened.

    Failures of single videos never stop the run: they are recorded in the
    catalog with a reason. Raises only for problems of the run as a whole
    (bad configuration, model missing, index locked or built with another model).
    """
    cfg.validate()
    _, identity = read_identity(cfg.model)
    tokens = _token_maker(cfg)
    params = IndexParams(fps=cfg.fps, frame_size=identity.image_size, token_kind=tokens.kind,
                         proposals=replace(cfg.proposals, tokens_per_proposal=tokens.k))
    entries = list_local(cfg.archive, cfg.exclude)
    with IndexWriter.open(cfg.index_dir, identity, params, cfg.faiss_factory) as writer:
        previous = {u: writer.previous(u) for u in writer.uris()}
        plan = make_plan(entries, previous, cfg.retry_failed)
        run_id = new_run_id()
        record = RunRecord(
            run_id=run_id, archive=str(cfg.archive), model=identity.name, started_at=utc_now(),
            n_listed=len(entries), n_new=len(plan.new), n_changed=len(plan.changed),
            n_unchanged=len(plan.unchanged), n_removed=len(plan.removed),
        )
        record.save(writer.layout)
        if tokens.kind != ZERO_SHOT and cfg.head:  # later runs without --head keep using it
            writer.extra["head"] = str(Path(cfg.head).expanduser().resolve())
        for uri in plan.removed:
            writer.remove(uri)
        progress = Progress(total=len(plan.todo))
        if on_progress:
            on_progress(progress)
        failures: list[dict] = []
        reasons: Counter[str] = Counter()
        try:
            for video, entry in _embed_all(cfg, plan.todo, identity.image_size, progress, on_progress):
                _store(writer, cfg, run_id, video, entry, record, reasons, failures, tokens)
                progress.indexed, progress.failed = record.n_indexed, record.n_failed
                progress.last = entry.rel_path
                if writer.dirty and (record.n_indexed + record.n_failed) % cfg.commit_every == 0:
                    writer.commit(run_id)
                    progress.commits += 1
                if on_progress:
                    on_progress(progress)
        except BaseException as e:
            # Keep everything finished so far, then report the run as aborted.
            if writer.dirty:
                writer.commit(run_id)
            record.status, record.message = "aborted", f"{type(e).__name__}: {e}"
            record.finished_at, record.failures_by_reason = utc_now(), dict(reasons)
            record.save(writer.layout)
            raise
        if writer.dirty or writer.manifest is None:
            writer.commit(run_id)
        record.finished_at = utc_now()
        record.failures_by_reason = dict(reasons)
        record.status = "completed_with_failures" if record.n_failed else "completed"
        record.save(writer.layout)
    return RunReport(record=record, plan=plan, failures=failures)


def _token_maker(cfg: IndexConfig) -> TokenMaker:
    """Zero-shot tokens, unless a head is given or the index already uses one (then the same head)."""
    head = cfg.head
    if head is None:
        m = read_manifest(IndexLayout(Path(cfg.index_dir).expanduser()))
        if m is not None and m.params.token_kind != ZERO_SHOT:
            head = m.extra.get("head")
    if head is None:
        return TokenMaker(ZERO_SHOT, cfg.proposals.tokens_per_proposal)
    return TokenMaker(head_token_kind(head), cfg.proposals.tokens_per_proposal, head, "cpu")


def _store(writer: IndexWriter, cfg: IndexConfig, run_id: str, video: AssembledVideo, entry: VideoEntry,
           record: RunRecord, reasons: Counter, failures: list[dict], make_tokens: TokenMaker) -> None:
    m = video.meta
    entry = replace(entry, content_hash=m.get("content_hash", ""), duration_sec=float(m.get("duration_sec", 0.0)),
                    width=int(m.get("width", 0)), height=int(m.get("height", 0)))
    if video.ok:
        windows = make_windows(len(video.timestamps_sec), cfg.fps, cfg.proposals)
        tokens = make_tokens(video.embeddings, windows)
        writer.put_indexed(entry, run_id, video.timestamps_sec, video.embeddings, windows, tokens)
        record.n_indexed += 1
        record.video_seconds_indexed += len(video.timestamps_sec) / cfg.fps
    else:
        failures.append(writer.put_failed(entry, run_id, m.get("reason", "decode_failed"), m.get("error", "")))
        reasons[m.get("reason", "decode_failed")] += 1
        record.n_failed += 1


def _embed_all(cfg: IndexConfig, todo: list[VideoEntry], image_size: int, progress: Progress,
               on_progress: Callable[[Progress], None] | None):
    """Yield (AssembledVideo, VideoEntry) for every video in ``todo`` as each completes."""
    if not todo:
        return
    import ray

    from indexer.ray_runtime import init_ray

    init_ray()
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the CLI draws one bar for the whole run
    by_id = {video_id_for(e.uri): e for e in todo}
    dcfg = DecodeConfig(fps=cfg.fps, size=image_size, chunk_frames=cfg.chunk_frames, threads=cfg.decode_threads)
    device = pick_device(cfg.device)
    ds = ray.data.from_items(
        [{"video_id": vid, "path": e.uri} for vid, e in by_id.items()], override_num_blocks=len(by_id)
    )
    # Decode runs as CPU tasks, one video each. Its memory reservation (ffmpeg plus
    # a few chunks of frames) also makes its remote args differ from the embed
    # actors', which keeps Ray from fusing decoding into them: fused, every video
    # would decode serially inside the (GPU) actor instead of on CPU workers.
    ds = ds.map_batches(decode_rows, batch_size=1, fn_kwargs={"cfg": dcfg}, num_cpus=1,
                        memory=DECODE_TASK_MEMORY)
    ds = ds.map_batches(
        EmbedFrames,
        fn_constructor_kwargs={"model": cfg.model, "device": str(device), "max_batch": cfg.embed_batch_size},
        batch_size=cfg.embed_batch_size,
        compute=ray.data.ActorPoolStrategy(size=cfg.embed_actors),
        num_gpus=1 if device.type == "cuda" else 0,
    )
    assembler = VideoAssembler()
    t0 = time.monotonic()
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        progress.frames += int(sum(1 for m in batch["end_meta"] if m == ""))
        done = assembler.add(batch)
        if not done and on_progress:
            on_progress(progress)
        for v in done:
            yield v, by_id[v.video_id]
    for v in assembler.flush_incomplete():  # rows lost on the way: recorded, never silently dropped
        yield v, by_id[v.video_id]
    log.info("embedded %d frames in %.1fs", progress.frames, time.monotonic() - t0)
