"""In-process lifecycle hooks of a worker, as BullMQ's worker events and Celery's signals.

A hook is a plain function or a coroutine function. A plain one is called in the worker's
event loop (keep it quick); a coroutine is run as a task of its own, so a slow hook never holds
up the worker. An exception in a hook is logged and otherwise ignored: hooks observe, they
cannot break the worker.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Any

from ..core.replies import Outcome
from ..core.states import JobState
from ..errors import ConfigError
from ..job import Job

__all__ = ["Hook", "HookRunner", "WorkerHooks"]

log = logging.getLogger("jobqueue.worker")

Hook = Callable[..., Awaitable[None] | None]
"""A hook: a plain function or a coroutine function (its return value is ignored)."""


@dataclass(frozen=True, slots=True)
class WorkerHooks:
    """The hooks of one worker (each optional).

    Attributes:
        on_active: `(job)` when a job's handler starts.
        on_progress: `(job, progress)` after the handler recorded progress.
        on_completed: `(job, result)` once the job's completion is recorded in Redis.
        on_failed: `(job, error)` once a failed attempt is recorded: `job.state` is `failed`
            when it failed for good, `delayed` when it will run again.
        on_stalled: `(job_id, state)` when this worker's stall check brought back a job whose
            worker died (`state` "waiting"), or failed it after too many stalls ("failed").
        on_error: `(error)` when the worker meets an error of its own (Redis unreachable, a
            failover...): it logs, backs off and carries on.
    """

    on_active: Hook | None = None
    on_progress: Hook | None = None
    on_completed: Hook | None = None
    on_failed: Hook | None = None
    on_stalled: Hook | None = None
    on_error: Hook | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and not callable(value):
                raise ConfigError(f"{f.name} must be a function, got {value!r}")

    def merged(self, other: WorkerHooks) -> WorkerHooks:
        """These hooks and `other`'s: where both set one, both run (these first), each on its
        own, so one's exception does not keep the other from running."""
        both: dict[str, Hook | None] = {}
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            both[f.name] = _chain(mine, theirs) if mine and theirs else mine or theirs
        return WorkerHooks(**both)

    @property
    def any_outcome(self) -> bool:
        """Whether on_completed or on_failed is set (the worker then keeps what they need)."""
        return self.on_completed is not None or self.on_failed is not None


def _chain(first: Hook, second: Hook) -> Hook:
    def chained(*args: Any) -> Awaitable[None] | None:
        pending: list[Awaitable[Any]] = []
        for hook in (first, second):
            try:
                result = hook(*args)
            except Exception:
                log.exception("worker hook %s raised", getattr(hook, "__name__", hook))
                continue
            if inspect.isawaitable(result):
                pending.append(result)
        return _await_each(pending) if pending else None

    chained.__name__ = f"{getattr(first, '__name__', 'hook')}+{getattr(second, '__name__', 'hook')}"
    return chained


async def _await_each(pending: list[Awaitable[Any]]) -> None:
    for awaitable in pending:
        try:
            await awaitable
        except Exception:
            log.exception("worker hook raised")


class HookRunner:
    """Calls hooks safely and keeps the tasks of coroutine hooks until they end."""

    def __init__(self, hooks: WorkerHooks) -> None:
        self.hooks = hooks
        self._tasks: set[asyncio.Task[Any]] = set()

    def fire(self, hook: Hook | None, *args: Any) -> None:
        """Call `hook(*args)` if set; a coroutine it returns runs as a task."""
        if hook is None:
            return
        try:
            result = hook(*args)
        except Exception:
            log.exception("worker hook %s raised", getattr(hook, "__name__", hook))
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(self._guard(hook, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _guard(self, hook: Hook, awaitable: Awaitable[Any]) -> None:
        try:
            await awaitable
        except Exception:
            log.exception("worker hook %s raised", getattr(hook, "__name__", hook))

    def outcome(self, outcome: Outcome, code: int, job: Job, value: Any) -> None:
        """Fire on_completed / on_failed for an outcome `finish` recorded with `code` (1: the
        job ended, 2: it will run again); `value` is the result or the exception."""
        if outcome.kind in ("h", "w"):  # handed back, or waiting for children: not an end
            return
        if outcome.kind == "c":
            job.state = JobState.COMPLETED
            job.result = value
            self.fire(self.hooks.on_completed, job, value)
            return
        job.state = JobState.FAILED if code == 1 else JobState.DELAYED
        job.error_type, job.error_message = outcome.error_type, outcome.payload
        self.fire(self.hooks.on_failed, job, value)

    def progress_callback(self) -> Callable[[Job, int], None] | None:
        """What `Job` calls after it recorded progress (None when there is no such hook)."""
        hook = self.hooks.on_progress
        if hook is None:
            return None
        return lambda job, progress: self.fire(hook, job, progress)

    async def drain(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for coroutine hooks still running, then cancel them."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
