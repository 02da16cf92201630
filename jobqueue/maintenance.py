"""Work across every queue under a prefix: finding the queues, and removing old jobs."""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis

from .config import QueueConfig
from .core._inputs import finite
from .core.codec import text as _s
from .core.keys import QueueKeys, keys_from_key, queue_scan_patterns
from .errors import ConfigError
from .limits.state import decode_limiter
from .queue import Queue

__all__ = [
    "cleanup_old_jobs",
    "discover_queue_keys",
    "discover_queues",
    "find_queue_keys",
    "open_queue",
]

log = logging.getLogger(__name__)


async def discover_queue_keys(redis: Redis, prefix: str = "jq") -> list[QueueKeys]:
    """The keys of every queue under `prefix` (in its own slot or a shared limiter's), sorted
    by queue name.

    A queue is found by its `meta` key (written when a worker starts or the queue is paused)
    or its `id` counter (written by the first add), with SCAN (never KEYS).

    Args:
        redis: the client.
        prefix: the key prefix of the queues.
    """
    found: dict[tuple[str, str | None], QueueKeys] = {}
    for pattern in queue_scan_patterns(prefix):
        async for key in redis.scan_iter(match=pattern, count=1000):
            keys = keys_from_key(prefix, _s(key))
            if keys is not None:
                found[(keys.queue, keys.slot)] = keys
    return [found[k] for k in sorted(found, key=lambda k: (k[0], k[1] or ""))]


async def discover_queues(redis: Redis, prefix: str = "jq") -> list[str]:
    """The names of the queues under `prefix`, sorted (see `discover_queue_keys`).

    Args:
        redis: the client.
        prefix: the key prefix of the queues.
    """
    return sorted({keys.queue for keys in await discover_queue_keys(redis, prefix)})


async def find_queue_keys(redis: Redis, name: str, *, prefix: str = "jq") -> QueueKeys | None:
    """The keys of the queue `name` under `prefix`, in whichever slot it lives; None when no
    such queue exists."""
    own = QueueKeys(prefix, name)
    if await redis.exists(own.meta, own.id_counter):
        return own
    for keys in await discover_queue_keys(redis, prefix):
        if keys.queue == name:
            return keys
    return None


async def open_queue(
    redis: Redis, name: str, *, prefix: str = "jq", slot: str | None = None
) -> Queue:
    """A `Queue` for an existing queue, as its workers published it in `meta`: its events cap
    (so that removals made from here do not create a stream on a queue with events off), its
    attempts (what its jobs are shown to have in all), its
    hash slot and its shared limiter (so that its keys, and the limiter's, are found in the
    slot they share). The slot is looked up when not given; the limiter is the one named in
    `meta`, or, when `meta` names none (workers older than shared slots), the slot's
    namesake."""
    keys = (
        QueueKeys(prefix, name, slot) if slot else await find_queue_keys(redis, name, prefix=prefix)
    )
    keys = keys or QueueKeys(prefix, name)
    meta = {_s(k): _s(v) for k, v in (await redis.hgetall(keys.meta)).items()}
    maxlen = 10_000
    try:
        maxlen = max(0, int(meta.get("events_maxlen", maxlen)))
    except ValueError:
        pass
    limiter = None
    if keys.slot is not None:
        # a queue in a shared slot: its limiter, if any, as its workers published it
        limiter_name = meta.get("limiter", keys.slot)
        if limiter_name:
            limiter = decode_limiter(limiter_name, meta.get("buckets", ""), meta.get("breaker", ""))
    options: dict[str, Any] = {}
    try:  # the attempts its workers run with: a job's "2 of 3" reads right
        attempts = int(meta.get("attempts", 0))
        if attempts >= 1:
            options["attempts"] = attempts
    except ValueError:
        pass
    config = QueueConfig(name, events_maxlen=maxlen, limiter=limiter, slot=keys.slot, **options)
    return Queue(config, redis=redis, prefix=prefix)


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
        or not (finite(days) and days >= 0)
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
