"""A queue's limits, mixed into `Queue`: its concurrency cap and job-start rate, and the shared
limiter it spends with other queues (buckets, 429 hold, breaker), learned limits and the
settling of a job's real usage."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from redis.asyncio import Redis

from .config import QueueConfig
from .core.codec import text as _s
from .core.connection import cluster_of, server_time
from .core.keys import QueueKeys
from .core.scripts import Scripts
from .errors import ConfigError
from .limits.state import LimiterState, decode_limiter, read_limiter_state

__all__ = ["QueueLimits", "QueueLimitsMixin"]


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(_s(value)) if value not in (None, b"", "") else default
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """Concurrency and rate limit of a queue, and how much of them is in use.

    Attributes:
        active: jobs running now.
        concurrency: the cap on active jobs across all workers (None = no cap).
        rate_max: job starts allowed per `rate_per` seconds (None = no rate limit).
        rate_per: the rate limit's period in seconds.
        tokens: starts available now in the shared token bucket (None = no rate limit).
        limited_ms: ms during which no job starts because of a Retry-After (0 = none).
        published: whether the values come from a worker (`meta`) rather than this process.
        shared: the shared limiter's state, when the queue is on one.
    """

    active: int
    concurrency: int | None
    rate_max: int | None
    rate_per: float | None
    tokens: float | None
    limited_ms: int
    published: bool
    shared: LimiterState | None = None


class QueueLimitsMixin:
    """Limits of `Queue`: what is in use, the shared limiter, learned limits."""

    # provided by Queue
    redis: Redis
    keys: QueueKeys
    config: QueueConfig
    scripts: Scripts

    async def publish_config(self) -> None:
        """Write this queue's limits into `meta`, for `inspect` (workers do it on start)."""
        cfg = self.config
        rate = cfg.rate_limit
        await self.redis.hset(
            self.keys.meta,
            mapping={
                "concurrency": cfg.concurrency or 0,
                "rate_max": rate.max if rate else 0,
                "rate_per_ms": int(rate.per * 1000) if rate else 0,
                "lease_ms": int(cfg.lease * 1000),
                "attempts": cfg.attempts,
                "events_maxlen": cfg.events_maxlen,
                "limiter": cfg.limiter.name if cfg.limiter else "",
                "buckets": cfg.limiter.encode_buckets() if cfg.limiter else "",
                "breaker": cfg.limiter.encode_breaker() if cfg.limiter else "",
                "config_ts": int(time.time() * 1000),
            },
        )

    async def get_limits(self) -> QueueLimits:
        """Concurrency and rate limit in use: active jobs vs the cap, tokens left.

        The limits published by the queue's workers in `meta` are used when present, else
        this process's `QueueConfig`.
        """
        # a cluster's transactions take keyed commands only: TIME is read just before instead
        clock = (
            []
            if cluster_of(self.redis) is None
            else [await server_time(self.redis, key=self.keys.meta)]
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.keys.meta)
            pipe.zcard(self.keys.active)
            pipe.hmget(self.keys.limiter, ["t", "ts"])
            pipe.pttl(self.keys.limited)
            if not clock:
                pipe.time()
            meta_raw, active, bucket, limited, *read = await pipe.execute()
        now_raw = (clock or read)[0]
        meta: Mapping[str, Any] = {_s(k): v for k, v in meta_raw.items()}
        published = "concurrency" in meta
        if published:
            concurrency = _int(meta.get("concurrency")) or None
            rate_max = _int(meta.get("rate_max")) or None
            per_ms = _int(meta.get("rate_per_ms"))
            rate_per = per_ms / 1000 if rate_max and per_ms else None
        else:
            rate = self.config.rate_limit
            concurrency = self.config.concurrency
            rate_max = rate.max if rate else None
            rate_per = rate.per if rate else None
        tokens: float | None = None
        if rate_max and rate_per:
            now = int(now_raw[0]) * 1000 + int(now_raw[1]) // 1000
            t, ts = bucket
            if t is None or ts is None:
                tokens = float(rate_max)
            else:
                elapsed = max(0, now - int(float(_s(ts))))
                tokens = float(_s(t)) + elapsed * rate_max / (rate_per * 1000)
                tokens = min(float(rate_max), tokens)
        limiter, keys = self.config.limiter, self.keys
        if limiter is None and _s(meta.get("limiter") or ""):
            limiter = decode_limiter(
                _s(meta["limiter"]), _s(meta.get("buckets") or ""), _s(meta.get("breaker") or "")
            )
            # the published limiter's keys, which may not be named after the slot
            keys = replace(keys, limiter_name=limiter.name)
        shared = None
        if limiter is not None:
            shared = await read_limiter_state(self.redis, keys, limiter)
        return QueueLimits(
            active=int(active),
            concurrency=concurrency,
            rate_max=rate_max,
            rate_per=rate_per,
            tokens=tokens,
            limited_ms=max(0, int(limited)),
            published=published,
            shared=shared,
        )

    async def get_limiter_state(self) -> LimiterState:
        """The state of this queue's shared limiter: buckets, 429 hold, breaker.

        Raises:
            ConfigError: the queue has no shared limiter.
        """
        if self.config.limiter is None:
            raise ConfigError(f"queue {self.config.name!r} has no shared limiter")
        return await read_limiter_state(self.redis, self.keys, self.config.limiter)

    async def learn_limit(
        self, bucket: str, *, limit: float | None = None, remaining: float | None = None
    ) -> tuple[float | None, float | None]:
        """Tell the shared limiter what the provider says of one of its buckets (e.g. from the
        rate-limit headers of a response): its capacity becomes `limit`, and its tokens are
        lowered to `remaining` if they were above (calls not settled yet are counted by the
        provider already). Every process sharing the limiter sees it at once.

        Returns:
            The bucket's (capacity, tokens) after the update.

        Raises:
            ConfigError: no shared limiter, an unknown bucket, or a bad number.
        """
        limiter = self.config.limiter
        if limiter is None or bucket not in limiter.buckets:
            raise ConfigError(f"queue {self.config.name!r} has no shared-limiter bucket {bucket!r}")
        for what, value in (("limit", limit), ("remaining", remaining)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or value < 0
            ):
                raise ConfigError(f"{what} must be a number >= 0 or None, got {value!r}")
        return await self.scripts.learn(
            bucket, limit=limit, remaining=remaining, buckets=limiter.encode_buckets()
        )
