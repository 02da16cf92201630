"""What a shared limiter is: named buckets of a budget many queues spend together, what a job
costs of them, and the circuit breaker that stops spending on a provider that is down.

Pure values (no Redis): `QueueConfig(limiter=...)` carries them, the take script applies them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..core._inputs import finite, shown
from ..core.keys import QUEUE_NAME_RE
from ..errors import ConfigError

__all__ = ["Breaker", "Bucket", "Cost", "Limiter", "encode_cost", "parse_cost"]

_BUCKET_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_BUCKETS = 8

Cost = Mapping[str, float]
"""What one job spends of a limiter's buckets, e.g. `{"requests": 1, "input_tokens": 2000}`."""


def _seconds(what: str, value: float, *, allow_zero: bool = False) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not finite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        raise ConfigError(
            f"{what} must be a finite number {'>=' if allow_zero else '>'} 0, got {shown(value)}"
        )
    return float(value)


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket: holds at most `capacity`, refills continuously, fully in `per` seconds
    (on the Redis clock), e.g. `Bucket(30_000, per=60)` for 30,000 input tokens per minute.

    `capacity=None` leaves the bucket unknown until the application learns it
    (`LimiterClient.learn`, e.g. from a provider's rate-limit headers): until then it does not
    hold jobs back.
    """

    capacity: float | None = None
    per: float = 60.0

    def __post_init__(self) -> None:
        if self.capacity is not None:
            _seconds("Bucket.capacity", self.capacity)
        _seconds("Bucket.per", self.per)


@dataclass(frozen=True, slots=True)
class Breaker:
    """A circuit breaker on a limiter, shared by every process in Redis.

    After `failures` server-side failures (NETWORK_ERROR: 5xx, overloaded, timeouts, dropped
    connections) within `window` seconds it opens: no job of the limiter's queues starts for
    `cooldown` seconds, and jobs whose call failed that way wait without spending an attempt.
    Then one trial job is let through (half-open): its success closes the breaker, its failure
    opens it again. A job that waited longer than `max_wait` seconds in all fails.
    """

    failures: int = 5
    window: float = 30.0
    cooldown: float = 30.0
    max_wait: float = 3600.0

    def __post_init__(self) -> None:
        if isinstance(self.failures, bool) or not isinstance(self.failures, int):
            raise ConfigError(f"Breaker.failures must be an int >= 1, got {self.failures!r}")
        if self.failures < 1:
            raise ConfigError(f"Breaker.failures must be an int >= 1, got {self.failures!r}")
        _seconds("Breaker.window", self.window)
        _seconds("Breaker.cooldown", self.cooldown)
        _seconds("Breaker.max_wait", self.max_wait)


@dataclass(frozen=True, slots=True)
class Limiter:
    """A named budget that many queues spend together (e.g. one API key and model).

    Every queue configured with the same limiter name shares its buckets, its 429 hold and its
    breaker, across processes and machines; a job starts only when every bucket can pay its
    cost, in the same atomic script that takes it. Such queues live in the limiter's Redis
    Cluster hash slot (see docs/design.md).

    Args:
        name: the limiter's name (letters, digits, `_`, `.`, `-`), e.g. `llm.opus`.
        buckets: bucket name -> `Bucket`; names are lower-case identifiers such as `requests`,
            `input_tokens`, `output_tokens` (at most 8).
        breaker: the circuit breaker, or None for none.
    """

    name: str
    buckets: Mapping[str, Bucket] = field(default_factory=dict)
    breaker: Breaker | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not QUEUE_NAME_RE.match(self.name):
            raise ConfigError(
                f"limiter name {self.name!r} is invalid: use 1-100 letters, digits, '_', '.', '-'"
            )
        if not isinstance(self.buckets, Mapping) or len(self.buckets) > MAX_BUCKETS:
            raise ConfigError(
                f"Limiter.buckets must map at most {MAX_BUCKETS} names to Bucket, "
                f"got {self.buckets!r}"
            )
        for name, bucket in self.buckets.items():
            _check_bucket_name(name)
            if not isinstance(bucket, Bucket):
                raise ConfigError(f"Limiter.buckets[{name!r}] must be a Bucket, got {bucket!r}")
        if self.breaker is not None and not isinstance(self.breaker, Breaker):
            raise ConfigError(f"Limiter.breaker must be a Breaker or None, got {self.breaker!r}")
        object.__setattr__(self, "buckets", MappingProxyType(dict(self.buckets)))

    def encode_buckets(self) -> str:
        """The configured buckets as the scripts read them: `name=capacity/per_ms,...`
        (`name=/per_ms` when the capacity is left to be learned)."""
        parts = []
        for name, b in sorted(self.buckets.items()):
            capacity = "" if b.capacity is None else _num(b.capacity)
            parts.append(f"{name}={capacity}/{int(b.per * 1000)}")
        return ",".join(parts)

    def encode_breaker(self) -> str:
        """The breaker as the scripts read it: `failures/window_ms/cooldown_ms/max_wait_ms`."""
        b = self.breaker
        if b is None:
            return ""
        return (
            f"{b.failures}/{int(b.window * 1000)}/{int(b.cooldown * 1000)}/{int(b.max_wait * 1000)}"
        )


def _check_bucket_name(name: object) -> str:
    if not isinstance(name, str) or not _BUCKET_RE.match(name):
        raise ConfigError(
            f"bucket name {name!r} is invalid: a lower-case identifier of at most 40 characters"
        )
    return name


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def encode_cost(cost: Cost, *, what: str = "cost") -> str:
    """A cost as the scripts read it (`bucket=n,...`), checked: names are bucket names,
    amounts finite numbers >= 0.

    Raises:
        ConfigError: a bad bucket name or amount (the message names it).
    """
    if not isinstance(cost, Mapping) or len(cost) > MAX_BUCKETS:
        raise ConfigError(
            f"{what} must map at most {MAX_BUCKETS} bucket names to amounts, got {shown(cost)}"
        )
    parts = []
    for name, amount in sorted(cost.items()):
        _check_bucket_name(name)
        _seconds(f"{what}[{name!r}]", amount, allow_zero=True)
        parts.append(f"{name}={_num(amount)}")
    return ",".join(parts)


def parse_cost(text: str) -> dict[str, float]:
    """The inverse of `encode_cost`."""
    out: dict[str, float] = {}
    for part in filter(None, text.split(",")):
        name, _, amount = part.partition("=")
        out[name] = float(amount)
    return out
