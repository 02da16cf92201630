"""Asyncio helpers shared by the engine's long-running loops."""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any

__all__ = ["is_async_callable", "raise_if_cancelling"]


def is_async_callable(fn: Any) -> bool:
    """Whether calling `fn` gives a coroutine: an `async def`, a partial of one, or an object
    whose `__call__` is one."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - the attribute, not callable()
    )


def raise_if_cancelling() -> None:
    """Raise `CancelledError` if the current task was asked to cancel.

    redis-py sends every command under `asyncio.wait_for(..., socket_timeout)`. On Python 3.11
    `wait_for` drops a cancellation that arrives as the command completes (fixed in 3.12), so
    a loop making Redis calls may never see its `task.cancel()`, and whoever awaits the task
    hangs. A loop calls this after its Redis calls: `Task.cancelling()` still counts the
    dropped request.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
