"""The one backoff formula: `delay * 2 ** (attempt - 1)`, capped, with jitter that only adds."""

from __future__ import annotations

import math
import random

from ._values import check_count, check_fraction, check_seconds
from .classify import Classification

__all__ = ["backoff_delay", "exponential_delay"]


def exponential_delay(
    base: float,
    attempt: int,
    *,
    cap: float = math.inf,
    jitter: float = 0.0,
    rng: random.Random | None = None,
) -> float:
    """`base * 2 ** (attempt - 1)` seconds, at most `cap`, plus jitter that never passes `cap`.

    The engine's every backoff (job retries, `with_retry`, reconnecting to Redis) is this.

    Args:
        base: Delay after the first failure, in seconds (>= 0).
        attempt: Number of the failure, from 1.
        cap: Upper bound of the result, in seconds (>= 0; may be `math.inf`).
        jitter: A fraction in [0, 1]: adds a random amount up to `jitter` times the delay.
        rng: Source of randomness for the jitter; the `random` module when None.

    Returns:
        Seconds to wait.

    Raises:
        ConfigError: An argument is out of range.
    """
    check_seconds(base, "base", allow_inf=True)
    check_count(attempt, "attempt")
    check_seconds(cap, "cap", allow_inf=True)
    check_fraction(jitter, "jitter")
    # The exponent is bounded so that a huge attempt count cannot overflow a float.
    delay = min(base * 2.0 ** min(attempt - 1, 64), cap)
    if jitter and delay > 0:
        uniform = rng.uniform if rng is not None else random.uniform
        delay = min(delay + uniform(0.0, jitter * delay), cap)
    return delay


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
