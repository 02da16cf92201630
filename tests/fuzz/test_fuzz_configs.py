"""Bad options of the engine's value objects and of `Worker`: every one a `ConfigError` (or
`InvalidJobError` for a job's own) naming the option, its message bounded, never a raw
TypeError, ValueError or OverflowError from deep inside."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest
from fuzz_helpers import BAD_NUMBERS, NOT_STR, ODD_TEXT, check_message
from hypothesis import given
from hypothesis import strategies as st

from jobqueue import Breaker, Bucket, ConfigError, Limiter, Queue, QueueConfig, RateLimit, Worker

ANY_BAD = st.one_of(
    BAD_NUMBERS, NOT_STR, ODD_TEXT, st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)

QUEUE_OPTIONS = [
    f.name for f in dataclasses.fields(QueueConfig) if f.name not in ("name", "_", "retry_delays")
]


def _valid(option: str, value: Any) -> bool:
    """Whether QueueConfig accepts `value` for `option` alone (asked of QueueConfig itself would
    be circular: the few values that are valid are listed here)."""
    nullable = (
        "concurrency",
        "timeout",
        "rate_limit",
        "limiter",
        "slot",
        "cost",
        "stall_interval",
        "group_concurrency",
    )
    return value is None and option in nullable


@given(option=st.sampled_from(QUEUE_OPTIONS), value=ANY_BAD)
def test_queue_config_refuses_bad_options(option: str, value: Any) -> None:
    error = refused(lambda: QueueConfig("q", **{option: value}))
    if error is None:  # accepted: only a value that is valid (None where it is the default,
        # a count or a duration given as a number, a name)
        assert _valid(option, value) or _plausible(value), (option, value)
    else:
        assert option.split("_")[0] in str(error).lower() or "must" in str(error), str(error)


def _plausible(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and value == value
        and 0 <= value < 1e300
    ) or isinstance(value, str)


@given(kwargs=st.fixed_dictionaries({"max": ANY_BAD, "per": ANY_BAD}))
def test_rate_limit_refuses_bad_values(kwargs: dict[str, Any]) -> None:
    refused(lambda: RateLimit(**kwargs))


@given(field=st.sampled_from([f.name for f in dataclasses.fields(Bucket)]), value=ANY_BAD)
def test_bucket_refuses_bad_values(field: str, value: Any) -> None:
    base = {f.name: 1 for f in dataclasses.fields(Bucket) if f.default is dataclasses.MISSING}
    refused(lambda: Bucket(**{**base, field: value}))


@given(field=st.sampled_from([f.name for f in dataclasses.fields(Breaker)]), value=ANY_BAD)
def test_breaker_refuses_bad_values(field: str, value: Any) -> None:
    base = {f.name: 1 for f in dataclasses.fields(Breaker) if f.default is dataclasses.MISSING}
    refused(lambda: Breaker(**{**base, field: value}))


@given(
    name=st.one_of(ODD_TEXT, NOT_STR),
    buckets=st.one_of(ANY_BAD, st.just({"req": Bucket(capacity=1, per=1)})),
    breaker=st.one_of(st.none(), ANY_BAD),
)
def test_limiter_refuses_bad_values(name: Any, buckets: Any, breaker: Any) -> None:
    refused(lambda: Limiter(name, buckets=buckets, breaker=breaker))


def refused(make: Any) -> ConfigError | None:
    """Call `make`; None when it accepted, else its `ConfigError` (any other error fails the
    test), checked to be bounded."""
    try:
        make()
    except ConfigError as exc:
        check_message(exc)
        return exc
    return None


WORKER_OPTIONS = [
    name
    for name, p in inspect.signature(Worker.__init__).parameters.items()
    if p.kind is p.KEYWORD_ONLY
]


@given(option=st.sampled_from(WORKER_OPTIONS), value=ANY_BAD)
def test_worker_refuses_bad_options(option: str, value: Any) -> None:
    queue = Queue("q", redis="redis://127.0.0.1:1/0")  # never connected: options come first
    error = refused(lambda: Worker(queue, lambda job: None, **{option: value}))
    if error is not None:
        assert option.split("_")[0] in str(error).lower() or "must" in str(error), str(error)


@pytest.mark.parametrize("handler", [5, "nope", {"a": 5}])
def test_worker_refuses_a_handler_that_is_not_callable(handler: Any) -> None:
    queue = Queue("q", redis="redis://127.0.0.1:1/0")
    with pytest.raises(ConfigError) as info:
        Worker(queue, handler)
    check_message(info.value)
