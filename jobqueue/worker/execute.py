"""Running one job's handler: the handler for its name, async or in the thread pool, under the
queue's timeout, with the job as `get_current_job()`, its result checked as JSON."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..config import QueueConfig
from ..core._aio import is_async_callable
from ..core.codec import decode_envelope, dumps
from ..core.replies import TakenJob
from ..core.states import JobState
from ..errors import InvalidJobError
from ..job import Job, JobQueue, current_job

__all__ = ["HandlerRunner", "job_from_taken"]

AnyHandler = Callable[[Job], Awaitable[Any] | Any]


def job_from_taken(queue: JobQueue, taken: TakenJob) -> Job:
    """The `Job` a handler gets for a job `take` leased to this worker.

    Raises:
        InvalidJobError: the stored envelope is not a job (it cannot run).
    """
    return Job(
        queue,
        taken.job_id,
        decode_envelope(taken.envelope),
        state=JobState.ACTIVE,
        run_state={"a": taken.attempt - 1},
        token=taken.token,
        attempt=taken.attempt,
    )


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
        self._handler = handler
        self._config = config
        self._executor = executor
        self._is_async: dict[int, bool] = {}

    def _handler_for(self, job: Job) -> AnyHandler:
        if not isinstance(self._handler, Mapping):
            return self._handler
        handler = self._handler.get(job.name)
        if handler is None:
            known = sorted(self._handler)
            shown = ", ".join(map(repr, known[:20])) + (", ..." if len(known) > 20 else "")
            raise InvalidJobError(
                f"no handler for job name {job.name!r} on queue {self._config.name!r} "
                f"(known: {shown or 'none'})"
            )
        return handler

    async def _call(self, handler: AnyHandler, job: Job) -> Any:
        key = id(handler)
        is_async = self._is_async.get(key)
        if is_async is None:
            is_async = self._is_async[key] = is_async_callable(handler)
        if is_async:
            return await handler(job)
        loop = asyncio.get_running_loop()
        # the thread sees the job as current (contextvars copied into it)
        ctx = contextvars.copy_context()
        result = await loop.run_in_executor(self._executor(), ctx.run, handler, job)
        if inspect.isawaitable(result):  # a plain callable that returned a coroutine
            result = await result
        return result

    async def run(self, job: Job) -> tuple[Any, str]:
        """Run the job's handler; return its result and the result's JSON.

        Raises:
            InvalidJobError: no handler for the job's name, or a result that is not JSON.
            TimeoutError: the queue's timeout passed (the handler was cancelled; a plain
                `def` handler's thread cannot be stopped and runs on, its result ignored).
            Exception: whatever the handler raised.
        """
        handler = self._handler_for(job)
        timeout = self._config.timeout
        with current_job(job):
            if timeout is None:
                result = await self._call(handler, job)
            else:
                cm = asyncio.timeout(timeout)
                try:
                    async with cm:
                        result = await self._call(handler, job)
                except Exception as exc:
                    if cm.expired():
                        raise TimeoutError(f"job timed out after {timeout:g}s") from exc
                    raise
        return result, dumps(result, limit=self._config.max_payload, what="job result")
