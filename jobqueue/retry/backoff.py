"""The backoff of a failed job: the engine's one formula (`jobqueue.core.backoff`) applied to a
classification, or the exact delay a server or a handler asked for."""

from __future__ import annotations

import random

from ..core.backoff import exponential_delay
from ._values import check_count, check_fraction, check_seconds
from .classify import Classification

__all__ = ["backoff_delay"]


def backoff_delay(
    classification: Classification,
    attempt: int,
    *,
    max_delay: float = 3600.0,
    jitter: float = 0.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after failed attempt number `attempt` (from 1).

    Args:
        classification: The failure's classification.
        attempt: The number of the attempt that failed, from 1.
        max_delay: Cap on the result in seconds.
        jitter: A fraction in [0, 1]; adds a random amount up to `jitter * delay`, never less.
        rng: Source of randomness for the jitter; the `random` module when None.

    Returns:
        `exponential_delay(delay, attempt)` within `max_delay`, or an exact delay (a server's
        Retry-After, `RetryAfter`) as is, at most `max_delay`.

    Raises:
        ConfigError: An argument is out of range.
    """
    check_count(attempt, "attempt")
    check_seconds(max_delay, "max_delay", allow_inf=True)
    check_fraction(jitter, "jitter")
    base = max(classification.delay, 0.0)
    if classification.exact:
        return min(base, max_delay)
    return exponential_delay(base, attempt, cap=max_delay, jitter=jitter, rng=rng)
