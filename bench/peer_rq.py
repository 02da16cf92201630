"""rq: `SimpleWorker` (CHANGED from the default forking `Worker`): jobs run in the worker
process itself, one at a time, so `concurrency` does not apply (the default `Worker` forks a
work horse per job: ~135 jobs/s here). result_ttl 500 s, job timeout 180 s, pickle. Bulk =
`Queue.enqueue_many` of `Queue.prepare_data(...)`. The client is synchronous.
"""

from __future__ import annotations

import threading
from typing import Any

from redis import Redis
from rq import Queue, SimpleWorker

from .child import Control, Recorder

__all__ = ["CONFIG", "HAS_BULK", "LABEL", "SYNC_WORKER", "noop", "producer", "work_sync"]

LABEL = "rq"
HAS_BULK = True
SYNC_WORKER = True
CONFIG = "SimpleWorker CHANGED from forking Worker (1 job at a time); bulk = enqueue_many"

_rec: Recorder | None = None


def noop(data: dict[str, Any]) -> None:
    """The benchmark's job."""
    if _rec is not None:
        _rec.hit(data["t"])


class _Producer:
    def __init__(self, url: str) -> None:
        self.redis = Redis.from_url(url)
        self.queue = Queue("bench", connection=self.redis)

    async def connect(self) -> None:
        self.redis.ping()

    async def add(self, data: dict[str, Any]) -> None:
        self.queue.enqueue(noop, data)

    async def add_bulk(self, items: list[dict[str, Any]]) -> None:
        self.queue.enqueue_many([Queue.prepare_data(noop, args=(d,)) for d in items])

    async def close(self) -> None:
        self.redis.close()


def producer(url: str) -> _Producer:
    """A producer on the benchmark queue (synchronous calls inside async methods)."""
    return _Producer(url)


def work_sync(url: str, concurrency: int, ctl: Control, rec: Recorder) -> None:
    """Run a SimpleWorker (in this, the main, thread) from GO until STOP."""
    global _rec
    _rec = rec
    redis = Redis.from_url(url)
    redis.ping()
    worker = SimpleWorker([Queue("bench", connection=redis)], connection=redis)
    ctl.ready_and_wait()
    # the runner's STOP ends the process from the control thread (see child._finish)
    threading.Thread(target=_stop_when_told, args=(ctl, rec), daemon=True).start()
    worker.work(burst=False, logging_level="WARNING")


def _stop_when_told(ctl: Control, rec: Recorder) -> None:
    from .child import _finish

    ctl.stop.wait()
    _finish(ctl, rec.result())
