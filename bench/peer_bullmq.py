"""bullmq (the Python port): `Worker(name, processor, {"concurrency": C})` with defaults.

drainDelay 5 s, lockDuration 30 s, stalledInterval 30 s, completed jobs kept (removeOnComplete
unset, as in BullMQ node). Bulk = `Queue.addBulk` (one MULTI pipeline per batch).
"""

from __future__ import annotations

from typing import Any

from bullmq import Job, Queue, Worker

from .child import Control, Recorder

__all__ = ["CONFIG", "HAS_BULK", "LABEL", "producer", "work"]

LABEL = "bullmq-py"
HAS_BULK = True
CONFIG = "Worker({concurrency: C}), defaults (completed jobs kept); bulk = addBulk"
QUEUE = "bench"


class _Producer:
    def __init__(self, url: str) -> None:
        self.queue = Queue(QUEUE, {"connection": url})

    async def connect(self) -> None:
        await self.queue.client.ping()

    async def add(self, data: dict[str, Any]) -> None:
        await self.queue.add("noop", data)

    async def add_bulk(self, items: list[dict[str, Any]]) -> None:
        await self.queue.addBulk([{"name": "noop", "data": d} for d in items])

    async def close(self) -> None:
        await self.queue.close()


def producer(url: str) -> _Producer:
    """A producer on the benchmark queue."""
    return _Producer(url)


async def work(url: str, concurrency: int, ctl: Control, rec: Recorder) -> None:
    """Run a worker from GO until STOP."""
    hit = rec.hit

    async def process(job: Job, token: str) -> None:
        hit(job.data["t"])

    await ctl.ready()
    Worker(QUEUE, process, {"connection": url, "concurrency": concurrency})
    await ctl.until_stop()
