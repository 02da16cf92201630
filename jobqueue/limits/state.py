"""What a shared limiter holds now: its buckets' capacity and tokens, its 429 hold and its
breaker, read from Redis for `Queue.get_limiter_state`, `inspect` and dashboards."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis

from ..core.codec import text
from ..core.connection import cluster_of, server_time
from ..core.keys import QueueKeys
from .model import Breaker, Bucket, Limiter

__all__ = ["BreakerState", "BucketState", "LimiterState", "decode_limiter", "read_limiter_state"]


@dataclass(frozen=True, slots=True)
class BucketState:
    """One bucket now.

    Attributes:
        name: the bucket.
        capacity: what it holds at most (None until learned when not configured).
        tokens: what is left now, refilled to this instant (below zero: a debt).
        per: seconds to refill it completely.
        learned: whether the capacity was learned at run time (it then beats the configured).
    """

    name: str
    capacity: float | None
    tokens: float | None
    per: float
    learned: bool


@dataclass(frozen=True, slots=True)
class BreakerState:
    """The circuit breaker now.

    Attributes:
        state: `closed`, `open` or `half_open` (a trial job may run, or runs).
        until: when an open breaker's cool-down ends (UTC), else None.
        recent_failures: server-side failures within its window.
        openings: times it opened so far.
    """

    state: str
    until: datetime | None
    recent_failures: int
    openings: int


@dataclass(frozen=True, slots=True)
class LimiterState:
    """A shared limiter now: its buckets, its 429 hold (ms left, 0 = none) and its breaker."""

    name: str
    buckets: tuple[BucketState, ...]
    hold_ms: int
    breaker: BreakerState | None


def decode_limiter(name: str, buckets: str, breaker: str) -> Limiter:
    """A `Limiter` from its encoded buckets and breaker (as workers publish them in `meta`)."""
    parsed: dict[str, Bucket] = {}
    for part in filter(None, buckets.split(",")):
        bucket, _, spec = part.partition("=")
        capacity, _, per_ms = spec.partition("/")
        parsed[bucket] = Bucket(float(capacity) if capacity else None, per=int(per_ms) / 1000)
    brk = None
    if breaker:
        n, window, cooldown, max_wait = (int(x) for x in breaker.split("/"))
        brk = Breaker(n, window / 1000, cooldown / 1000, max_wait / 1000)
    return Limiter(name, parsed, brk)


def _float(value: object) -> float | None:
    try:
        return float(text(value)) if value is not None else None
    except ValueError:
        return None


async def read_limiter_state(redis: Redis, keys: QueueKeys, limiter: Limiter) -> LimiterState:
    """Read the limiter's state (one transaction, times on the Redis clock)."""
    # a cluster's transactions take keyed commands only: TIME is read just before instead (a
    # clock that never runs ahead of the state read: refills are never overcounted)
    clock = [] if cluster_of(redis) is None else [await server_time(redis, key=keys.meta)]
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hgetall(keys.shared_limiter)
        pipe.pttl(keys.shared_hold)
        pipe.hgetall(keys.breaker)
        pipe.zcard(keys.breaker_fails)
        if not clock:
            pipe.time()
        raw, hold, brk_raw, fails, *read = await pipe.execute()
    sec, usec = (clock or read)[0]
    now = int(sec) * 1000 + int(usec) // 1000
    h = {text(k): v for k, v in raw.items()}
    buckets = []
    for name, bucket in sorted(limiter.buckets.items()):
        learned = _float(h.get(f"c:{name}"))
        capacity = learned if learned is not None else bucket.capacity
        tokens = _float(h.get(f"t:{name}"))
        ts = _float(h.get(f"ts:{name}"))
        if capacity is not None:
            if tokens is None or ts is None:
                tokens = capacity
            else:
                refill = max(0.0, now - ts) * capacity / (bucket.per * 1000)
                tokens = min(capacity, tokens + refill)
        buckets.append(BucketState(name, capacity, tokens, bucket.per, learned is not None))
    breaker = None
    if limiter.breaker is not None:
        b = {text(k): text(v) for k, v in brk_raw.items()}
        state = b.get("state", "closed")
        until_ms = _float(b.get("until"))
        if state == "open" and (until_ms is None or until_ms <= now):
            state = "half"  # the cool-down is over: the next take starts a trial
        breaker = BreakerState(
            state="half_open" if state == "half" else state,
            until=(
                datetime.fromtimestamp(until_ms / 1000, tz=UTC)
                if state == "open" and until_ms
                else None
            ),
            recent_failures=int(fails),
            openings=int(_float(b.get("openings")) or 0),
        )
    return LimiterState(limiter.name, tuple(buckets), max(0, int(hold)), breaker)
