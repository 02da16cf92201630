"""Running one job's handler: the handler for its name, async or in the thread pool, under the
queue's timeout."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..config import QueueConfig
from ..core._aio import is_async_callable
from ..errors import InvalidJobError
from ..job import Job

__all__ = ["HandlerRunner"]

AnyHandler = Callable[[Job], Awaitable[Any] | Any]


class HandlerRunner:
    """Runs handlers for a worker.

    Args:
        handler: one handler, or a mapping from job name to handler.
        config: the queue's settings (timeout, largest result).
        executor: gives the thread pool in which plain `def` handlers run.
    """

    def __init__(
        self,
        handler: AnyHandler | Mapping[str, AnyHandler],
        config: QueueConfig,
        executor: Callable[[], ThreadPoolExecutor],
    ) -> None:
        # decided once here, not per job: the hot path is one attribute read
        self._by_name = handler if isinstance(handler, Mapping) else None
        self._single = None if isinstance(handler, Mapping) else handler
        self._single_async = self._single is not None and is_async_callable(self._single)
        self._queue = config.name
        self._timeout = config.timeout
        self._executor = executor
        self._is_async: dict[int, bool] = {}

    def _handler_for(self, job: Job) -> AnyHandler:
        assert self._by_name is not None
        handler = self._by_name.get(job.name)
        if handler is None:
            known = sorted(self._by_name)
            shown = ", ".join(map(repr, known[:20])) + (", ..." if len(known) > 20 else "")
            raise InvalidJobError(
                f"no handler for job name {job.name!r} on queue {self._queue!r} "
                f"(known: {shown or 'none'})"
            )
        return handler

    async def _call(self, handler: AnyHandler, job: Job) -> Any:
        is_async = self._is_async.get(id(handler))
        if is_async is None:
            is_async = self._is_async[id(handler)] = is_async_callable(handler)
        if is_async:
            return await handler(job)
        loop = asyncio.get_running_loop()
        # the thread sees the job as current (contextvars copied into it)
        ctx = contextvars.copy_context()
        result = await loop.run_in_executor(self._executor(), ctx.run, handler, job)
        if inspect.isawaitable(result):  # a plain callable that returned a coroutine
            result = await result
        return result

    @property
    def direct(self) -> AnyHandler | None:
        """The handler to await as it is, when there is one async handler and no timeout."""
        return self._single if self._single_async and self._timeout is None else None

    async def aclose(self) -> None:
        """Nothing to stop: the worker owns the thread pool (an `IsolatedRunner` stops its
        child processes here)."""

    async def run(self, job: Job) -> Any:
        """Run the job's handler (the caller sets the current job); return its result.

        Raises:
            InvalidJobError: no handler for the job's name.
            TimeoutError: the queue's timeout passed (the handler was cancelled; a plain
                `def` handler's thread cannot be stopped and runs on, its result ignored).
            Exception: whatever the handler raised.
        """
        handler = self._single or self._handler_for(job)
        timeout = self._timeout
        if timeout is None:
            return await self._call(handler, job)
        cm = asyncio.timeout(timeout)
        try:
            async with cm:
                return await self._call(handler, job)
        except Exception as exc:
            if cm.expired():
                raise TimeoutError(f"job timed out after {timeout:g}s") from exc
            raise
