"""What the queue-level gauges show, read from Redis: every queue's counts by state (the
`counts` script: one call, one consistent snapshot per queue), whether it is paused, its
rate-limit hold, and the state of each shared limiter (buckets, 429 hold, breaker)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from redis.asyncio import Redis

from ..core.codec import text
from ..core.keys import QueueKeys
from ..core.scripts import Scripts
from ..limits.state import LimiterState, decode_limiter, read_limiter_state
from ..maintenance import discover_queue_keys

__all__ = ["QueueSnapshot", "Snapshot", "read_snapshot"]

_META_FIELDS = ("paused", "limiter", "buckets", "breaker")


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """One queue now.

    Attributes:
        name: the queue.
        counts: jobs per state, as `Queue.get_job_counts` names them.
        paused: whether the queue is paused.
        limited_ms: ms left of the queue's rate-limit hold (0 = none).
        limiter: the name of its shared limiter, or None.
    """

    name: str
    counts: Mapping[str, int]
    paused: bool
    limited_ms: int
    limiter: str | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every queue under a prefix and their shared limiters, read at `taken_at` (epoch s)."""

    queues: tuple[QueueSnapshot, ...] = ()
    limiters: tuple[LimiterState, ...] = ()
    taken_at: float = 0.0
    duration: float = 0.0
    """Seconds the read took."""
    errors: tuple[str, ...] = field(default=())


class _ScriptsCache:
    """The `Scripts` of each queue seen, kept between reads (they hold no connection: the
    counts go through the client's pool, not a fast connection of their own)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._by_base: dict[str, Scripts] = {}

    def get(self, keys: QueueKeys) -> Scripts:
        scripts = self._by_base.get(keys.base)
        if scripts is None:
            scripts = self._by_base[keys.base] = Scripts(self.redis, keys, fastconn=False)
        return scripts


async def read_snapshot(
    redis: Redis, prefix: str = "jq", *, cache: _ScriptsCache | None = None
) -> Snapshot:
    """Read every queue under `prefix` and the shared limiters they name.

    Round trips: the SCAN that finds the queues, one pipeline of every queue's `meta` (paused,
    limiter), one `counts` script call per queue, one transaction per shared limiter.
    """
    started = time.monotonic()
    cache = cache or _ScriptsCache(redis)
    found = await discover_queue_keys(redis, prefix)
    async with redis.pipeline(transaction=False) as pipe:
        for keys in found:
            pipe.hmget(keys.meta, list(_META_FIELDS))
        metas = await pipe.execute() if found else []
    queues: list[QueueSnapshot] = []
    limiters: dict[str, LimiterState] = {}
    for keys, raw in zip(found, metas, strict=True):
        paused, limiter_name, buckets, breaker = (text(v) if v is not None else None for v in raw)
        c = await cache.get(keys).counts()
        limiter = None
        # a queue on a shared limiter lives in its slot; `meta` names it (else the slot does)
        if keys.slot is not None:
            limiter = keys.slot if limiter_name is None else (limiter_name or None)
        queues.append(
            QueueSnapshot(
                name=keys.queue,
                counts={
                    "waiting": c.waiting,
                    "active": c.active,
                    "delayed": c.delayed,
                    "completed": c.completed,
                    "failed": c.failed,
                    "paused": c.paused,
                    "waiting-children": c.waiting_children,
                },
                paused=paused is not None,
                limited_ms=c.limited_ms,
                limiter=limiter,
            )
        )
        if limiter is not None and limiter not in limiters and buckets is not None:
            spec = decode_limiter(limiter, buckets or "", breaker or "")
            limiters[limiter] = await read_limiter_state(
                redis, replace(keys, limiter_name=limiter), spec
            )
    return Snapshot(
        queues=tuple(queues),
        limiters=tuple(limiters[name] for name in sorted(limiters)),
        taken_at=time.time(),
        duration=time.monotonic() - started,
    )
