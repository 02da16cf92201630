"""jobqueue: this project's engine, with its default settings.

`Queue(QueueConfig("bench"), redis=url)`; `Worker(queue, handler, concurrency=C)`; events
stream on (maxlen 10,000), completed jobs kept (last 1,000 for a day), lease 30 s. Bulk =
`Queue.add_bulk` (one script call per batch). `JOBQUEUE_FASTCONN=0` in the environment
runs the redis-py path instead of the fast connection; `JOBQUEUE_BENCH_CALLS=N|auto` sets
the worker's `calls_in_flight` (default: the Worker's, auto); `JOBQUEUE_BENCH_EVENTS_MAXLEN=N`
the queue's `events_maxlen` (0: no event stream; the `jqnoevents` variant).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from jobqueue import Job, Queue, QueueConfig, Worker

from .child import Control, Recorder

__all__ = ["CONFIG", "HAS_BULK", "LABEL", "note", "producer", "work"]

LABEL = "jobqueue"
HAS_BULK = True
CONFIG = "defaults (events on, keep_completed (1000, 1 day), lease 30 s)"
QUEUE = "bench"

_path = "?"


def _config() -> QueueConfig:
    maxlen = os.environ.get("JOBQUEUE_BENCH_EVENTS_MAXLEN")
    if maxlen is None:
        return QueueConfig(QUEUE)
    return QueueConfig(QUEUE, events_maxlen=int(maxlen))


def _seen(queue: Queue) -> None:
    global _path
    _path = "fastconn" if queue.scripts.fast is not None else "redis-py"


def note() -> str:
    """Which path ran the scripts (reported with every result: a silent fallback shows)."""
    return f"scripts via {_path}"


class _Producer:
    def __init__(self, url: str) -> None:
        self.queue = Queue(_config(), redis=url)

    async def connect(self) -> None:
        await self.queue.connect()
        _seen(self.queue)

    async def add(self, data: dict[str, Any]) -> None:
        await self.queue.add("noop", data)

    async def add_bulk(self, items: list[dict[str, Any]]) -> None:
        await self.queue.add_bulk([("noop", d) for d in items])

    async def close(self) -> None:
        await self.queue.close()


def producer(url: str) -> _Producer:
    """A producer on the benchmark queue."""
    return _Producer(url)


async def work(url: str, concurrency: int, ctl: Control, rec: Recorder) -> None:
    """Run a worker from GO until STOP."""
    queue = Queue(_config(), redis=url)
    await queue.connect()
    await queue.redis.ping()
    _seen(queue)
    hit = rec.hit

    async def handler(job: Job) -> None:
        hit(job.data["t"])

    options: dict[str, Any] = {}
    if calls := os.environ.get("JOBQUEUE_BENCH_CALLS"):
        options["calls_in_flight"] = calls if calls == "auto" else int(calls)
    worker = Worker(queue, handler, concurrency=concurrency, handle_signals=False, **options)
    await ctl.ready()
    task = asyncio.get_running_loop().create_task(worker.run())
    await ctl.until_stop()
    task.cancel()
