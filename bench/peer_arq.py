"""arq: `Worker(max_jobs=C, poll_delay=0.01)`; poll_delay is CHANGED from the default 0.5 s.

With the default poll_delay, arq reads at most `queue_read_limit` ids per poll and sleeps for
the rest of the 0.5 s, which caps it at 200 jobs/s (c10) and gives ~280 ms latency; 10 ms is
its best documented setting. Everything else is the default: keep_result 3600 s, pickle,
`handle_signals=False` (the runner stops it). No bulk API.
"""

from __future__ import annotations

import asyncio
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker

from .child import Control, Recorder

__all__ = ["CONFIG", "HAS_BULK", "LABEL", "producer", "work"]

LABEL = "arq"
HAS_BULK = False
CONFIG = "Worker(max_jobs=C, poll_delay=0.01 CHANGED from 0.5 s); keep_result 3600 s; pickle"

_rec: Recorder | None = None


async def noop(ctx: dict[str, Any], data: dict[str, Any]) -> None:
    """The benchmark's job."""
    assert _rec is not None
    _rec.hit(data["t"])


class _Producer:
    def __init__(self, url: str) -> None:
        self.settings = RedisSettings.from_dsn(url)
        self.pool: ArqRedis | None = None

    async def connect(self) -> None:
        self.pool = await create_pool(self.settings)

    async def add(self, data: dict[str, Any]) -> None:
        assert self.pool is not None
        await self.pool.enqueue_job("noop", data)

    async def add_bulk(self, items: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.aclose()


def producer(url: str) -> _Producer:
    """A producer on arq's default queue."""
    return _Producer(url)


async def work(url: str, concurrency: int, ctl: Control, rec: Recorder) -> None:
    """Run a worker from GO until STOP."""
    global _rec
    _rec = rec
    pool = await create_pool(RedisSettings.from_dsn(url))
    await pool.ping()
    worker = Worker(
        functions=[noop],
        redis_pool=pool,
        max_jobs=concurrency,
        poll_delay=0.01,
        handle_signals=False,
    )
    await ctl.ready()
    task = asyncio.get_running_loop().create_task(worker.async_run())
    await ctl.until_stop()
    task.cancel()
