"""The real index run with a stand-in for decode + embed, and pause points to kill it at.

``run_index`` is the production code (plan, store, commit every N, run records,
lock, growth, garbage collection); only ``groundzero.indexer.pipeline._embed_all`` — ffmpeg
and Ray — is replaced by :func:`fake_embed_all`, which turns each archive file's
bytes into deterministic frame embeddings (so a re-run after a crash must
reproduce exactly what an uninterrupted run stores). A file whose bytes start
with ``BAD`` fails with reason ``not_video``.

As a program (``python -m tests.crash.fake_pipeline``) it can stop at a named
point of the store's commit protocol: it creates ``--pause-file`` and sleeps,
so a test can SIGKILL it exactly there (deterministic, no timing races).
The points, each counted per run (``--pause-count``: the n-th occurrence):

=========================  ==========================================================
``video``                  a video's frames file written, its proposals file not yet
``before-commit``          videos staged (files on disk), commit not started
``after-catalog``          commit: catalog file of the new version written
``after-faiss``            commit: FAISS file written, no manifest yet
``after-versioned``        commit: ``manifests/NNNNNN.json`` written, ``manifest.json`` not swapped
``after-swap``             commit published; garbage collection not run
``mid-gc``                 garbage collection has deleted one file
=========================  ==========================================================

The hooks are monkeypatches made here, in the test program: production code
has no fault-injection switch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from groundzero.store.writer import VideoEntry, video_id_for

DIM_FALLBACK = 32


def frames_for(data: bytes, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (timestamps (T,), unit embeddings (T, dim)) for a file's bytes; T in [50, 170)."""
    seed = int.from_bytes(hashlib.sha256(data).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    T = 50 + seed % 120
    # a few "scenes": frames near one of 4 directions, so the vectors have cluster structure
    centers = rng.normal(size=(4, dim))
    x = centers[np.repeat(np.arange(4), -(-T // 4))[:T]] + 0.3 * rng.normal(size=(T, dim))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return np.arange(T, dtype=np.float64), x


def fake_embed_all(cfg, todo: list[VideoEntry], *args, dim: int = DIM_FALLBACK, delay_sec: float = 0.0, **kwargs):
    """Stands in for ``groundzero.indexer.pipeline._embed_all``: yields (AssembledVideo, VideoEntry)."""
    from groundzero.indexer.rows import AssembledVideo

    for e in todo:
        data = Path(e.uri).read_bytes()
        vid = video_id_for(e.uri)
        if data.startswith(b"BAD"):
            meta = {"ok": False, "reason": "not_video", "error": f"{e.uri}: not a video (test file)"}
            yield AssembledVideo(vid, meta, np.zeros(0), np.zeros((0, 0), np.float32)), e
            continue
        ts, emb = frames_for(data, dim)
        meta = {"ok": True, "n_frames": len(ts), "duration_sec": float(len(ts)), "width": 64, "height": 48,
                "content_hash": hashlib.sha256(data).hexdigest()}
        if delay_sec:
            time.sleep(delay_sec)
        yield AssembledVideo(vid, meta, ts, emb), e


def write_video_file(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"FAKE" + np.random.default_rng(seed).bytes(64))


def make_archive(root: Path, n: int, bad: tuple[int, ...] = ()) -> list[Path]:
    """``n`` fake video files ``v000.mp4``...; the indices in ``bad`` fail to decode."""
    out = []
    for i in range(n):
        p = root / f"v{i:03d}.mp4"
        if i in bad:
            p.write_bytes(b"BAD file")
        else:
            write_video_file(p, i)
        out.append(p)
    return out


def patch_embed(monkeypatch_setattr, dim: int, delay_sec: float = 0.0) -> None:
    from groundzero.indexer import pipeline

    def fake(cfg, todo, *a, **k):
        return fake_embed_all(cfg, todo, dim=dim, delay_sec=delay_sec)

    monkeypatch_setattr(pipeline, "_embed_all", fake)


# -- pause points (program only) ---------------------------------------------------


def _pauser(pause_file: Path, wanted: str, count: int):
    seen = {"n": 0}

    def maybe_pause(here: str) -> None:
        if here != wanted:
            return
        seen["n"] += 1
        if seen["n"] == count:
            pause_file.write_text(json.dumps({"point": here, "pid": os.getpid()}))
            time.sleep(3600)  # the test kills us here

    return maybe_pause


def install_pause(point: str, count: int, pause_file: Path) -> None:
    import groundzero.store.manifest as manifest_mod
    import groundzero.store.tables as tables_mod
    import groundzero.store.writer as writer_mod
    from groundzero.store.vectors import ContextIndex

    pause = _pauser(pause_file, point, count)

    orig_props = tables_mod.write_proposals

    def write_proposals(*a, **k):
        pause("video")
        return orig_props(*a, **k)

    tables_mod.write_proposals = write_proposals

    orig_commit = writer_mod.IndexWriter.commit

    def commit(self, run_id):
        pause("before-commit")
        return orig_commit(self, run_id)

    writer_mod.IndexWriter.commit = commit

    orig_catalog = writer_mod.write_catalog

    def write_catalog(*a, **k):
        orig_catalog(*a, **k)
        pause("after-catalog")

    writer_mod.write_catalog = write_catalog

    orig_save = ContextIndex.save

    def save(self, path):
        orig_save(self, path)
        pause("after-faiss")

    ContextIndex.save = save

    orig_atomic = manifest_mod.atomic_write

    def atomic_write(path, text):
        orig_atomic(path, text)
        if path.parent.name == "manifests":
            pause("after-versioned")

    manifest_mod.atomic_write = atomic_write

    orig_gc = writer_mod.collect_garbage

    def collect_garbage(layout, m, policy, **k):
        pause("after-swap")

        def unlink(p):
            p.unlink(missing_ok=True)
            pause("mid-gc")

        return orig_gc(layout, m, policy, unlink=unlink)

    writer_mod.collect_garbage = collect_garbage


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("archive")
    ap.add_argument("--index", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--commit-every", type=int, default=2)
    ap.add_argument("--factory", default="auto")
    ap.add_argument("--pause-at", default="")
    ap.add_argument("--pause-count", type=int, default=1)
    ap.add_argument("--pause-file", default="")
    ap.add_argument("--delay-sec", type=float, default=0.0)
    a = ap.parse_args(argv)

    from groundzero.indexer.config import IndexConfig
    from groundzero.indexer.pipeline import run_index
    from groundzero.model.identity import read_identity

    _, ident = read_identity(a.model)
    patch_embed(lambda obj, name, val: setattr(obj, name, val), ident.embed_dim, a.delay_sec)
    if a.pause_at:
        install_pause(a.pause_at, a.pause_count, Path(a.pause_file))
    cfg = IndexConfig(archive=a.archive, index_dir=a.index, model=a.model, device="cpu",
                      commit_every=a.commit_every, faiss_factory=a.factory)
    rep = run_index(cfg)
    print(json.dumps({"run": rep.record.__dict__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
