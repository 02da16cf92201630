"""Unit tests for `jobqueue.retry`: `with_retry`: in-process retries of a coroutine function."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anthropic
import pytest
from retry_helpers import FAST, status_error

from jobqueue.errors import ConfigError, ErrorType, RetryAfter, UnrecoverableError
from jobqueue.retry import (
    with_retry,
)

# --- with_retry ------------------------------------------------------------------------------


class Flaky:
    """Fails with the given exceptions, in order, then returns `result`."""

    def __init__(self, *failures: BaseException, result: str = "ok") -> None:
        self.failures = list(failures)
        self.calls = 0
        self.result = result

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.result


async def test_succeeds_after_failures() -> None:
    fn = Flaky(ConnectionResetError(), TimeoutError(), result="done")
    result: str = await with_retry(fn, max_attempts=3, retry_delays=FAST)
    assert result == "done"
    assert fn.calls == 3


async def test_on_retry_gets_each_failed_attempt_and_its_delay() -> None:
    first, second = ConnectionResetError("a"), ValueError("b")
    seen: list[tuple[BaseException, int, float]] = []
    fn = Flaky(first, second)
    await with_retry(fn, max_attempts=5, retry_delays=FAST, on_retry=lambda *a: seen.append(a))
    assert seen == [(first, 1, 0.001), (second, 2, 0.002)]


async def test_async_on_retry_is_awaited() -> None:
    attempts: list[int] = []

    async def on_retry(exc: Exception, attempt: int, delay: float) -> None:
        await asyncio.sleep(0)
        attempts.append(attempt)

    await with_retry(Flaky(TimeoutError(), TimeoutError()), retry_delays=FAST, on_retry=on_retry)
    assert attempts == [1, 2]


async def test_non_retryable_raises_at_once() -> None:
    exc = status_error(anthropic.BadRequestError, 400)
    fn = Flaky(exc)
    calls: list[int] = []
    with pytest.raises(anthropic.BadRequestError) as info:
        await with_retry(fn, max_attempts=5, on_retry=lambda e, n, d: calls.append(n))
    assert info.value is exc
    assert fn.calls == 1
    assert calls == []


async def test_unrecoverable_raises_at_once() -> None:
    fn = Flaky(UnrecoverableError("no", error_type=ErrorType.NETWORK_ERROR))
    with pytest.raises(UnrecoverableError):
        await with_retry(fn, max_attempts=5, retry_delays=FAST)
    assert fn.calls == 1


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    errors = [TimeoutError("1"), TimeoutError("2"), TimeoutError("3"), TimeoutError("4")]
    fn = Flaky(*errors)
    seen: list[int] = []
    with pytest.raises(TimeoutError) as info:
        await with_retry(
            fn, max_attempts=3, retry_delays=FAST, on_retry=lambda e, n, d: seen.append(n)
        )
    assert info.value is errors[2]
    assert fn.calls == 3
    assert seen == [1, 2]


async def test_single_attempt_does_not_retry() -> None:
    fn = Flaky(TimeoutError())
    with pytest.raises(TimeoutError):
        await with_retry(fn, max_attempts=1)
    assert fn.calls == 1


async def test_retry_after_delay_is_honoured_exactly() -> None:
    delays: list[float] = []
    fn = Flaky(RetryAfter(0.01), RetryAfter(0.01))
    await with_retry(fn, on_retry=lambda e, n, d: delays.append(d))
    assert delays == [0.01, 0.01]


async def test_max_delay_caps_the_sleep() -> None:
    delays: list[float] = []
    fn = Flaky(RetryAfter(3600, error_type=ErrorType.RATE_LIMIT))
    await with_retry(fn, max_delay=0.001, on_retry=lambda e, n, d: delays.append(d))
    assert delays == [0.001]


async def test_cancellation_propagates_without_retry() -> None:
    fn = Flaky(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await with_retry(fn, max_attempts=3, retry_delays=FAST)
    assert fn.calls == 1


async def test_logs_the_context_and_a_redacted_message(caplog: pytest.LogCaptureFixture) -> None:
    fn = Flaky(ConnectionError("redis://:CANARYpw@cache refused"))
    with caplog.at_level(logging.WARNING, logger="jobqueue.retry"):  # and its modules
        await with_retry(fn, retry_delays=FAST, context="fetch AAPL quotes")
    [record] = [r for r in caplog.records if r.name.startswith("jobqueue.retry")]
    assert "fetch AAPL quotes" in record.getMessage()
    assert "attempt 1/3" in record.getMessage()
    assert "CANARY" not in record.getMessage()


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"max_attempts": 0}, "0"),
        ({"max_attempts": 2.0}, "2.0"),
        ({"jitter": 2}, "2"),
        ({"max_delay": -5}, "-5"),
        ({"retry_delays": {"NOPE": 1}}, "NOPE"),
    ],
)
async def test_with_retry_validates_before_calling(kwargs: dict[str, Any], bad: str) -> None:
    fn = Flaky()
    with pytest.raises(ConfigError, match=bad):
        await with_retry(fn, **kwargs)
    assert fn.calls == 0
