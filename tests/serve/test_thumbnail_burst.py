"""A burst of thumbnail requests queues for a bounded number of ffmpeg processes, and the
service stays responsive meanwhile (/api/health under a second). Loopback only."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.serve.conftest import make_cfg

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

BURST = 60  #: concurrent thumbnail requests, each for another instant (no cache hit)
PROCS = 2  #: the bound under test


@pytest.fixture(scope="module")
def burst_app(index_dir, state):
    from groundzero.search.service.app import create_app
    from groundzero.search.service.server import BackgroundServer

    app = create_app(make_cfg(index_dir, thumb_procs=PROCS), state=state)
    with BackgroundServer(app) as url:
        yield app, url.rstrip("/")


async def _burst(url: str, vid: str) -> tuple[list[int], list[float]]:
    """Statuses of BURST thumbnail requests, and /api/health latencies sampled while they ran."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=BURST + 10, max_keepalive_connections=BURST + 10)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as c:
        async def thumb(i: int) -> int:
            r = await c.get(f"/api/videos/{vid}/thumbnail", params={"t": round(i * 64 / BURST, 1), "w": 96})
            return r.status_code

        async def probe(done: asyncio.Event) -> None:
            while not done.is_set() and len(latencies) < 2000:
                t0 = time.perf_counter()
                r = await c.get("/api/health")
                latencies.append(time.perf_counter() - t0)
                assert r.status_code == 200
                await asyncio.sleep(0.05)

        done = asyncio.Event()
        prober = asyncio.create_task(probe(done))
        await asyncio.sleep(0.05)
        statuses = await asyncio.gather(*(thumb(i) for i in range(BURST)))
        done.set()
        await prober
    return list(statuses), latencies


def test_burst_is_bounded_and_health_stays_fast(burst_app, videos):
    app, url = burst_app
    thumbs = app.state.thumbs
    assert thumbs.max_procs == PROCS
    statuses, latencies = asyncio.run(_burst(url, videos["lectures/a.mp4"]["video_id"]))
    assert statuses == [200] * BURST
    assert 1 <= thumbs.peak <= PROCS and thumbs.running == 0
    assert len(latencies) >= 3, latencies  # the burst lasted long enough to measure during it
    assert max(latencies) < 1.0, sorted(latencies)[-5:]
