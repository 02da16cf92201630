"""The simulator's settings: limits per key and model, scaled time, latency, outages."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from jobqueue import ConfigError

__all__ = ["DEFAULT_LIMITS", "Limits", "ManualClock", "ProviderConfig"]


def _check(name: str, value: float, *, low: float, strict: bool = False) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if value < low or (strict and value == low):
        raise ConfigError(f"{name} must be {'>' if strict else '>='} {low:g}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Per-minute limits of one API key on one model, as the Messages API states them.

    Attributes:
        rpm: Requests per (scaled) minute.
        itpm: Input tokens per minute: uncached input plus cache writes (cache reads are free,
            as the API counts them for current models).
        otpm: Output tokens per minute; a request reserves its `max_tokens` when it starts and
            gets the unused part back when it ends.

    Raises:
        ConfigError: A limit is not a positive integer.
    """

    rpm: int
    itpm: int
    otpm: int

    def __post_init__(self) -> None:
        for name in ("rpm", "itpm", "otpm"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")

    def as_dict(self) -> dict[str, int]:
        """The three limits by name."""
        return {"rpm": self.rpm, "itpm": self.itpm, "otpm": self.otpm}

    @classmethod
    def parse(cls, text: str) -> Limits:
        """Read `RPM,ITPM,OTPM` (e.g. `30,1200,16000`).

        Args:
            text: Three integers separated by commas.

        Returns:
            The limits.

        Raises:
            ConfigError: Not three integers, or one is < 1.
        """
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ConfigError(f"limits must be RPM,ITPM,OTPM integers, got {text!r}")
        rpm, itpm, otpm = (int(p) for p in parts)
        return cls(rpm=rpm, itpm=itpm, otpm=otpm)


DEFAULT_LIMITS = Limits(rpm=50, itpm=30_000, otpm=32_000)
"""Limits of a model that `ProviderConfig.model_limits` does not name (a tier-1-like RPM and
ITPM; the OTPM leaves room for the pipeline's 16,000-token `max_tokens`)."""


@dataclass(frozen=True, kw_only=True)
class ProviderConfig:
    """Everything the simulator does, in one value (all times in real seconds).

    Attributes:
        minute_seconds: How long a "minute" of the rate limits lasts: 10.0 makes every limit a
            per-10-seconds limit, so a benchmark takes minutes instead of hours.
        limits: The limits of every model that `model_limits` does not name.
        model_limits: Limits per model id.
        latency_median: Median seconds from admission to the reply (lognormal); 0 answers at
            once.
        latency_sigma: The lognormal's sigma (spread).
        latency_min: Shortest latency drawn.
        latency_max: Longest latency drawn.
        output_median: Median output tokens drawn for a reply (lognormal, within `max_tokens`).
        output_sigma: The lognormal's sigma for output tokens.
        thinking_share: Share of the output tokens spent thinking when the reply has a
            thinking block (Opus models, or a request with `thinking`).
        outage: `(start, duration)` in seconds of simulator time (since `start()`): every
            request in that window is answered 529 `overloaded_error`.
        outage_drop_share: Share of the requests during the outage whose connection is dropped
            instead (no reply at all).
        outage_retry_after: Most seconds a 529 asks the client to wait (`retry-after`); less
            when the outage ends sooner.
        cache_minutes: Scaled minutes a prompt-cache entry lives (`ttl: "5m"`; `"1h"` is 60).
        chars_per_token: Characters per token of the estimate (input and generated text).
        false_share: Share of booleans answered `false` in structured output (a judge that
            rejects some analyses); the rest are `true`.
        seed: Seeds every draw (latency, output tokens, generated values) with the request's
            content, so the same request always gets the same answer.
        host: Address to listen on.
        port: Port to listen on; 0 picks a free one.

    Raises:
        ConfigError: A value is out of range.
    """

    minute_seconds: float = 60.0
    limits: Limits = DEFAULT_LIMITS
    model_limits: Mapping[str, Limits] = field(default_factory=dict)
    latency_median: float = 0.6
    latency_sigma: float = 0.35
    latency_min: float = 0.3
    latency_max: float = 1.2
    output_median: int = 300
    output_sigma: float = 0.6
    thinking_share: float = 0.25
    outage: tuple[float, float] | None = None
    outage_drop_share: float = 0.0
    outage_retry_after: float = 5.0
    cache_minutes: float = 5.0
    chars_per_token: float = 4.0
    false_share: float = 0.0
    seed: int = 0
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        _check("minute_seconds", self.minute_seconds, low=0.0, strict=True)
        if not isinstance(self.limits, Limits):
            raise ConfigError(f"limits must be a Limits, got {self.limits!r}")
        for model, lim in self.model_limits.items():
            if not isinstance(lim, Limits):
                raise ConfigError(f"model_limits[{model!r}] must be a Limits, got {lim!r}")
        _check("latency_median", self.latency_median, low=0.0)
        _check("latency_sigma", self.latency_sigma, low=0.0)
        _check("latency_min", self.latency_min, low=0.0)
        _check("latency_max", self.latency_max, low=0.0)
        if self.latency_median > 0 and not (
            self.latency_min <= self.latency_median <= self.latency_max
        ):
            raise ConfigError(
                f"latency_median must lie in [latency_min, latency_max] = "
                f"[{self.latency_min!r}, {self.latency_max!r}], got {self.latency_median!r}"
            )
        if not isinstance(self.output_median, int) or self.output_median < 1:
            raise ConfigError(f"output_median must be an integer >= 1, got {self.output_median!r}")
        _check("output_sigma", self.output_sigma, low=0.0)
        for name in ("thinking_share", "outage_drop_share", "false_share"):
            value = getattr(self, name)
            _check(name, value, low=0.0)
            if value > 1:
                raise ConfigError(f"{name} must be <= 1, got {value!r}")
        if self.outage is not None:
            if len(self.outage) != 2:
                raise ConfigError(f"outage must be (start, duration), got {self.outage!r}")
            _check("outage start", self.outage[0], low=0.0)
            _check("outage duration", self.outage[1], low=0.0, strict=True)
        _check("outage_retry_after", self.outage_retry_after, low=0.0, strict=True)
        _check("cache_minutes", self.cache_minutes, low=0.0, strict=True)
        _check("chars_per_token", self.chars_per_token, low=0.0, strict=True)
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0..65535, got {self.port!r}")

    def limits_for(self, model: str) -> Limits:
        """The limits of `model`.

        Args:
            model: A model id.

        Returns:
            `model_limits[model]`, else `limits`.
        """
        return self.model_limits.get(model, self.limits)


class ManualClock:
    """A clock that moves only when told: `ProviderSimulator(clock=...)` for exact arithmetic.

    Args:
        start: The first reading.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = float(start)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward.

        Args:
            seconds: How far (>= 0).

        Raises:
            ConfigError: `seconds` is negative.
        """
        _check("seconds", seconds, low=0.0)
        self._now += seconds
