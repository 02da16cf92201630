"""Helpers of the provider simulator's tests (no pipeline import: the benchmark's side)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anthropic

API_KEY = "sk-sim-test-key"
#: Seconds before a test gives up waiting: a bound on a hang, never a speed requirement.
HANG = 60.0

MODEL = "claude-sonnet-5-5"

#: `await make_sim(clock=..., **config)` (the fixture of conftest.py)
MakeSim = Callable[..., Awaitable[Any]]


def user(text: str) -> list[dict[str, Any]]:
    """A one-message conversation."""
    return [{"role": "user", "content": text}]


def reset_time(value: str) -> float:
    """An `anthropic-ratelimit-*-reset` header (RFC 3339) as a Unix time."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def retry_after(exc: Any) -> int:
    """The whole seconds of a 429/529's `retry-after` header."""
    return int(exc.response.headers["retry-after"])


async def wait_until(predicate: Callable[[], bool], *, what: str) -> None:
    """Re-check `predicate` until it holds; fail after `HANG` seconds (a hang, not speed)."""
    deadline = time.monotonic() + HANG
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def sdk(sim: Any, api_key: str = API_KEY) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """The real `AsyncAnthropic` on a simulator, its own retries off; the timeout only bounds
    a hang."""
    client = anthropic.AsyncAnthropic(
        base_url=sim.base_url,
        api_key=api_key,
        max_retries=0,
        timeout=anthropic.Timeout(HANG, connect=HANG),
    )
    try:
        yield client
    finally:
        await client.close()
