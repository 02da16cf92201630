"""The engine's one backoff formula: `base * 2 ** (attempt - 1)`, capped, jitter only adding.

Every wait that grows with failures is this one: a job's retries (`jobqueue.retry.backoff_delay`,
used by the worker's outcomes and by `with_retry`) and the loops that reconnect to Redis. It sits
in the lowest layer so that any of them may call it.
"""

from __future__ import annotations

import math
import random

__all__ = ["exponential_delay"]


def exponential_delay(
    base: float,
    attempt: int,
    *,
    cap: float = math.inf,
    jitter: float = 0.0,
    rng: random.Random | None = None,
) -> float:
    """`base * 2 ** (attempt - 1)` seconds, at most `cap`, plus jitter that never passes `cap`.

    The arguments are not checked (this runs on every failure): callers pass checked values,
    as `jobqueue.retry.backoff_delay` does for the ones it is given.

    Args:
        base: Delay after the first failure, in seconds (>= 0).
        attempt: Number of the failure, from 1.
        cap: Upper bound of the result, in seconds (>= 0; may be `math.inf`).
        jitter: A fraction in [0, 1]: adds a random amount up to `jitter` times the delay.
        rng: Source of randomness for the jitter; the `random` module when None.

    Returns:
        Seconds to wait.
    """
    # The exponent is bounded so that a huge attempt count cannot overflow a float.
    delay = min(base * 2.0 ** min(attempt - 1, 64), cap)
    if jitter and delay > 0:
        uniform = rng.uniform if rng is not None else random.uniform
        delay = min(delay + uniform(0.0, jitter * delay), cap)
    return delay
