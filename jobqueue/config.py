"""Queue configuration: frozen, keyword-only, validated with errors that name the bad value."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from types import MappingProxyType

from .core._inputs import shown
from .core.keys import validate_queue_name, validate_slot
from .core.replies import TakeLimits
from .errors import ConfigError, ErrorType
from .limits.model import Limiter, encode_cost
from .retry.types import check_error_type, default_retry_delays

__all__ = ["QueueConfig", "RateLimit"]

MAX_PRIORITY = 2**20
MAX_SECONDS = 10 * 365 * 86400.0
"""Longest duration of an option (a timeout, lease, backoff, age...): a longer one is a mistake
(ms given as seconds), and its milliseconds would overflow what the scripts compute with."""


def _positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:  # NaN
        raise ConfigError(f"{name} must be a number, got {shown(value)}")
    if value < 0 or (value == 0 and not allow_zero) or not value <= MAX_SECONDS:
        raise ConfigError(
            f"{name} must be {'>= 0' if allow_zero else '> 0'} and at most 10 years of seconds, "
            f"got {shown(value)}"
        )
    return float(value)


_MAX_COUNT = 2**53
"""Largest count accepted: the scripts' numbers are Lua doubles, exact up to 2**53."""


def _count(name: str, value: int, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= _MAX_COUNT:
        raise ConfigError(f"{name} must be an int within [{minimum}, 2**53], got {shown(value)}")
    return value


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `max` job starts per `per` seconds, across all workers (a token bucket).

    The bucket holds up to `max` tokens and refills continuously at `max / per` per second,
    on the Redis clock.
    """

    max: int
    per: float

    def __post_init__(self) -> None:
        _count("RateLimit.max", self.max, minimum=1)
        _positive("RateLimit.per", self.per)


def _retention(name: str, value: tuple[int | None, float | None]) -> tuple[int, int]:
    """(count, age seconds) -> (count or -1, age ms or -1); None keeps everything."""
    if not isinstance(value, tuple) or len(value) != 2:
        raise ConfigError(f"{name} must be a (count, age_seconds) tuple, got {shown(value)}")
    count, age = value
    c = -1 if count is None else _count(f"{name} count", count, minimum=0)
    a = -1 if age is None else int(_positive(f"{name} age", age, allow_zero=True) * 1000)
    return c, a


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """Everything the engine needs to know about a queue. Durations are in seconds.

    Args:
        name: the queue name (letters, digits, `_`, `.`, `-`).
        concurrency: cap on active jobs of this queue across ALL worker processes
            (None = no global cap; each worker still has its own `concurrency`).
        timeout: seconds per attempt; the handler is cancelled past it (a retryable
            NETWORK_ERROR). None = no timeout.
        attempts: total attempts per job (1 = no automatic retry).
        backoff: base delay of errors without a specific one in `retry_delays`.
        retry_delays: base delay per error type (a built-in `ErrorType` or a name given to
            `register_error_type`), overriding the types' defaults (RATE_LIMIT 60 when no
            Retry-After, NETWORK_ERROR 10, UNKNOWN = `backoff`, a registered type its own
            or UNKNOWN's). Retries back off as `delay * 2 ** (attempt - 1)`.
        max_backoff: cap on any retry delay.
        jitter: fraction of the delay added at random (0 = off); it only ever adds.
        rate_limit: `RateLimit(max=, per=)` shared by all workers, or None.
        limiter: a shared `Limiter` this queue spends with others (its buckets, 429 hold and
            breaker), or None. The queue's keys then live in the limiter's hash slot (unless
            `slot` names another).
        slot: the Redis Cluster hash slot the queue's keys (and its limiter's) live in, named
            like a queue; None = the limiter's name, or the queue's own slot without a
            limiter. Queues on several limiters (or none) given one `slot` may then form one
            flow, each limiter keeping its own buckets, 429 hold and breaker. A limiter is its
            name within a slot: queues meant to share a limiter must share its slot too.
        cost: what one job of this queue costs of the limiter's buckets when `Queue.add` is
            given none (default: nothing).
        lease: seconds a worker holds a job without renewing; renewed every lease/3.
        stall_interval: seconds between stall checks (default lease / 2).
        max_stalls: times a job may lose its lease (worker died) before it fails.
        max_deferrals: times a job may be deferred by RATE_LIMIT before it fails.
        keep_completed: (count, age seconds) of completed jobs kept; None = unbounded.
            Default 1,000 for a day. Counts up to Redis's `zset-max-listpack-entries` (128)
            keep the completed set as a listpack, which Redis reads end to end at every
            completion (a fifth more Redis work per job at 100 than at 1,000).
        keep_failed: (count, age seconds) of failed jobs kept.
        events_maxlen: approximate cap of the event stream (0 = no events).
        drain_delay: longest an idle worker blocks in Redis before it checks again.
        max_payload: largest job data (and result), in bytes of JSON.
        heartbeat_interval: seconds between a worker's heartbeats; its heartbeat key
            expires after 3 intervals without one (so a dead worker disappears).
        group_concurrency: at most this many jobs of one group (`Queue.add(group=...)`)
            run at once across all workers; None = no cap. Applied by `Queue.add` (which may
            override it per job).
        durable_replicas: durable mode: after every change the scripts make, wait until this
            many replicas acknowledged it (`WAIT`), so that a failover right after does not
            lose it (Redis replicates asynchronously). 0 = off. A short acknowledgement makes
            `Queue.add` raise `NotDurableError` (the jobs are stored on the master; adding them
            again with their ids is safe) and is logged for the other changes.
        durable_timeout: seconds `WAIT` waits for the replicas in durable mode.
    """

    name: str
    _: KW_ONLY
    concurrency: int | None = None
    timeout: float | None = None
    attempts: int = 3
    backoff: float = 5.0
    retry_delays: Mapping[ErrorType, float] | Mapping[str, float] | None = None
    max_backoff: float = 3600.0
    jitter: float = 0.0
    rate_limit: RateLimit | None = None
    limiter: Limiter | None = None
    slot: str | None = None
    cost: Mapping[str, float] | None = None
    lease: float = 30.0
    stall_interval: float | None = None
    max_stalls: int = 1
    max_deferrals: int = 100
    keep_completed: tuple[int | None, float | None] = (1000, 86400.0)
    keep_failed: tuple[int | None, float | None] = (200, 604800.0)
    events_maxlen: int = 10_000
    drain_delay: float = 5.0
    max_payload: int = 1_048_576
    heartbeat_interval: float = 5.0
    group_concurrency: int | None = None
    durable_replicas: int = 0
    durable_timeout: float = 1.0

    def __post_init__(self) -> None:
        validate_queue_name(self.name)
        if self.concurrency is not None:
            _count("concurrency", self.concurrency, minimum=1)
        if self.group_concurrency is not None:
            _count("group_concurrency", self.group_concurrency, minimum=1)
        if self.timeout is not None:
            _positive("timeout", self.timeout)
        _count("attempts", self.attempts, minimum=1)
        _positive("backoff", self.backoff, allow_zero=True)
        _positive("max_backoff", self.max_backoff, allow_zero=True)
        if not 0.0 <= _positive("jitter", self.jitter, allow_zero=True) <= 1.0:
            raise ConfigError(f"jitter must be within [0, 1], got {shown(self.jitter)}")
        if self.retry_delays is not None:
            delays: dict[str, float] = {}
            for key, value in self.retry_delays.items():
                etype = check_error_type(key, "retry_delays key")
                delays[etype] = _positive(f"retry_delays[{key}]", value, allow_zero=True)
            object.__setattr__(self, "retry_delays", MappingProxyType(delays))
        if self.rate_limit is not None and not isinstance(self.rate_limit, RateLimit):
            raise ConfigError(f"rate_limit must be a RateLimit, got {shown(self.rate_limit)}")
        if self.limiter is not None and not isinstance(self.limiter, Limiter):
            raise ConfigError(f"limiter must be a Limiter, got {shown(self.limiter)}")
        if self.slot is not None:
            validate_slot(self.slot)
        if self.cost is not None:
            if not isinstance(self.cost, Mapping):
                raise ConfigError(f"cost must map bucket names to amounts, got {shown(self.cost)}")
            if self.limiter is None:
                raise ConfigError(f"cost {dict(self.cost)!r} needs a limiter to spend it on")
            self.check_cost(self.cost, what="cost")
            object.__setattr__(self, "cost", MappingProxyType(dict(self.cost)))
        _positive("lease", self.lease)
        if self.lease < 0.05:
            raise ConfigError(f"lease must be >= 0.05 s, got {shown(self.lease)}")
        if self.stall_interval is not None:
            _positive("stall_interval", self.stall_interval)
        _count("max_stalls", self.max_stalls, minimum=0)
        _count("max_deferrals", self.max_deferrals, minimum=0)
        _retention("keep_completed", self.keep_completed)
        _retention("keep_failed", self.keep_failed)
        _count("events_maxlen", self.events_maxlen, minimum=0)
        _positive("drain_delay", self.drain_delay)
        _count("max_payload", self.max_payload, minimum=16)
        _count("durable_replicas", self.durable_replicas, minimum=0)
        _positive("durable_timeout", self.durable_timeout)
        if self.durable_timeout < 0.001:
            raise ConfigError(f"durable_timeout must be >= 0.001 s, got {self.durable_timeout!r}")
        _positive("heartbeat_interval", self.heartbeat_interval)
        if self.heartbeat_interval < 0.05:
            raise ConfigError(
                f"heartbeat_interval must be >= 0.05 s, got {shown(self.heartbeat_interval)}"
            )

    @property
    def effective_retry_delays(self) -> dict[str, float]:
        """Base delay per error type: each type's registered default, UNKNOWN = `backoff`,
        then `retry_delays`. A type without a delay here uses UNKNOWN's."""
        delays = {**default_retry_delays(), ErrorType.UNKNOWN: self.backoff}
        for name, delay in (self.retry_delays or {}).items():
            delays[name] = delay  # canonical names since __post_init__
        return delays

    def check_cost(self, cost: Mapping[str, float], *, what: str = "cost") -> str:
        """A job cost checked against this queue's limiter, encoded for the scripts.

        Raises:
            ConfigError: no limiter, a bucket the limiter does not have, or a bad amount.
        """
        if self.limiter is None:
            raise ConfigError(f"{what} {dict(cost)!r}: queue {self.name!r} has no limiter")
        unknown = sorted(set(cost) - set(self.limiter.buckets))
        if unknown:
            raise ConfigError(
                f"{what} names bucket(s) {unknown} that limiter {self.limiter.name!r} does not "
                f"have (it has {sorted(self.limiter.buckets)})"
            )
        return encode_cost(cost, what=what)

    def take_limits(self, worker: str) -> TakeLimits:
        """What `worker`'s takes apply: its lease and this queue's caps and shared limiter."""
        rate, limiter = self.rate_limit, self.limiter
        return TakeLimits(
            worker=worker,
            lease_ms=int(self.lease * 1000),
            concurrency=self.concurrency or 0,
            rate_max=rate.max if rate else 0,
            rate_per_ms=int(rate.per * 1000) if rate else 0,
            limiter=limiter.name if limiter else "",
            buckets=limiter.encode_buckets() if limiter else "",
            cost=self.check_cost(self.cost) if self.cost else "",
            breaker=limiter.encode_breaker() if limiter else "",
        )

    @property
    def hash_slot(self) -> str | None:
        """The hash tag of the queue's keys when it shares a slot: `slot`, else the limiter's
        name; None when the queue is in its own slot."""
        if self.slot is not None:
            return self.slot
        return self.limiter.name if self.limiter is not None else None

    @property
    def durable(self) -> tuple[int, int] | None:
        """`(replicas, timeout_ms)` of durable mode, or None when it is off."""
        if not self.durable_replicas:
            return None
        return self.durable_replicas, int(self.durable_timeout * 1000)

    @property
    def stall_check_every(self) -> float:
        """Seconds between stall checks."""
        return self.stall_interval if self.stall_interval is not None else self.lease / 2

    @property
    def retention_ms(self) -> tuple[int, int, int, int]:
        """(completed count, completed age ms, failed count, failed age ms), -1 = unbounded."""
        return (
            *_retention("keep_completed", self.keep_completed),
            *_retention("keep_failed", self.keep_failed),
        )
