"""saq: `Worker(queue, functions, concurrency=C)` with every default.

Dequeue is a blocking BLMOVE (dequeue_timeout 0); job results are kept (ttl 600 s); upkeep
timers default (schedule 1 s, abort 1 s, worker_info 10 s, sweep 60 s); JSON. No bulk API
(`map`/`batch` gather single enqueues).
"""

from __future__ import annotations

import asyncio
from typing import Any

from saq import Queue, Worker

from .child import Control, Recorder

__all__ = ["CONFIG", "HAS_BULK", "LABEL", "producer", "work"]

LABEL = "saq"
HAS_BULK = False
CONFIG = "Worker(concurrency=C), defaults (BLMOVE dequeue, results kept 600 s, JSON)"

_rec: Recorder | None = None


async def noop(ctx: Any, *, t: float, pad: str | None = None) -> None:
    """The benchmark's job."""
    assert _rec is not None
    _rec.hit(t)


class _Producer:
    def __init__(self, url: str) -> None:
        self.queue = Queue.from_url(url)

    async def connect(self) -> None:
        await self.queue.connect()

    async def add(self, data: dict[str, Any]) -> None:
        await self.queue.enqueue("noop", **data)

    async def add_bulk(self, items: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        await self.queue.disconnect()


def producer(url: str) -> _Producer:
    """A producer on saq's default queue."""
    return _Producer(url)


async def work(url: str, concurrency: int, ctl: Control, rec: Recorder) -> None:
    """Run a worker from GO until STOP."""
    global _rec
    _rec = rec
    queue = Queue.from_url(url)
    await queue.connect()
    worker = Worker(queue, functions=[noop], concurrency=concurrency)
    await ctl.ready()
    task = asyncio.get_running_loop().create_task(worker.start())
    await ctl.until_stop()
    task.cancel()
