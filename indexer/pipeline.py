"""An index run: list the archive, plan, decode + embed on Ray Data, store, commit.

::

    archive listing ──plan──> videos to (re)index
        │  ray.data.from_items            one row per video
        │  .map_batches(decode_rows)      CPU tasks: ffmpeg -> frame rows (streamed; still frames: none)
        │  .map_batches(EmbedFrames)      actor pool (GPU when present): frames -> embeddings
        ▼  .iter_batches()                driver: VideoAssembler -> proposals + tokens -> IndexWriter
    commit (every ``commit_every`` videos or ``commit_every_sec`` seconds, and at the end): one atomic snapshot

Ray is local by default; with ``RAY_ADDRESS`` set, ``ray.init()`` joins that
cluster instead, with no code change.

Archive and index may each be local or on S3. An S3 archive's videos are
downloaded inside the decode tasks (:mod:`groundzero.indexer.fetch`); an S3 index is
pulled into a local working copy first and each commit is then published to S3
(:mod:`groundzero.store.s3_index`).

Incremental runs: :mod:`groundzero.indexer.plan` decides which videos to (re)index.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from groundzero.data.proposals import make_windows
from groundzero.data.segments import TextSegment
from groundzero.errors import ConfigError, DiskFullError, GroundZeroError, RemoteStoreError
from groundzero.indexer.asr import check_asr_model
from groundzero.indexer.config import IndexConfig
from groundzero.indexer.decode import DecodeConfig
from groundzero.indexer.embed import EmbedFrames
from groundzero.indexer.embed_plan import embed_sizing, with_precision
from groundzero.indexer.plan import Plan, make_plan, new_run_id
from groundzero.indexer.rows import AssembledVideo, VideoAssembler, decode_rows
from groundzero.indexer.sources import list_archive
from groundzero.indexer.stills import StillConfig
from groundzero.indexer.stops import disk_full_error, is_disk_full, uninterrupted
from groundzero.indexer.tokens import ZERO_SHOT, TokenMaker, head_token_kind
from groundzero.model.identity import default_max_patches, read_identity
from groundzero.model.precision import runtime_name
from groundzero.plugins import named_model
from groundzero.store.catalog import RunRecord
from groundzero.store.cleanup import utc_now
from groundzero.store.layout import IndexLayout
from groundzero.store.manifest import IndexParams, read_manifest
from groundzero.store.s3 import is_s3_url
from groundzero.store.s3_index import S3Index
from groundzero.store.writer import IndexWriter, VideoEntry, video_id_for

log = logging.getLogger(__name__)

#: Ray memory reservation of one decode task, bytes.
DECODE_TASK_MEMORY = 256 * 1024 * 1024
#: more for a decode task that also runs OCR or speech recognition (their models)
CHANNELS_TASK_MEMORY = 768 * 1024 * 1024


@dataclass
class Progress:
    """Live counters handed to the progress callback."""

    total: int = 0
    indexed: int = 0
    failed: int = 0
    frames: int = 0  #: frames embedded (a still frame reusing an embedding does not count)
    reused: int = 0  #: frames of finished videos that reused an earlier frame's embedding (still frames)
    commits: int = 0
    last: str = ""
    #: how busy each stage was for the finished videos: wall and CPU seconds of the decode tasks
    #: (ffmpeg included) and of the embed actors' calls
    decode_s: float = 0.0
    decode_cpu_s: float = 0.0
    embed_s: float = 0.0
    embed_cpu_s: float = 0.0


@dataclass
class RunReport:
    record: RunRecord
    plan: Plan
    failures: list[dict]  #: catalog rows of the videos that failed in this run


def _remote(cfg: IndexConfig) -> S3Index | None:
    return S3Index.open(cfg.index_dir, cfg.s3, cfg.cache_dir) if is_s3_url(cfg.index_dir) else None


def run_index(cfg: IndexConfig, on_progress: Callable[[Progress], None] | None = None) -> RunReport:
    """Index ``cfg.archive`` into ``cfg.index_dir``; returns what happened.

    Failures of single videos never stop the run: they are recorded in the
    catalog with a reason. Raises only for problems of the run as a whole
    (bad configuration, model missing, index locked or built with another model,
    :class:`~groundzero.errors.DiskFullError` when the index's disk or quota is full).

    The run commits a snapshot once ``cfg.commit_every`` videos finished since the last one or
    ``cfg.commit_every_sec`` seconds passed, whichever comes first, and at the end. Stopped by
    an exception (or KeyboardInterrupt, :class:`~groundzero.indexer.stops.RunStopped`), it publishes what finished and
    records itself ``aborted``; stopped by a full disk it deletes what it wrote since its last
    commit instead and records itself ``failed`` (every committed snapshot stays whole).
    """
    try:
        return _run_index(cfg, on_progress)
    except GroundZeroError:
        raise
    except Exception as e:  # a full disk before the writer was writing (lock, run record, S3 cache)
        if not is_disk_full(e, None):
            raise
        raise disk_full_error(e, cfg.index_dir) from e


def _run_index(cfg: IndexConfig, on_progress: Callable[[Progress], None] | None) -> RunReport:
    cfg.validate()
    entries = list_archive(cfg.archive, cfg.exclude, cfg.s3)  # first: a wrong archive path is the likeliest slip
    remote = _remote(cfg)
    root = remote.pull("writer", repair=True).root if remote else Path(cfg.index_dir).expanduser()
    cfg = with_precision(_with_model(cfg, root), root)
    model_dir, identity = read_identity(cfg.model)
    identity = replace(identity, runtime=runtime_name(cfg.precision))  # recorded; another one is refused
    if cfg.precision == "int8":  # built here, once, before the actors load it (and refused here for NaFlex)
        from groundzero.model.onnx_tower import ensure_int8

        ensure_int8(model_dir, identity)
    if cfg.channels.transcript.asr_model is not None:  # refused before anything runs, like the image model
        check_asr_model(cfg.channels.transcript.asr_model)
    tokens = _token_maker(cfg, root)
    params = IndexParams(fps=cfg.fps, frame_size=identity.image_size, token_kind=tokens.kind,
                         proposals=replace(cfg.proposals, tokens_per_proposal=tokens.k),
                         max_patches=_max_patches(cfg, root, model_dir, identity))
    with IndexWriter.open(root, identity, params, cfg.faiss_factory) as writer:
        if remote:
            _best_effort(remote.push_finished_runs, "updating run records on S3")
        previous = {u: writer.previous(u) for u in writer.uris()}
        plan = make_plan(entries, previous, cfg.retry_failed)
        run_id = new_run_id()
        record = RunRecord(
            run_id=run_id, archive=str(cfg.archive), model=identity.name, started_at=utc_now(),
            n_listed=len(entries), n_new=len(plan.new), n_changed=len(plan.changed),
            n_unchanged=len(plan.unchanged), n_removed=len(plan.removed), index=str(cfg.index_dir),
            n_retry=len(plan.retry),
        )
        progress = Progress(total=len(plan.todo))
        failures: list[dict] = []
        reasons: Counter[str] = Counter()
        commits = _Commits(cfg, writer, run_id, remote, record, progress, reasons)

        def tick(p: Progress) -> None:  # frames arrived, no video finished: maybe time to commit
            commits.maybe()
            if on_progress:
                on_progress(p)

        videos = None
        try:
            _save_record(record, writer.layout, remote)
            for entry in plan.touched:
                writer.refresh(entry)
            if tokens.head_dir:  # later runs without --head keep using it
                writer.extra["head"] = tokens.head_dir
            for uri in plan.removed:
                writer.remove(uri)
            if on_progress:
                on_progress(progress)
            dcfg = DecodeConfig.for_model(model_dir, identity, cfg.fps, params.max_patches,
                                          chunk_frames=cfg.chunk_frames, threads=cfg.decode_threads)
            videos = _embed_all(cfg, plan.todo, dcfg, progress, tick)
            for video, entry in videos:
                _store(writer, cfg, run_id, video, entry, record, reasons, failures, tokens)
                progress.indexed, progress.failed = record.n_indexed, record.n_failed
                progress.last = entry.rel_path
                commits.maybe()
                if on_progress:
                    on_progress(progress)
            if writer.dirty or writer.manifest is None:
                commits.commit()
        except BaseException as e:
            with uninterrupted(raise_deferred=False):  # a second signal must not cut this short
                if videos is not None:  # stop the pipeline now: its threads must not outlive Ray at exit
                    _best_effort(videos.close, "stopping the pipeline")
                if isinstance(e, Exception) and is_disk_full(e, writer):
                    raise _stop_disk_full(e, commits, len(plan.todo)) from e
                # Keep (and publish) everything finished so far, then report the run as aborted.
                if writer.dirty:
                    _best_effort(commits.commit, "publishing the work done before the run stopped")
                record.status, record.message = "aborted", f"{type(e).__name__}: {e}"
                record.finished_at, record.failures_by_reason = utc_now(), dict(reasons)
                _save_record(record, writer.layout, remote)
            raise
        if remote:  # once per run, not per commit: it lists the whole prefix
            _best_effort(lambda: remote.collect_garbage(writer.retention), "deleting old snapshots' objects on S3")
        record.finished_at = utc_now()
        record.failures_by_reason = dict(reasons)
        record.status = "completed_with_failures" if record.n_failed else "completed"
        _save_record(record, writer.layout, remote)
    return RunReport(record=record, plan=plan, failures=failures)


@dataclass
class _Commits:
    """When a run commits: once ``commit_every`` videos finished since its last commit, or once
    ``commit_every_sec`` seconds passed, whichever comes first; and what its record said then."""

    cfg: IndexConfig
    writer: IndexWriter
    run_id: str
    remote: S3Index | None
    record: RunRecord
    progress: Progress
    reasons: Counter
    at: float = field(default_factory=time.monotonic)  #: time of the last commit (or of the start)
    done: int = 0  #: videos finished (indexed or failed) at the last commit
    #: the record's n_indexed, n_failed, video_seconds_indexed, failures_by_reason at the last commit
    kept: tuple[int, int, float, dict] = (0, 0, 0.0, {})

    def finished(self) -> int:
        return self.record.n_indexed + self.record.n_failed

    def maybe(self) -> None:
        """Commit if the count or the time bound says so (and anything is staged)."""
        if self.writer.dirty and (self.finished() - self.done >= self.cfg.commit_every
                                  or time.monotonic() - self.at >= self.cfg.commit_every_sec):
            self.commit()

    def commit(self) -> None:
        _commit(self.writer, self.run_id, self.remote, self.record, self.progress)
        r = self.record
        self.at, self.done = time.monotonic(), self.finished()
        self.kept = (r.n_indexed, r.n_failed, r.video_seconds_indexed, dict(self.reasons))


def _commit(writer: IndexWriter, run_id: str, remote: S3Index | None, record: RunRecord,
            progress: Progress) -> None:
    """Commit a snapshot locally and, for an S3 index, publish it (raises if publishing fails).
    A stop signal arriving meanwhile takes effect once the commit is done
    (:func:`~groundzero.indexer.stops.stop_on_signals`)."""
    with uninterrupted():
        m = writer.commit(run_id)
        if remote:
            remote.push(m)
        record.n_commits += 1
        progress.commits += 1


def _stop_disk_full(e: Exception, commits: _Commits, n_todo: int) -> DiskFullError:
    """A full disk ends the run: delete what it wrote since its last commit (its files, ``.tmp``
    files, and earlier runs' garbage), record it ``failed`` with the counts of what it committed,
    and return the error to raise."""
    writer, record = commits.writer, commits.record
    writer.discard_uncommitted()
    err = disk_full_error(e, writer.layout.root, writer, n_todo - commits.done)
    record.n_indexed, record.n_failed, record.video_seconds_indexed, reasons = commits.kept
    record.status, record.message, record.finished_at = "failed", str(err), utc_now()
    record.failures_by_reason = dict(reasons)
    _save_record_anyway(record, writer.layout, commits.remote)
    return err


def _save_record_anyway(record: RunRecord, layout: IndexLayout, remote: S3Index | None) -> None:
    """Save a failed run's record even on a full disk: atomically if there is room, else over
    its earlier version in place (the blocks it already has)."""
    try:
        _save_record(record, layout, remote)
    except Exception as e:  # noqa: BLE001 - the run is failing already: its error is what matters
        try:
            (layout.runs_dir / f"{record.run_id}.json").write_text(json.dumps(asdict(record), indent=2))
        except OSError:
            log.warning("could not record run %s as %s: %s", record.run_id, record.status, e)


def _save_record(record: RunRecord, layout: IndexLayout, remote: S3Index | None) -> None:
    path = record.save(layout)
    if remote:
        _best_effort(lambda: remote.push_run(path), f"uploading run record {record.run_id}")


def _best_effort(fn: Callable[[], object], doing: str) -> None:
    """Run ``fn``; log (not raise) a failure: used where a failure must not hide the real outcome."""
    try:
        fn()
    except (RemoteStoreError, OSError) as e:
        log.warning("%s failed: %s", doing, e)
    except Exception as e:  # noqa: BLE001 - e.g. IndexLockedError while already reporting another error
        log.error("%s failed: %s: %s", doing, type(e).__name__, e)


def _with_model(cfg: IndexConfig, root: Path) -> IndexConfig:
    """``cfg`` with ``model="auto"`` made concrete: the index's own model, else the device's default."""
    if cfg.model != "auto":
        return cfg
    m = read_manifest(IndexLayout(root))
    from groundzero.model.backbone import default_model

    return replace(cfg, model=m.model.name if m is not None else default_model(cfg.device))


def _max_patches(cfg: IndexConfig, root: Path, model_dir: Path, identity) -> int:
    """A NaFlex model's patch budget: ``cfg.max_patches``, else the index's own, else the
    checkpoint's; 0 for a fixed-resolution model (which refuses the option)."""
    if not identity.naflex:
        if cfg.max_patches is not None:
            raise ConfigError(f"max_patches is for NaFlex checkpoints (siglip2-*-naflex); {cfg.model} takes "
                              f"{identity.image_size}x{identity.image_size} frames", field="max_patches")
        return 0
    if cfg.max_patches is not None:
        return cfg.max_patches
    m = read_manifest(IndexLayout(root))
    return m.params.max_patches if m is not None and m.params.max_patches else default_max_patches(model_dir)


def _token_maker(cfg: IndexConfig, root: Path) -> TokenMaker:
    """The head's learned tokens when a head is given, the index already uses one (then the same
    head), or a new index's model is a named model with a default head (:mod:`groundzero.plugins`);
    else zero-shot."""
    head = cfg.head
    m = read_manifest(IndexLayout(root))
    if head is None and m is not None and m.params.token_kind != ZERO_SHOT:
        head = m.extra.get("head")
    bundle = named_model(cfg.model) if head is None and m is None else None
    if bundle is not None and bundle.head_dir is not None:
        head = str(bundle.head_dir)
    if head is None:
        return TokenMaker(ZERO_SHOT, cfg.proposals.tokens_per_proposal)
    return TokenMaker(head_token_kind(head), cfg.proposals.tokens_per_proposal, head, "cpu")


def _store(writer: IndexWriter, cfg: IndexConfig, run_id: str, video: AssembledVideo, entry: VideoEntry,
           record: RunRecord, reasons: Counter, failures: list[dict], make_tokens: TokenMaker) -> None:
    m = video.meta
    digest = m.get("content_hash", "")
    entry = replace(entry, content_hash=digest, duration_sec=float(m.get("duration_sec", 0.0)),
                    width=int(m.get("width", 0)), height=int(m.get("height", 0)),
                    content_id=entry.content_id or (f"sha256:{digest}" if digest else ""),
                    note=m.get("note", ""))
    if video.ok:
        windows = make_windows(len(video.timestamps_sec), cfg.fps, cfg.proposals)
        tokens = make_tokens(video.embeddings, windows)
        segments = [TextSegment.from_json(d) for d in m.get("segments", [])]
        writer.put_indexed(entry, run_id, video.timestamps_sec, video.embeddings, windows, tokens,
                           segments=segments, text_notes=m.get("text_notes", []))
        record.n_indexed += 1
        record.video_seconds_indexed += len(video.timestamps_sec) / cfg.fps
    else:
        failures.append(writer.put_failed(entry, run_id, m.get("reason", "decode_failed"), m.get("error", "")))
        reasons[m.get("reason", "decode_failed")] += 1
        record.n_failed += 1


def _embed_all(cfg: IndexConfig, todo: list[VideoEntry], dcfg: DecodeConfig, progress: Progress,
               on_progress: Callable[[Progress], None] | None):
    """Yield (AssembledVideo, VideoEntry) for every video in ``todo`` as each completes."""
    if not todo:
        return
    import ray

    from groundzero.indexer.ray_runtime import (
        embed_actor_options,
        embed_device,
        gpu_index,
        init_ray,
    )

    init_ray(gpu=gpu_index(cfg.device) if not os.environ.get("RAY_ADDRESS") else None)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the CLI draws one bar for the whole run
    by_id = {video_id_for(e.uri): e for e in todo}
    device = embed_device(cfg.device)  # the cluster's GPUs count, not only the driver's
    ds = ray.data.from_items(
        [{"video_id": vid, "path": e.uri, "content_id": e.content_id, "sidecars": json.dumps(list(e.sidecars))}
         for vid, e in by_id.items()],
        override_num_blocks=len(by_id)
    )
    # Decode runs as CPU tasks, one video each. Its memory reservation (ffmpeg plus
    # a few chunks of frames) also makes its remote args differ from the embed
    # actors', which keeps Ray from fusing decoding into them: fused, every video
    # would decode serially inside the (GPU) actor instead of on CPU workers.
    # The S3 endpoint is resolved here, in the driver: workers may have started before it was set.
    ds = ds.map_batches(decode_rows, batch_size=1,
                        fn_kwargs={"cfg": dcfg, "s3": cfg.s3.resolved(), "tmp_dir": cfg.tmp_dir,
                                   "channels": cfg.channels,
                                   "still": StillConfig() if cfg.reuse_still else None},
                        num_cpus=1, memory=DECODE_TASK_MEMORY + (CHANNELS_TASK_MEMORY if cfg.channels.heavy else 0))
    with warnings.catch_warnings():
        # max_restarts goes through map_batches' **ray_remote_args, which Ray 2.60+ marks deprecated
        # without offering a named parameter for it yet; pyproject.toml keeps ray below 2.64, where it goes
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        size = embed_sizing(device, cfg.embed_actors, cfg.embed_threads)  # actors x threads for these nodes
        ds = ds.map_batches(
            EmbedFrames,
            fn_constructor_kwargs={"model": cfg.model, "device": str(device), "max_batch": cfg.embed_batch_size,
                                   "precision": cfg.precision, "threads": size.threads},
            batch_size=cfg.embed_batch_size,
            compute=ray.data.ActorPoolStrategy(size=size.actors),
            num_cpus=size.cpus,
            num_gpus=1 if device.type == "cuda" else 0,
            **embed_actor_options(),
        )
    assembler = VideoAssembler()
    t0 = time.monotonic()
    batches = iter(ds.iter_batches(batch_size=None, batch_format="numpy"))
    try:
        for batch in batches:
            progress.frames += int(sum(1 for m in batch["end_meta"] if m == ""))
            done = assembler.add(batch)
            if not done and on_progress:
                on_progress(progress)
            for v in done:
                progress.reused += len(v.meta.get("reused", []))
                for k in ("decode_s", "decode_cpu_s", "embed_s", "embed_cpu_s"):
                    setattr(progress, k, getattr(progress, k) + float(v.meta.get(k, 0.0)))
                yield v, by_id[v.video_id]
    finally:  # a run stopped early shuts Ray Data's executor down here, not in a thread racing the exit
        close = getattr(batches, "close", None)  # Ray Data's iterator is a generator (Ray 2.40-2.63)
        if close is not None:
            close()
    for v in assembler.flush_incomplete():  # rows lost on the way: recorded, never silently dropped
        yield v, by_id[v.video_id]
    log.info("embedded %d frames in %.1fs (%d still frames reused an embedding); decode tasks %.1fs wall, "
             "%.1fs CPU; embed calls %.1fs wall, %.1fs CPU", progress.frames, time.monotonic() - t0, progress.reused,
             progress.decode_s, progress.decode_cpu_s, progress.embed_s, progress.embed_cpu_s)
