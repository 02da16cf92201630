"""Asyncio helpers shared by the engine's long-running loops."""

from __future__ import annotations

import asyncio

__all__ = ["raise_if_cancelling"]


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
