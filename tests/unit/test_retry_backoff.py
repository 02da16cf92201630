"""Unit tests of the one backoff formula (`jobqueue.core.backoff.exponential_delay`) and of
`jobqueue.retry.backoff_delay`, which applies it to a failed job."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from jobqueue.core.backoff import exponential_delay
from jobqueue.errors import ConfigError, ErrorType
from jobqueue.retry import (
    Classification,
    backoff_delay,
)

# --- backoff_delay ---------------------------------------------------------------------------


def test_backoff_doubles_per_attempt_and_is_capped() -> None:
    c = Classification(ErrorType.NETWORK_ERROR, True, 1.0, "x", False)
    assert [backoff_delay(c, n) for n in range(1, 6)] == [1, 2, 4, 8, 16]
    assert backoff_delay(c, 6, max_delay=20) == 20
    assert backoff_delay(c, 10_000) == 3600  # no float overflow


def test_exact_delays_are_not_multiplied_but_are_capped() -> None:
    c = Classification(ErrorType.RATE_LIMIT, True, 17.0, "x", True)
    assert backoff_delay(c, 1) == backoff_delay(c, 5) == 17
    assert backoff_delay(c, 5, jitter=1.0) == 17
    assert backoff_delay(c, 1, max_delay=10) == 10


def test_jitter_only_adds_within_bounds() -> None:
    c = Classification(ErrorType.UNKNOWN, True, 2.0, "x", False)
    rng = random.Random(1234)
    samples = [backoff_delay(c, 2, jitter=0.5, rng=rng) for _ in range(500)]
    assert all(4.0 <= s <= 6.0 for s in samples)
    assert max(samples) > 5.5
    assert min(samples) < 4.5
    assert backoff_delay(c, 2) == 4.0  # off by default
    assert all(backoff_delay(c, 2, jitter=1.0) <= 8.0 for _ in range(100))
    assert backoff_delay(c, 20, max_delay=100, jitter=1.0) == 100  # never above the cap


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"attempt": 0}, "0"),
        ({"attempt": -1}, "-1"),
        ({"attempt": 1.5}, "1.5"),
        ({"attempt": True}, "True"),
        ({"attempt": 1, "max_delay": -1}, "-1"),
        ({"attempt": 1, "max_delay": math.nan}, "nan"),
        ({"attempt": 1, "jitter": -0.1}, "-0.1"),
        ({"attempt": 1, "jitter": 1.5}, "1.5"),
        ({"attempt": 1, "jitter": math.nan}, "nan"),
    ],
)
def test_backoff_validates_arguments(kwargs: dict[str, Any], bad: str) -> None:
    c = Classification(ErrorType.UNKNOWN, True, 1.0, "x", False)
    with pytest.raises(ConfigError, match=bad):
        backoff_delay(c, **kwargs)


# --- exponential_delay -----------------------------------------------------------------------


def test_exponential_delay_is_the_formula() -> None:
    assert [exponential_delay(0.1, n) for n in range(1, 5)] == [0.1, 0.2, 0.4, 0.8]
    assert exponential_delay(0.1, 10, cap=5.0) == 5.0
    assert exponential_delay(1.0, 10_000) == 2.0**64  # the exponent is bounded: no overflow
    assert exponential_delay(0.0, 3, jitter=1.0) == 0.0


def test_exponential_delay_jitter_only_adds_and_never_passes_the_cap() -> None:
    rng = random.Random(99)
    samples = [exponential_delay(0.1, 3, cap=5.0, jitter=0.25, rng=rng) for _ in range(300)]
    assert all(0.4 <= s <= 0.5 for s in samples) and len(set(samples)) > 1
    assert all(exponential_delay(1.0, 3, cap=4.5, jitter=1.0, rng=rng) <= 4.5 for _ in range(100))


def test_backoff_delay_and_exponential_delay_agree() -> None:
    c = Classification(ErrorType.NETWORK_ERROR, True, 0.3, "x", False)
    for attempt in range(1, 12):
        assert backoff_delay(c, attempt, max_delay=60) == exponential_delay(0.3, attempt, cap=60)
