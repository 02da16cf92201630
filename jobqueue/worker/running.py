"""What a worker's upkeep may see and ask of it: the jobs it runs now, and its counters.

The lease renewal, the cancel listener and the heartbeat run beside the worker's main loop.
They talk to it only through these two objects, never through the worker's own attributes:
`RunningJobs` (which jobs run, with which lease token; stop one whose lease was lost or that
someone cancelled) and `WorkerStats` (what the heartbeat publishes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..job import Job

__all__ = ["RunningJobs", "WorkerStats"]


class RunningJobs(dict[str, tuple[Job, "asyncio.Task[None]"]]):
    """The jobs a worker runs now: job id -> (job, the task running its handler).

    A dict, so that the worker's per-job bookkeeping is plain dict operations; the upkeep
    uses the methods below.
    """

    __slots__ = ("lost",)

    def __init__(self) -> None:
        super().__init__()
        self.lost: set[str] = set()
        """Ids of running jobs whose lease was lost (their outcome is not reported)."""

    def ids(self) -> list[str]:
        """The ids of the running jobs."""
        return list(self)

    def leases(self) -> list[tuple[str, str]]:
        """(job id, lease token) of every running job, for a renewal."""
        return [(job_id, job.token or "") for job_id, (job, _) in self.items()]

    def add(self, job: Job, task: asyncio.Task[None], on_end: Callable[[], None]) -> None:
        """A job started in `task`. Its entry leaves when the task ends, even when the task
        was cancelled before it ran at all (its body, which removes the entry, never runs
        then); `on_end` is called after."""
        self[job.id] = (job, task)

        def ended(done: asyncio.Task[None], job_id: str = job.id) -> None:
            self.release(job_id, done)
            on_end()

        task.add_done_callback(ended)

    def release(self, job_id: str, task: asyncio.Task[Any] | None) -> None:
        """The run of `job_id` in `task` ended: its entry leaves, unless the job runs here
        again under a newer lease (taken again after this run's lease was lost)."""
        entry = self.get(job_id)
        if entry is not None and entry[1] is task:
            del self[job_id]
            self.lost.discard(job_id)

    def lose(self, job_id: str, token: str | None = None) -> bool:
        """The lease `token` on this job is gone (another worker may run it now): stop its
        handler, whose outcome will not be reported. False when the job is not running here,
        or runs under another lease (this worker took it again since the lost one)."""
        entry = self.get(job_id)
        if entry is None or (token is not None and entry[0].token != token):
            return False
        self.lost.add(job_id)
        entry[1].cancel()
        return True

    def cancel(self, job_id: str, reason: str) -> bool:
        """Someone asked to cancel this job: stop its handler; the job fails as CANCELLED.
        False when the job is not running here (or was asked already)."""
        entry = self.get(job_id)
        if entry is None or entry[0].cancel_reason is not None:
            return False
        entry[0].cancel_reason = reason or "cancelled"
        entry[1].cancel()
        return True

    def stop_all(self) -> None:
        """Stop every handler (shutdown past the grace period: their jobs are handed back)."""
        for _, task in list(self.values()):
            task.cancel()


@dataclass(slots=True)
class WorkerStats:
    """What a worker's heartbeat says about it.

    Attributes:
        name: the worker's name.
        queue: the queue it works on.
        concurrency: its slots.
        completed, failed: jobs it finished so far, by outcome.
        last_take: when it last took jobs or reported outcomes (epoch seconds, 0 = never).
        degraded: which of its loops fail now and why (None when none does; see
            `worker.health`).
        degraded_since: when they began to (epoch seconds, 0 = not degraded).
    """

    name: str
    queue: str
    concurrency: int
    completed: int = 0
    failed: int = 0
    last_take: float = 0.0
    degraded: str | None = None
    degraded_since: float = 0.0
