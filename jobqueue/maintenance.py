"""Work across every queue under a prefix: finding the queues, and removing old jobs."""

from __future__ import annotations

import logging
import math

from redis.asyncio import Redis

from .config import QueueConfig
from .core.codec import text as _s
from .core.keys import QueueKeys, queue_from_key, queue_scan_patterns
from .errors import ConfigError
from .queue import Queue

__all__ = ["cleanup_old_jobs", "discover_queues", "open_queue"]

log = logging.getLogger(__name__)


async def discover_queues(redis: Redis, prefix: str = "jq") -> list[str]:
    """The names of the queues under `prefix`, sorted.

    A queue is found by its `meta` key (written when a worker starts or the queue is paused)
    or its `id` counter (written by the first add), with SCAN (never KEYS).

    Args:
        redis: the client.
        prefix: the key prefix of the queues.
    """
    names: set[str] = set()
    for pattern in queue_scan_patterns(prefix):
        async for key in redis.scan_iter(match=pattern, count=1000):
            name = queue_from_key(prefix, _s(key))
            if name is not None:
                names.add(name)
    return sorted(names)


async def open_queue(redis: Redis, name: str, *, prefix: str = "jq") -> Queue:
    """A `Queue` for an existing queue, with the events cap its workers published in `meta`
    (so that removals made from here do not create a stream on a queue with events off)."""
    raw = await redis.hget(QueueKeys(prefix, name).meta, "events_maxlen")
    maxlen = 10_000
    if raw is not None:
        try:
            maxlen = max(0, int(_s(raw)))
        except ValueError:
            pass
    return Queue(QueueConfig(name, events_maxlen=maxlen), redis=redis, prefix=prefix)


async def cleanup_old_jobs(redis: Redis, days: float, *, prefix: str = "jq") -> int:
    """Remove completed and failed jobs that finished more than `days` ago, in every queue
    under `prefix`.

    Args:
        redis: the client.
        days: minimum age (fractions allowed; 0 = every finished job).
        prefix: the key prefix of the queues.

    Returns:
        The number of jobs removed.

    Raises:
        ConfigError: `days` is not a finite number >= 0.
    """
    if (
        isinstance(days, bool)
        or not isinstance(days, int | float)
        or not (math.isfinite(days) and days >= 0)
    ):
        raise ConfigError(f"days must be a finite number >= 0, got {days!r}")
    total = 0
    for name in await discover_queues(redis, prefix):
        queue = await open_queue(redis, name, prefix=prefix)
        for state in ("completed", "failed"):
            while True:
                removed = await queue.clean(state, days * 86400.0, limit=1000)
                total += len(removed)
                if len(removed) < 1000:
                    break
    log.info(
        "cleanup under %s: %d finished job(s) older than %g day(s) removed", prefix, total, days
    )
    return total
