"""Worker health: the heartbeat that registers a live worker, and the cancel listener that
stops a cancelled job's handler wherever it runs.

Heartbeat: every `QueueConfig.heartbeat_interval` seconds the worker writes its hash
`<base>workers:<name>` (expiring after 3 intervals, so a dead worker disappears) and its name
in the zset `<base>workerset` (score = ms of the beat). A clean shutdown deletes both.

Cancel listener: one pub/sub subscription per worker on `<base>cancel-ch`, where `cancel.lua`
publishes `{"id": ..., "reason": ...}` for active jobs. After every (re)subscription the
`cancels` hash is read again for the running jobs, so a request published while the
subscription was down is not lost (the lease renewal reports it too, later).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..core._aio import raise_if_cancelling
from ..core.codec import text as _s

if TYPE_CHECKING:
    from .worker import Worker

__all__ = ["cancel_listener", "heartbeat_loop"]

log = logging.getLogger(__name__)

_TRANSIENT = (RedisConnectionError, RedisTimeoutError, BusyLoadingError, OSError)


# -- heartbeat -------------------------------------------------------------------------------


async def _beat(worker: Worker, started_ms: int) -> None:
    queue = worker.queue
    keys = queue.keys
    every = worker.config.heartbeat_interval
    ttl_ms = max(1, int(every * 3000))
    now_ms = int(time.time() * 1000)
    fields: dict[Any, Any] = {
        "name": worker.name,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "queues": json.dumps([queue.name]),
        "concurrency": worker.concurrency,
        "started": started_ms,
        "completed": worker.completed,
        "failed": worker.failed,
        "running": worker.running,
        "last_take": int(worker.last_take * 1000),
        "beat": now_ms,
        "interval": every,
    }
    async with queue.redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.worker(worker.name), mapping=fields)
        pipe.pexpire(keys.worker(worker.name), ttl_ms)
        pipe.zadd(keys.worker_set, {worker.name: now_ms})
        # names of workers that died long ago (get_workers prunes the recent ones)
        pipe.zremrangebyscore(keys.worker_set, "-inf", now_ms - max(3_600_000, 10 * ttl_ms))
        created = (await pipe.execute())[0]
    if created == len(fields):
        # our key was gone (first beat, or Redis lost its data): publish the limits again
        await queue.publish_config()


async def _unregister(worker: Worker) -> None:
    keys = worker.queue.keys
    async with worker.queue.redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.worker(worker.name))
        pipe.zrem(keys.worker_set, worker.name)
        await pipe.execute()


async def heartbeat_loop(worker: Worker) -> None:
    """Publish the queue's limits in `meta`, then beat until cancelled; then unregister.

    The limits are published again whenever a beat finds the worker's key gone (Redis
    restarted empty, or the queue was obliterated while the worker ran).

    Runs as a task of `Worker.run()`. Redis errors are logged and retried at the next beat.
    """
    every = worker.config.heartbeat_interval
    started_ms = int(time.time() * 1000)
    published = False
    try:
        while True:
            try:
                if not published:  # even if a worker of the same name left its key behind
                    await worker.queue.publish_config()
                    published = True
                await _beat(worker, started_ms)
            except _TRANSIENT as exc:
                log.debug("worker %s: heartbeat failed: %s", worker.name, type(exc).__name__)
            raise_if_cancelling()
            await asyncio.sleep(every)
    finally:
        # a clean stop removes the worker at once instead of after the expiry
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await _unregister(worker)


# -- cancel listener -------------------------------------------------------------------------


def _listener_client(redis: Redis) -> Redis:
    """A client of its own for the subscription, without silent retries: a lost connection
    surfaces here, so that we resubscribe and re-read the cancels hash ourselves."""
    pool = redis.connection_pool
    kwargs = dict(pool.connection_kwargs)
    kwargs["retry"] = Retry(NoBackoff(), 0)
    return Redis(connection_pool=ConnectionPool(connection_class=pool.connection_class, **kwargs))


async def _recheck(worker: Worker) -> None:
    ids = list(worker._running)
    if not ids:
        return
    reasons = await worker.queue.redis.hmget(worker.queue.keys.cancels, ids)
    for job_id, reason in zip(ids, reasons, strict=True):
        if reason is not None:
            worker._cancel_running(job_id, _s(reason))


def _dispatch(worker: Worker, data: Any) -> None:
    try:
        msg = json.loads(data)
        job_id, reason = str(msg["id"]), str(msg.get("reason") or "cancelled")
    except (ValueError, KeyError, TypeError):
        log.debug("worker %s: ignored a malformed cancel message", worker.name)
        return
    worker._cancel_running(job_id, reason)


async def cancel_listener(worker: Worker) -> None:
    """Subscribe to the queue's cancel channel and cancel the running jobs named on it.

    Runs as a task of `Worker.run()` until cancelled; resubscribes with backoff after a
    connection error (`Worker`'s `reconnect_backoff`).
    """
    channel = worker.queue.keys.cancel_channel
    first, most = worker._backoff_first, worker._backoff_max
    failures = 0
    while True:
        client = _listener_client(worker.queue.redis)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            await _recheck(worker)
            raise_if_cancelling()
            if failures:
                log.info("worker %s: cancel channel subscribed again", worker.name)
            failures = 0
            while True:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                raise_if_cancelling()
                if msg is not None and msg.get("type") == "message":
                    _dispatch(worker, msg["data"])
        except _TRANSIENT as exc:
            failures += 1
            delay = min(most, first * 2 ** (failures - 1))
            log.warning(
                "worker %s: cancel channel lost (%s); subscribing again in %.2fs",
                worker.name,
                type(exc).__name__,
                delay,
            )
            raise_if_cancelling()
            await asyncio.sleep(delay)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            with contextlib.suppress(Exception):
                await client.aclose()
