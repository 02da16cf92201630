"""`QueueMetricsCollector`: the queue-level gauges of every queue under a prefix, as a
`prometheus_client` collector (see `_bridge` for how asyncio reads meet synchronous
collection)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from redis.asyncio import Redis

from ..core.keys import validate_prefix
from ..limits.state import LimiterState
from ..queue import Queue
from ._bridge import BridgedCollector
from ._snapshot import Snapshot, _ScriptsCache, read_snapshot

__all__ = ["JOB_STATES", "LimiterMetricsCollector", "QueueMetricsCollector", "limiter_families"]

JOB_STATES = (
    "waiting",
    "active",
    "delayed",
    "waiting-children",
    "paused",
    "completed",
    "failed",
)
"""The `state` label values of `jobqueue_jobs` (the keys of `Queue.get_job_counts`)."""

BREAKER_STATES = ("closed", "open", "half_open")


class QueueMetricsCollector(BridgedCollector[Snapshot]):
    """Queue-level gauges read from Redis: jobs by state, paused, limiters and breakers.

    Args:
        redis: the client (its pool is used; nothing is written).
        prefix: the key prefix of the queues.
        timeout: seconds a collection from another thread waits for the read before it serves
            the previous snapshot.
    """

    def __init__(self, redis: Redis, *, prefix: str = "jq", timeout: float = 5.0) -> None:
        super().__init__(timeout=timeout)
        self.redis = redis
        self.prefix = validate_prefix(prefix)
        self._cache = _ScriptsCache(redis)

    async def read(self) -> Snapshot:
        """Read every queue under the prefix (see `read_snapshot`)."""
        return await read_snapshot(self.redis, self.prefix, cache=self._cache)

    def collect(self) -> Iterator[Metric]:
        """`jobqueue_redis_up`, then the families of the snapshot."""
        families = list(super().collect())
        up = GaugeMetricFamily(
            "jobqueue_redis_up", "Whether the last read of the queues reached Redis (1) or not."
        )
        up.add_metric([], 1.0 if self.up else 0.0)
        yield up
        yield from families

    def families(self, snapshot: Snapshot) -> Iterator[Metric]:
        """The gauges of a snapshot."""
        took = GaugeMetricFamily(
            "jobqueue_metrics_read_seconds", "Seconds the last read of the queues took."
        )
        took.add_metric([], snapshot.duration)
        yield took
        yield from _queue_families(snapshot)
        yield from limiter_families(snapshot.limiters)


def _queue_families(snap: Snapshot) -> Iterator[Metric]:
    jobs = GaugeMetricFamily(
        "jobqueue_jobs", "Jobs of a queue in each state.", labels=["queue", "state"]
    )
    paused = GaugeMetricFamily(
        "jobqueue_queue_paused", "Whether the queue is paused (1) or not (0).", labels=["queue"]
    )
    limited = GaugeMetricFamily(
        "jobqueue_queue_rate_limited_seconds",
        "Seconds left of the queue's rate-limit hold (0 = none).",
        labels=["queue"],
    )
    for q in snap.queues:
        for state in JOB_STATES:
            jobs.add_metric([q.name, state], float(q.counts.get(state, 0)))
        paused.add_metric([q.name], 1.0 if q.paused else 0.0)
        limited.add_metric([q.name], q.limited_ms / 1000)
    yield jobs
    yield paused
    yield limited


def limiter_families(limiters: Iterable[LimiterState]) -> Iterator[Metric]:
    """The gauges of shared limiters: tokens and capacity per bucket, 429 hold, breaker."""
    tokens = GaugeMetricFamily(
        "jobqueue_limiter_tokens",
        "Tokens left now in a shared limiter's bucket (below zero: a debt).",
        labels=["limiter", "bucket"],
    )
    capacity = GaugeMetricFamily(
        "jobqueue_limiter_capacity",
        "What a shared limiter's bucket holds at most (configured or learned).",
        labels=["limiter", "bucket"],
    )
    hold = GaugeMetricFamily(
        "jobqueue_limiter_hold_seconds",
        "Seconds left of a shared limiter's 429 hold (0 = none).",
        labels=["limiter"],
    )
    open_ = GaugeMetricFamily(
        "jobqueue_breaker_open",
        "Whether a shared limiter's circuit breaker is open (1) or not (0).",
        labels=["limiter"],
    )
    state = GaugeMetricFamily(
        "jobqueue_breaker_state",
        "A shared limiter's circuit breaker state: 1 for the state it is in.",
        labels=["limiter", "state"],
    )
    fails = GaugeMetricFamily(
        "jobqueue_breaker_recent_failures",
        "Server-side failures within the breaker's window.",
        labels=["limiter"],
    )
    openings = CounterMetricFamily(
        "jobqueue_breaker_openings",
        "Times a shared limiter's circuit breaker opened.",
        labels=["limiter"],
    )
    for lim in limiters:
        for b in lim.buckets:
            if b.tokens is not None:
                tokens.add_metric([lim.name, b.name], b.tokens)
            if b.capacity is not None:
                capacity.add_metric([lim.name, b.name], b.capacity)
        hold.add_metric([lim.name], lim.hold_ms / 1000)
        brk = lim.breaker
        if brk is not None:
            open_.add_metric([lim.name], 1.0 if brk.state == "open" else 0.0)
            for s in BREAKER_STATES:
                state.add_metric([lim.name, s], 1.0 if brk.state == s else 0.0)
            fails.add_metric([lim.name], float(brk.recent_failures))
            openings.add_metric([lim.name], float(brk.openings))
    yield from (tokens, capacity, hold, open_, state, fails, openings)


class LimiterMetricsCollector(BridgedCollector[tuple[LimiterState, ...]]):
    """The gauges of the shared limiters of some queues (a worker process's own): tokens and
    capacity per bucket, 429 hold, breaker state.

    Args:
        queues: the queues; each distinct limiter among their configs is read once.
        timeout: seconds a collection from another thread waits for the read.
    """

    def __init__(self, queues: Iterable[Queue], *, timeout: float = 5.0) -> None:
        super().__init__(timeout=timeout)
        self.queues: dict[str, Queue] = {}
        for queue in queues:
            limiter = queue.config.limiter
            if limiter is not None:
                self.queues.setdefault(limiter.name, queue)

    async def read(self) -> tuple[LimiterState, ...]:
        """Read each limiter (one transaction each)."""
        return tuple([await self.queues[n].get_limiter_state() for n in sorted(self.queues)])

    def families(self, snapshot: tuple[LimiterState, ...]) -> Iterator[Metric]:
        """The gauges of the limiters."""
        return limiter_families(snapshot)
