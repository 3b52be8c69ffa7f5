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

Archive and index may each be local or on S3. An S3 archive's videos are
downloaded inside the decode tasks (:mod:`groundzero.indexer.fetch`); an S3 index is
pulled into a local working copy first and each commit is then published to S3
(:mod:`groundzero.store.s3_index`).

Incremental runs skip a video whose content is unchanged (:func:`make_plan`):

* S3 object: same size and same ETag (``content_id``); LastModified alone moving
  (a metadata-only copy) changes nothing.
* local file: same size and mtime is the fast check. When the mtime moved but
  the size did not, the file is hashed (SHA-256 of all its bytes) and compared
  with the hash the catalog recorded when it was indexed: equal means a
  ``touch`` or a copy that kept the bytes, and the video is not re-indexed (its
  new mtime is recorded, so the next run takes the fast path again). A full hash
  rather than a sample of head and tail: an in-place edit that keeps the size
  (a patched header, a fixed block) must not be missed, and the cost is paid only
  for files whose mtime moved.

A video that failed to download (``fetch_failed``: throttling, a network error)
is retried by the next run without ``--retry-failed``.
"""

from __future__ import annotations

import logging
import secrets
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from groundzero.errors import RemoteStoreError
from groundzero.model.identity import read_identity
from groundzero.plugins import named_model
from groundzero.data.proposals import make_windows
from groundzero.store.catalog import RunRecord, read_catalog
from groundzero.store.layout import IndexLayout
from groundzero.store.manifest import IndexParams, read_manifest
from groundzero.store.s3 import is_s3_url
from groundzero.store.s3_index import S3Index
from groundzero.store.writer import IndexWriter, VideoEntry, utc_now, video_id_for
from groundzero.indexer.config import IndexConfig
from groundzero.indexer.decode import DecodeConfig
from groundzero.indexer.embed import EmbedFrames
from groundzero.indexer.rows import AssembledVideo, VideoAssembler, decode_rows, file_sha256
from groundzero.indexer.sources import list_archive
from groundzero.indexer.tokens import ZERO_SHOT, TokenMaker, head_token_kind

log = logging.getLogger(__name__)

#: Ray memory reservation of one decode task, bytes.
DECODE_TASK_MEMORY = 256 * 1024 * 1024

#: failure reasons worth trying again on the next run even when the file did not change
TRANSIENT_REASONS = frozenset({"fetch_failed"})


@dataclass
class Plan:
    """What a run will do with each listed file."""

    new: list[VideoEntry] = field(default_factory=list)
    changed: list[VideoEntry] = field(default_factory=list)
    retry: list[VideoEntry] = field(default_factory=list)
    unchanged: list[VideoEntry] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  #: uris in the catalog, gone from the archive
    #: unchanged videos whose listing metadata moved (mtime, LastModified): recorded, not re-indexed
    touched: list[VideoEntry] = field(default_factory=list)

    @property
    def todo(self) -> list[VideoEntry]:
        return self.new + self.changed + self.retry

    def counts(self) -> dict[str, int]:
        return {"new": len(self.new), "changed": len(self.changed), "retry": len(self.retry),
                "unchanged": len(self.unchanged), "removed": len(self.removed)}


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


def make_plan(entries: list[VideoEntry], previous: dict[str, dict], retry_failed: bool,
              hash_file: Callable[[str], str] = file_sha256) -> Plan:
    """Compare the listing with the catalog by content identity (see module docstring)."""
    plan = Plan()
    for e in entries:
        old = previous.get(e.uri)
        if old is None:
            plan.new.append(e)
            continue
        same, e = same_content(old, e, hash_file)
        if not same:
            plan.changed.append(e)
        elif old["status"] == "failed" and (retry_failed or old.get("reason") in TRANSIENT_REASONS):
            plan.retry.append(e)
        else:
            plan.unchanged.append(e)
            if old["mtime_ns"] != e.mtime_ns:
                plan.touched.append(e)
    listed = {e.uri for e in entries}
    plan.removed = sorted(u for u in previous if u not in listed)
    return plan


def same_content(old: dict, e: VideoEntry, hash_file: Callable[[str], str]) -> tuple[bool, VideoEntry]:
    """Whether listed ``e`` holds the content of catalog row ``old``; also returns ``e`` with its
    ``content_id`` filled in when a local file had to be hashed."""
    if old["size_bytes"] != e.size_bytes:
        return False, e
    if e.content_id:  # S3: the ETag; a row without one (unknown) counts as changed
        return old.get("content_id") == e.content_id, e
    if old["mtime_ns"] == e.mtime_ns:
        return True, e
    known = old.get("content_hash") or ""
    if not known:  # never decoded successfully, so never hashed
        return False, e
    try:
        digest = hash_file(e.uri)
    except OSError:
        return False, e  # unreadable now: let the decoder record why
    return digest == known, replace(e, content_id=f"sha256:{digest}")


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def plan_index(cfg: IndexConfig) -> Plan:
    """The plan of a run without running it (``--dry-run``); takes no lock, loads no model."""
    cfg.validate()
    remote = _remote(cfg)
    layout = remote.pull("catalog") if remote else IndexLayout(Path(cfg.index_dir).expanduser())
    previous = {r["uri"]: r for r in read_catalog(layout, read_manifest(layout))} if layout.root.is_dir() else {}
    return make_plan(list_archive(cfg.archive, cfg.exclude, cfg.s3), previous, cfg.retry_failed)


def _remote(cfg: IndexConfig) -> S3Index | None:
    return S3Index.open(cfg.index_dir, cfg.s3, cfg.cache_dir) if is_s3_url(cfg.index_dir) else None


def run_index(cfg: IndexConfig, on_progress: Callable[[Progress], None] | None = None) -> RunReport:
    """Index ``cfg.archive`` into ``cfg.index_dir``; returns what happened.

    Failures of single videos never stop the run: they are recorded in the
    catalog with a reason. Raises only for problems of the run as a whole
    (bad configuration, model missing, index locked or built with another model).
    """
    cfg.validate()
    _, identity = read_identity(cfg.model)
    remote = _remote(cfg)
    root = remote.pull("writer", repair=True).root if remote else Path(cfg.index_dir).expanduser()
    tokens = _token_maker(cfg, root)
    params = IndexParams(fps=cfg.fps, frame_size=identity.image_size, token_kind=tokens.kind,
                         proposals=replace(cfg.proposals, tokens_per_proposal=tokens.k))
    entries = list_archive(cfg.archive, cfg.exclude, cfg.s3)
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
        _save_record(record, writer.layout, remote)
        for entry in plan.touched:
            writer.refresh(entry)
        if tokens.head_dir:  # later runs without --head keep using it
            writer.extra["head"] = tokens.head_dir
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
                    _commit(writer, run_id, remote, record, progress)
                if on_progress:
                    on_progress(progress)
            if writer.dirty or writer.manifest is None:
                _commit(writer, run_id, remote, record, progress)
        except BaseException as e:
            # Keep (and publish) everything finished so far, then report the run as aborted.
            if writer.dirty:
                _best_effort(lambda: _commit(writer, run_id, remote, record, progress),
                             "publishing the work done before the run stopped")
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


def _commit(writer: IndexWriter, run_id: str, remote: S3Index | None, record: RunRecord,
            progress: Progress) -> None:
    """Commit a snapshot locally and, for an S3 index, publish it (raises if publishing fails)."""
    m = writer.commit(run_id)
    if remote:
        remote.push(m)
    record.n_commits += 1
    progress.commits += 1


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
    except Exception as e:  # e.g. IndexLockedError while already reporting another error
        log.error("%s failed: %s: %s", doing, type(e).__name__, e)


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
                    content_id=entry.content_id or (f"sha256:{digest}" if digest else ""))
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

    from groundzero.indexer.ray_runtime import embed_actor_options, embed_device, init_ray

    init_ray()
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the CLI draws one bar for the whole run
    by_id = {video_id_for(e.uri): e for e in todo}
    dcfg = DecodeConfig(fps=cfg.fps, size=image_size, chunk_frames=cfg.chunk_frames, threads=cfg.decode_threads)
    device = embed_device(cfg.device)  # the cluster's GPUs count, not only the driver's
    ds = ray.data.from_items(
        [{"video_id": vid, "path": e.uri, "content_id": e.content_id} for vid, e in by_id.items()],
        override_num_blocks=len(by_id)
    )
    # Decode runs as CPU tasks, one video each. Its memory reservation (ffmpeg plus
    # a few chunks of frames) also makes its remote args differ from the embed
    # actors', which keeps Ray from fusing decoding into them: fused, every video
    # would decode serially inside the (GPU) actor instead of on CPU workers.
    # The S3 endpoint is resolved here, in the driver: workers may have started before it was set.
    ds = ds.map_batches(decode_rows, batch_size=1,
                        fn_kwargs={"cfg": dcfg, "s3": cfg.s3.resolved(), "tmp_dir": cfg.tmp_dir},
                        num_cpus=1, memory=DECODE_TASK_MEMORY)
    with warnings.catch_warnings():
        # max_restarts goes through map_batches' **ray_remote_args, which Ray 2.60+ marks deprecated
        # without offering a named parameter for it yet; pyproject.toml keeps ray below 2.64, where it goes
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        ds = ds.map_batches(
            EmbedFrames,
            fn_constructor_kwargs={"model": cfg.model, "device": str(device), "max_batch": cfg.embed_batch_size},
            batch_size=cfg.embed_batch_size,
            compute=ray.data.ActorPoolStrategy(size=cfg.embed_actors),
            num_gpus=1 if device.type == "cuda" else 0,
            **embed_actor_options(),
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
