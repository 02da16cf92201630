"""Burst mode for tests: run a worker until its queue has nothing left to do, then return.

As RQ's `worker.work(burst=True)` and arq's `Worker(burst=True)` / `run_check()`: the test adds
jobs, awaits `run_until_empty(queue, handler)`, and asserts on what ran. Nothing sleeps: the
queue's counts are read again whenever its event stream says something changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core._aio import raise_if_cancelling
from ..core.states import JobState
from ..errors import ConfigError, JobFailedError
from ..events import QueueEvents, last_event_id
from ..job import Job
from ..queue import Queue
from ..worker import Handler, Worker
from ..worker.hooks import Hook

__all__ = ["BurstResult", "run_until_empty"]

# an idle read of the event stream re-reads the counts after this long: the safety net for a
# queue whose events are off (events_maxlen=0)
_RECHECK = 1.0


@dataclass(frozen=True, slots=True)
class BurstResult:
    """What a `run_until_empty` worker did, and the queue's counts when it returned.

    Attributes:
        completed: the jobs it completed, in order (`job.result` holds each result).
        failed: the jobs that failed for good (`job.error_type`, `job.error_message`).
        retried: one entry per failed attempt that will run again (the job as it was then).
        errors: the exception of each job's last failed attempt, by job id.
        counts: `queue.get_job_counts()` when the queue was found empty.
    """

    completed: list[Job] = field(default_factory=list)
    failed: list[Job] = field(default_factory=list)
    retried: list[Job] = field(default_factory=list)
    errors: dict[str, BaseException] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def results(self) -> dict[str, Any]:
        """Result of each completed job, by job id."""
        return {job.id: job.result for job in self.completed}


def _empty(counts: Mapping[str, int], delayed: bool) -> bool:
    busy = counts["waiting"] + counts["active"] + counts["paused"]
    return busy == 0 and (not delayed or counts["delayed"] == 0)


async def run_until_empty(
    queue: Queue,
    handler: Handler | Mapping[str, Handler] | None = None,
    *,
    concurrency: int = 1,
    delayed: bool = True,
    timeout: float = 30.0,
    raise_on_failure: bool = False,
    **worker_options: Any,
) -> BurstResult:
    """Run a `Worker` on `queue` until no job is waiting, active, paused or (with `delayed`)
    delayed; then stop it and return what it did.

    Retries are waited for: a failed attempt that will run again is a delayed job. Jobs that
    handlers add to the same queue run too. The queue may be on any server, or on
    `fake_redis()`.

        await queue.add("welcome", {"to": "ada@example.com"})
        result = await run_until_empty(queue, send_email)
        assert [job.result for job in result.completed] == ["sent"]

    Args:
        queue: the queue to work on.
        handler: as `Worker`'s (default: the tasks registered on the queue).
        concurrency: jobs run at the same time.
        delayed: also wait for delayed jobs (retries with backoff, `delay=`) to become due and
            run; False returns once nothing is ready or running, leaving delayed jobs as they
            are.
        timeout: seconds before giving up (a bound on a hang: jobs left are handed back).
        raise_on_failure: raise `JobFailedError` for the first job that failed for good,
            from the handler's exception (as arq's `run_check`).
        **worker_options: more `Worker` options (`on_completed` and the other hooks, `name`,
            `shutdown_grace`...); `handle_signals` defaults to False.

    Returns:
        The jobs completed, failed and retried, the errors, and the final counts.

    Raises:
        TimeoutError: the queue was not empty after `timeout` seconds (the message has the
            counts; a paused queue is never empty).
        JobFailedError: with `raise_on_failure`, a job failed for good.
        ConfigError: a bad `timeout`, or a bad worker option.
    """
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ConfigError(f"timeout must be a finite number of seconds > 0, got {timeout!r}")
    result = BurstResult()
    worker = _burst_worker(queue, handler, concurrency, result, worker_options)
    # the stream position before the counts: whatever changes after the read is in the stream
    events = QueueEvents(
        queue, last_id=await last_event_id(queue.redis, queue.keys.events), block=_RECHECK
    )
    task = asyncio.create_task(worker.run(), name=f"jq-burst-{queue.name}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    finished = False
    try:
        counts = await _counts(queue)
        while not _empty(counts, delayed):
            # a deadline of our own, not asyncio.timeout: on Python 3.11 a client not made by
            # `connect` (fakeredis, a given one) can drop the cancellation a timeout relies on
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(
                    f"queue {queue.name!r} still had work after {timeout}s: {counts}"
                )
            await _next_change(events, task, left)
            counts = await _counts(queue)
        finished = True
    finally:
        await events.close()
        # when empty nothing runs; otherwise running jobs are handed back at once
        await worker.close(force=not finished)
        if finished:
            await task  # an error of the worker itself surfaces here
        else:
            with contextlib.suppress(Exception):
                await task
    result.counts.update(counts)
    if raise_on_failure and result.failed:
        job = result.failed[0]
        raise JobFailedError(
            job.id, job.error_message or "", job.error_type
        ) from result.errors.get(job.id)
    return result


def _burst_worker(
    queue: Queue,
    handler: Handler | Mapping[str, Handler] | None,
    concurrency: int,
    result: BurstResult,
    options: dict[str, Any],
) -> Worker:
    """A worker whose outcome hooks record into `result`, then call the caller's hooks."""
    theirs_completed: Hook | None = options.pop("on_completed", None)
    theirs_failed: Hook | None = options.pop("on_failed", None)

    def on_completed(job: Job, value: Any) -> Any:
        result.completed.append(job)
        return None if theirs_completed is None else theirs_completed(job, value)

    def on_failed(job: Job, error: BaseException) -> Any:
        result.errors[job.id] = error
        (result.failed if job.state == JobState.FAILED else result.retried).append(job)
        return None if theirs_failed is None else theirs_failed(job, error)

    options.setdefault("handle_signals", False)
    return Worker(
        queue,
        handler,
        concurrency=concurrency,
        on_completed=on_completed,
        on_failed=on_failed,
        **options,
    )


async def _counts(queue: Queue) -> dict[str, int]:
    counts = await queue.get_job_counts()
    raise_if_cancelling()  # the caller's cancel, should the client have dropped it
    return counts


async def _next_change(events: QueueEvents, worker: asyncio.Task[None], timeout: float) -> None:
    """Return after the next batch of events, an idle read or `timeout` seconds; raise if the
    worker ended."""
    read = asyncio.ensure_future(events.read())
    try:
        await asyncio.wait({read, worker}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not read.done():
            read.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await read
    if worker.done():
        worker.result()  # its exception, if it raised
        raise RuntimeError("the worker stopped before the queue was empty")
    if not read.cancelled():
        read.result()  # a Redis error of the read
