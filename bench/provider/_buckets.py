"""Continuously replenishing buckets: the API's rate limits ("the limit replenishes
continuously") for one API key on one model."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._config import Limits

__all__ = ["BUCKETS", "Bucket", "KeyModelLimits", "Verdict"]

BUCKETS = ("requests", "input-tokens", "output-tokens")
"""The three buckets, named as in the `anthropic-ratelimit-<name>-*` headers."""


class Bucket:
    """A token bucket of `capacity` that refills at `capacity / minute_seconds` per second and
    starts full.

    Args:
        capacity: The per-minute limit.
        minute_seconds: Seconds of a (scaled) minute.
        now: The clock reading at creation.
    """

    def __init__(self, capacity: int, minute_seconds: float, now: float) -> None:
        self.capacity = capacity
        self.rate = capacity / minute_seconds
        self.level = float(capacity)
        self._at = now

    def refill(self, now: float) -> None:
        """Add what flowed in since the last reading (never past the capacity)."""
        if now > self._at:
            self.level = min(float(self.capacity), self.level + (now - self._at) * self.rate)
            self._at = now

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` fits (0 when it fits now; inf when it never can)."""
        if amount > self.capacity:
            return math.inf
        return max(0.0, (amount - self.level) / self.rate)

    def take(self, amount: float) -> None:
        """Spend `amount` (the caller checked that it fits)."""
        self.level -= amount

    def give(self, amount: float) -> None:
        """Return `amount` (a reservation that was not used), up to the capacity."""
        self.level = min(float(self.capacity), self.level + amount)

    @property
    def remaining(self) -> int:
        """Whole units available now (the `-remaining` header)."""
        return max(0, math.floor(self.level + 1e-9))

    def full_in(self) -> float:
        """Seconds until the bucket is full again (the `-reset` header)."""
        return max(0.0, (self.capacity - self.level) / self.rate)


@dataclass(frozen=True)
class Verdict:
    """Whether a request fits, and if not, how long until it would.

    Attributes:
        fits: Every bucket can pay now.
        wait: Seconds until every bucket could pay (0 when it fits; inf when it never can).
        short: The buckets that cannot pay now.
    """

    fits: bool
    wait: float
    short: tuple[str, ...]


class KeyModelLimits:
    """The three buckets of one API key on one model.

    Args:
        limits: The per-minute limits.
        minute_seconds: Seconds of a (scaled) minute.
        now: The clock reading at creation.
    """

    def __init__(self, limits: Limits, minute_seconds: float, now: float) -> None:
        self.limits = limits
        self.buckets = {
            "requests": Bucket(limits.rpm, minute_seconds, now),
            "input-tokens": Bucket(limits.itpm, minute_seconds, now),
            "output-tokens": Bucket(limits.otpm, minute_seconds, now),
        }

    def refill(self, now: float) -> None:
        """Bring every bucket up to `now`."""
        for bucket in self.buckets.values():
            bucket.refill(now)

    def check(self, input_tokens: int, max_tokens: int) -> Verdict:
        """Whether one request of `input_tokens` reserving `max_tokens` fits (after `refill`)."""
        cost = self._cost(input_tokens, max_tokens)
        waits = {name: self.buckets[name].wait_for(amount) for name, amount in cost.items()}
        short = tuple(name for name, w in waits.items() if w > 0)
        return Verdict(fits=not short, wait=max(waits.values()), short=short)

    def take(self, input_tokens: int, max_tokens: int) -> None:
        """Charge one request; output tokens are reserved at `max_tokens`."""
        for name, amount in self._cost(input_tokens, max_tokens).items():
            self.buckets[name].take(amount)

    def settle_output(self, reserved: int, used: int) -> None:
        """Give back the output tokens a request reserved but did not produce."""
        if reserved > used:
            self.buckets["output-tokens"].give(reserved - used)

    @staticmethod
    def _cost(input_tokens: int, max_tokens: int) -> dict[str, float]:
        return {"requests": 1, "input-tokens": input_tokens, "output-tokens": max_tokens}
