"""A worker's heartbeat: the record that registers a live worker for `Queue.get_workers`.

Every `QueueConfig.heartbeat_interval` seconds the worker writes its hash
`<base>workers:<name>` (expiring after 3 intervals, so a dead worker disappears) and its name
in the zset `<base>workerset` (score = the Redis time of the beat, ms), through
`lua/beat.lua`, which runs even when Redis is out of memory. A clean shutdown deletes both.
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
from ..queue import Queue
from .health import WorkerHealth
from .running import RunningJobs, WorkerStats

__all__ = ["heartbeat_loop"]

log = logging.getLogger(__name__)


async def _beat(
    queue: Queue, stats: WorkerStats, running: RunningJobs, started_ms: int, every: float
) -> bool:
    """One beat; True when the worker's hash was gone (first beat, or Redis lost its data)."""
    ttl_ms = max(1, int(every * 3000))
    fields: dict[str, Any] = {
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
        "interval": every,
        "degraded": stats.degraded or "",
        "degraded_since": int(stats.degraded_since * 1000),
    }
    # one script (the beat's time from Redis): it runs under OOM, when a degraded state
    # matters most; names of workers that died long ago leave the set (get_workers prunes
    # the recent ones)
    return await queue.scripts.beat(
        stats.name, fields, ttl_ms=ttl_ms, keep_ms=max(3_600_000, 10 * ttl_ms)
    )


def _failed(
    health: WorkerHealth | None, stats: WorkerStats, loop: str, exc: BaseException, every: float
) -> None:
    if health is not None:
        health.failed(loop, exc, retry_in=every)
    else:
        log.debug("worker %s: %s failed: %s", stats.name, loop, type(exc).__name__)


async def _unregister(queue: Queue, name: str) -> None:
    async with queue.redis.pipeline(transaction=True) as pipe:
        pipe.delete(queue.keys.worker(name))
        pipe.zrem(queue.keys.worker_set, name)
        await pipe.execute()


async def heartbeat_loop(
    queue: Queue, stats: WorkerStats, running: RunningJobs, health: WorkerHealth | None = None
) -> None:
    """Publish the queue's limits in `meta`, then beat until cancelled; then unregister.

    The limits are published again whenever a beat finds the worker's key gone (Redis
    restarted empty, or the queue was obliterated while the worker ran). Errors are reported
    to `health` (logged) and the next beat tries again; the beat carries `stats.degraded`.
    """
    every = queue.config.heartbeat_interval
    started_ms = int(time.time() * 1000)
    published = False
    try:
        while True:
            try:
                if not published:  # even if a worker of the same name left its key behind
                    await queue.publish_config()  # a plain HSET: refused under OOM, the beat is not
                    published = True
            except Exception as exc:
                _failed(health, stats, "heartbeat (limits)", exc, every)
            try:
                if await _beat(queue, stats, running, started_ms, every):
                    # our key was gone (Redis lost its data): publish the limits again, on
                    # the next round if this one fails
                    published = False
                    await queue.publish_config()
                    published = True
            except Exception as exc:
                _failed(health, stats, "heartbeat", exc, every)
            else:
                if health is not None:
                    health.ok("heartbeat")
                    if published:
                        health.ok("heartbeat (limits)")
            raise_if_cancelling()
            await asyncio.sleep(every)
    finally:
        # a clean stop removes the worker at once instead of after the expiry
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await _unregister(queue, stats.name)
