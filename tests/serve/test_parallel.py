"""Searches run in parallel: a Searcher called from several threads at once answers exactly as it
does one query at a time, a snapshot's result cache still works without holding searches in line,
and /api/search runs up to ``search_threads`` searches at once. No timings are asserted: the
threads meet at barriers, so "at once" is a fact, not a guess."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from groundzero.cli.main import app as cli_app
from groundzero.data.proposals import make_windows, zero_shot_tokens
from groundzero.errors import ConfigError
from groundzero.search.results import SearchResult
from groundzero.search.searcher import Searcher
from groundzero.search.service.config import ServeConfig
from groundzero.search.service.media import cpu_count
from groundzero.search.service.server import share_cores
from groundzero.search.service.state import IndexState, Snapshot
from groundzero.store import tables
from groundzero.store.manifest import require_manifest
from groundzero.store.writer import IndexWriter, VideoEntry
from tests.serve.conftest import copy_index, make_cfg

LONG_FRAMES = 12 * tables.FRAME_ROW_GROUP  #: frames of each long video: 12 frame row groups
QUERIES = [f"{a} {c}" for a in ("a", "the bright", "a slowly turning") for c in
           ("red circle", "blue", "green field", "white", "black screen", "orange", "purple light")]


@pytest.fixture(scope="module")
def long_index(index_dir, tmp_path_factory):
    """The serve archive's index plus two long synthetic videos (random frame embeddings, 12 frame
    row groups each), so searches read many row groups of one video from several threads."""
    idx = copy_index(index_dir, tmp_path_factory.mktemp("parallel") / "index")
    _, m = require_manifest(idx)
    fps = m.params.fps
    rng = np.random.default_rng(0)
    with IndexWriter.open(idx, m.model, m.params) as w:
        for i in range(2):
            ts = np.arange(LONG_FRAMES, dtype=np.float64) / fps
            emb = rng.standard_normal((LONG_FRAMES, m.model.embed_dim)).astype(np.float32)
            emb /= np.linalg.norm(emb, axis=1, keepdims=True)
            windows = make_windows(LONG_FRAMES, fps, m.params.proposals)
            entry = VideoEntry(uri=str(idx.parent / f"long{i}.mp4"), rel_path=f"long/{i}.mp4", size_bytes=1,
                               mtime_ns=1, content_hash=f"long{i}", duration_sec=LONG_FRAMES / fps, width=160,
                               height=120)
            w.put_indexed(entry, "parallel", ts, emb, windows,
                          zero_shot_tokens(emb, windows, m.params.proposals.tokens_per_proposal))
        w.commit("parallel")
    return idx


def answer(r: SearchResult) -> str:
    """What a search answers, less its timings."""
    d = r.to_dict()
    d.pop("timings_ms")
    return json.dumps(d, sort_keys=True)


def long_seqs(s: Searcher) -> list[int]:
    return sorted(seq for seq, row in s.videos.items() if row["rel_path"].startswith("long/"))


def test_concurrent_searches_answer_as_sequential_ones(long_index, state):
    one = Searcher(long_index, device="cpu", backbone=state.backbone)
    want = {q: answer(one.search(q, top_k=50)) for q in QUERIES}
    assert len(set(want.values())) > 1
    # two videos' readers in the cache: the threads evict and reopen them while others read them
    many = Searcher(long_index, device="cpu", backbone=state.backbone, cache_videos=2)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda q: (q, answer(many.search(q, top_k=50))), QUERIES * 3))
    assert [g for q, g in got] == [want[q] for q, _ in got]
    read, total = many.frame_groups_read()
    assert 0 < read <= total
    assert len(many._cache) <= 2


def test_one_video_read_by_many_threads_at_once(long_index, state):
    s = Searcher(long_index, device="cpu", backbone=state.backbone)
    seq = long_seqs(s)[0]
    _, full = tables.read_frames(s.layout.path(s.videos[seq]["frames_file"]))
    n_threads = 8
    barrier = threading.Barrier(n_threads, timeout=60)

    def read(i: int) -> int:
        rng = np.random.default_rng(i)
        barrier.wait()  # all start together, on a reader none has read from yet
        checked = 0
        for _ in range(10):
            starts = rng.integers(0, LONG_FRAMES - 1, 3)
            ranges = np.stack([starts, np.minimum(starts + rng.integers(1, 400, 3), LONG_FRAMES)], axis=1)
            ts, emb, _ = s.video_data(seq, ranges)
            assert len(ts) == LONG_FRAMES
            for a, b in ranges:
                np.testing.assert_array_equal(emb[a:b], full[a:b])
                checked += 1
        return checked

    with ThreadPoolExecutor(n_threads) as pool:
        assert sum(pool.map(read, range(n_threads))) == n_threads * 30
    np.testing.assert_array_equal(s.video_data(seq)[1], full)
    assert s.frame_groups_read() == (12, 12)


def test_a_video_is_opened_once_however_many_threads_ask(long_index, state, monkeypatch):
    opened: list[str] = []
    real = tables.FrameReader

    class Counted(real):
        def __init__(self, path):
            opened.append(str(path))
            super().__init__(path)

    monkeypatch.setattr(tables, "FrameReader", Counted)
    s = Searcher(long_index, device="cpu", backbone=state.backbone)
    seqs = long_seqs(s)
    barrier = threading.Barrier(8, timeout=60)

    def ranges(i: int) -> np.ndarray:
        barrier.wait()
        return s.proposal_ranges(seqs[i % 2])

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(ranges, range(8)))
    assert len(opened) == 2 and len(set(opened)) == 2
    for i, r in enumerate(got):
        assert r is got[i % 2]


def test_the_refiner_is_built_once(index_dir, state, monkeypatch):
    import groundzero.search.refine as refine_mod

    built: list[int] = []
    barrier = threading.Barrier(6, timeout=60)

    class Stub:
        def __init__(self, *a, **kw):
            built.append(1)
            threading.Event().wait(0.05)  # widens the window a second build would slip through

        def refine(self, hit, q, duration_sec, picture):
            assert duration_sec > 0 and min(picture) > 0  # the videos' sizes are there before the refiner is
            return hit

    monkeypatch.setattr(refine_mod, "Refiner", Stub)
    s = Searcher(index_dir, device="cpu", backbone=state.backbone)
    hits = s.search("red", top_k=5).hits
    q = state.backbone.embed_texts(["red"])[0]

    def go(_):
        barrier.wait()
        return s.refine(hits, q)

    with ThreadPoolExecutor(6) as pool:
        assert all(r == hits for r in pool.map(go, range(6)))
    assert len(built) == 1


def test_the_served_tokenizer_is_set_before_threads_share_it(state):
    tok = state.backbone.tokenizer._tokenizer  # its padding and truncation: set once, only read after
    assert tok.padding is not None and tok.truncation is not None


# -- the snapshot's result cache -------------------------------------------------------------------


class StubSearcher:
    """Counts searches; ``meet``: a barrier each search waits at (proves searches run at once)."""

    def __init__(self, meet: threading.Barrier | None = None):
        self.meet = meet
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def search(self, query, top_k=None, channels=None):
        with self._lock:
            self.calls.append(query)
        if self.meet is not None:
            self.meet.wait()
        return SearchResult(query=query, hits=[], found=False, timings_ms={})


def snapshot(searcher, cache: int = 64) -> Snapshot:
    return Snapshot(version=1, searcher=searcher, catalog={}, loaded_at="", result_cache_size=cache)


def test_snapshot_searches_run_at_once():
    stub = StubSearcher(threading.Barrier(4, timeout=60))  # a search held in line would break it
    snap = snapshot(stub)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: snap.search(f"query {i}", 10), range(4)))
    assert [r.query for r in results] == [f"query {i}" for i in range(4)]
    assert sorted(stub.calls) == [f"query {i}" for i in range(4)]


def test_result_cache_still_answers_and_stays_bounded():
    stub = StubSearcher()
    snap = snapshot(stub, cache=3)
    first = snap.search("  red  ", 10)
    assert snap.search("red", 10) is first and stub.calls == ["  red  "]
    assert snap.search("red", 20) is not first and len(stub.calls) == 2  # another k: another search
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: snap.search(f"q{i % 10}", 10), range(40)))
    assert len(snap._results) <= 3
    assert snap.search("q9", 10) is snap.search("q9", 10)
    off = snapshot(StubSearcher(), cache=0)
    off.search("red", 10)
    off.search("red", 10)
    assert len(off.searcher.calls) == 2 and not off._results


# -- the service --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.e2e
def test_api_runs_search_threads_searches_at_once(index_dir, state):
    from groundzero.search.service.app import create_app
    from groundzero.search.service.server import BackgroundServer

    st = IndexState(make_cfg(index_dir), backbone=state.backbone)
    searcher = st.snapshot().searcher
    real = searcher.search
    meet = threading.Barrier(2, timeout=60)  # each search waits for another: one at a time would break it
    lock, running, peak = threading.Lock(), [0], [0]

    def search(query, top_k=None, channels=None):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            meet.wait()
            return real(query, top_k=top_k, channels=channels)
        finally:
            with lock:
                running[0] -= 1

    searcher.search = search
    n = 8

    async def burst(url: str) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as c:
            return await asyncio.gather(*(c.get("/api/search", params={"q": f"a red circle {i}", "k": 20})
                                          for i in range(n)))

    with BackgroundServer(create_app(make_cfg(index_dir, search_threads=2), state=st)) as url:
        responses = asyncio.run(burst(url.rstrip("/")))
    assert [r.status_code for r in responses] == [200] * n, [r.text for r in responses if r.status_code != 200]
    assert peak[0] == 2  # two at once, never more: the others waited in line
    assert all(r.json()["query"] == f"a red circle {i}" for i, r in enumerate(responses))


def test_search_threads_config_and_flag(tmp_path, monkeypatch):
    assert ServeConfig(index_dir="x").searches_at_once == cpu_count()
    assert ServeConfig(index_dir="x", search_threads=3).validate().searches_at_once == 3
    with pytest.raises(ConfigError, match="search_threads") as e:
        ServeConfig(index_dir="x", search_threads=-1).validate()
    assert e.value.field == "search_threads"
    monkeypatch.delenv("GROUNDZERO_TOKEN", raising=False)
    r = CliRunner().invoke(cli_app, ["serve", "--index", str(tmp_path), "--search-threads", "-1"])
    assert r.exit_code == 2 and r.stderr.startswith("error: --search-threads must be >= 0"), r.output


def test_a_search_reading_on_its_own_thread_answers_as_one_with_a_pool(long_index, state, monkeypatch):
    """``fetch_threads=1`` (what the service gives each search on a machine with no more cores than
    searches) reads on the searching thread, and answers exactly as reading side by side does."""
    pooled = Searcher(long_index, device="cpu", backbone=state.backbone, fetch_threads=4)
    alone = Searcher(long_index, device="cpu", backbone=state.backbone, fetch_threads=1)
    assert alone._fetch_pool is None and pooled._fetch_pool is not None
    for q in QUERIES[:6]:
        assert answer(alone.search(q, top_k=50)) == answer(pooled.search(q, top_k=50))
    assert alone.frame_groups_read() == pooled.frame_groups_read()
    monkeypatch.setattr("groundzero.search.service.config.cpu_count", lambda: 8)
    assert [ServeConfig(index_dir="x", search_threads=n).fetch_threads for n in (0, 1, 2, 3, 16)] == [1, 8, 4, 2, 1]


def test_share_cores_splits_the_cpus_between_searches(monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert share_cores(2, cpus=8) == 4
        assert share_cores(16, cpus=8) == 1
        assert share_cores(1, cpus=3) == 3
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert share_cores(1, cpus=8) == 3  # OMP_NUM_THREADS set: left as it is
    finally:
        torch.set_num_threads(before)


def test_frame_cache_holds_at_most_cache_mb_of_frames(long_index, state):
    """The frame cache also has a byte budget: reading a second long video whole evicts the first
    (each holds 12 row groups), and a video is never evicted for its own reads."""
    s = Searcher(long_index, device="cpu", backbone=state.backbone)
    first, second = long_seqs(s)
    one_video = LONG_FRAMES * s.vectors.dim * 4
    s = Searcher(long_index, device="cpu", backbone=state.backbone, cache_mb=1.5 * one_video / 2**20)
    s.video_data(first)
    s.video_data(second)  # the first still cached: 1 video's bytes when the second is opened
    assert set(s._cache) == {first, second}
    s.video_data(next(seq for seq in s.videos if seq not in (first, second)))  # 2 videos' bytes > budget
    assert first not in s._cache and second in s._cache
    np.testing.assert_array_equal(s.video_data(first)[1],
                                  tables.read_frames(s.layout.path(s.videos[first]["frames_file"]))[1])
