"""`with_retry`: in-process retries of a coroutine function, by the engine's classification."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ._values import check_count, check_fraction, check_seconds
from .backoff import backoff_delay
from .classify import RetryDelays, classify_with, merged_delays

__all__ = ["with_retry"]

T = TypeVar("T")

logger = logging.getLogger(__name__)


async def with_retry(
    fn: Callable[[], Awaitable[T]],
    *,
    max_attempts: int = 3,
    on_retry: Callable[[Exception, int, float], object] | None = None,
    context: str = "",
    retry_delays: RetryDelays | None = None,
    max_delay: float = 3600.0,
    jitter: float = 0.0,
) -> T:
    """Await `fn()` until it succeeds, fails in a way not worth retrying, or attempts run out.

    Args:
        fn: Makes one attempt.
        max_attempts: Total attempts, at least 1.
        on_retry: Called (and awaited if it returns an awaitable) with the exception, the
            failed attempt's number and the delay, before sleeping.
        context: Names the operation in the log line.
        retry_delays: As for `classify_error`.
        max_delay: As for `backoff_delay`.
        jitter: As for `backoff_delay`.

    Returns:
        What `fn()` returned.

    Raises:
        ConfigError: An argument is out of range.
        Exception: The last failure, unchanged.
    """
    check_count(max_attempts, "max_attempts")
    check_seconds(max_delay, "max_delay", allow_inf=True)
    check_fraction(jitter, "jitter")
    delays = merged_delays(retry_delays)
    label = context or getattr(fn, "__qualname__", repr(fn))
    attempt = 1
    while True:
        try:
            return await fn()
        except Exception as exc:
            verdict = classify_with(exc, delays)
            if not verdict.retryable or attempt >= max_attempts:
                raise
            delay = backoff_delay(verdict, attempt, max_delay=max_delay, jitter=jitter)
            logger.warning(
                "%s: attempt %d/%d failed (%s: %s); retrying in %.3fs",
                *(label, attempt, max_attempts, verdict.error_type, verdict.message, delay),
            )
            if on_retry is not None and inspect.isawaitable(r := on_retry(exc, attempt, delay)):
                await r
        # Slept outside `except`, so a cancellation while waiting is not chained to the failure.
        await asyncio.sleep(delay)
        attempt += 1
