"""A worker's heartbeat: the record that registers a live worker for `Queue.get_workers`.

Every `QueueConfig.heartbeat_interval` seconds the worker writes its hash
`<base>workers:<name>` (expiring after 3 intervals, so a dead worker disappears) and its name
in the zset `<base>workerset` (score = ms of the beat). A clean shutdown deletes both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from typing import Any

from ..core._aio import raise_if_cancelling
from ..core.connection import REDIS_ERRORS
from ..queue import Queue
from .running import RunningJobs, WorkerStats

__all__ = ["heartbeat_loop"]

log = logging.getLogger(__name__)


async def _beat(
    queue: Queue, stats: WorkerStats, running: RunningJobs, started_ms: int, every: float
) -> None:
    keys = queue.keys
    ttl_ms = max(1, int(every * 3000))
    now_ms = int(time.time() * 1000)
    fields: dict[Any, Any] = {
        "name": stats.name,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "queues": json.dumps([stats.queue]),
        "concurrency": stats.concurrency,
        "started": started_ms,
        "completed": stats.completed,
        "failed": stats.failed,
        "running": len(running),
        "last_take": int(stats.last_take * 1000),
        "beat": now_ms,
        "interval": every,
        "degraded": stats.degraded or "",
    }
    async with queue.redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.worker(stats.name), mapping=fields)
        pipe.pexpire(keys.worker(stats.name), ttl_ms)
        pipe.zadd(keys.worker_set, {stats.name: now_ms})
        # names of workers that died long ago (get_workers prunes the recent ones)
        pipe.zremrangebyscore(keys.worker_set, "-inf", now_ms - max(3_600_000, 10 * ttl_ms))
        created = (await pipe.execute())[0]
    if created == len(fields):
        # our key was gone (first beat, or Redis lost its data): publish the limits again
        await queue.publish_config()


async def _unregister(queue: Queue, name: str) -> None:
    async with queue.redis.pipeline(transaction=True) as pipe:
        pipe.delete(queue.keys.worker(name))
        pipe.zrem(queue.keys.worker_set, name)
        await pipe.execute()


async def heartbeat_loop(queue: Queue, stats: WorkerStats, running: RunningJobs) -> None:
    """Publish the queue's limits in `meta`, then beat until cancelled; then unregister.

    The limits are published again whenever a beat finds the worker's key gone (Redis
    restarted empty, or the queue was obliterated while the worker ran). Redis errors are
    logged and the next beat tries again.
    """
    every = queue.config.heartbeat_interval
    started_ms = int(time.time() * 1000)
    published = False
    try:
        while True:
            try:
                if not published:  # even if a worker of the same name left its key behind
                    await queue.publish_config()
                    published = True
                await _beat(queue, stats, running, started_ms, every)
            except REDIS_ERRORS as exc:
                log.debug("worker %s: heartbeat failed: %s", stats.name, type(exc).__name__)
            raise_if_cancelling()
            await asyncio.sleep(every)
    finally:
        # a clean stop removes the worker at once instead of after the expiry
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await _unregister(queue, stats.name)
