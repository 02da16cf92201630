"""What a worker's upkeep may see and ask of it: the jobs it runs now, and its counters.

The lease renewal, the cancel listener and the heartbeat run beside the worker's main loop.
They talk to it only through these two objects, never through the worker's own attributes:
`RunningJobs` (which jobs run, with which lease token; stop one whose lease was lost or that
someone cancelled) and `WorkerStats` (what the heartbeat publishes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

from ..job import Job

__all__ = ["RunningJobs", "WorkerStats"]


class RunningJobs:
    """The jobs a worker runs now, each with the task running its handler."""

    __slots__ = ("_jobs", "_lost")

    def __init__(self) -> None:
        self._jobs: dict[str, tuple[Job, asyncio.Task[None]]] = {}
        self._lost: set[str] = set()

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def __iter__(self) -> Iterator[Job]:
        return iter([job for job, _ in self._jobs.values()])

    def add(self, job: Job, task: asyncio.Task[None]) -> None:
        """Record a job whose handler `task` just started."""
        self._jobs[job.id] = (job, task)

    def discard(self, job_id: str) -> bool:
        """Forget a job whose handler ended; True when its lease had been lost meanwhile."""
        self._jobs.pop(job_id, None)
        if job_id in self._lost:
            self._lost.discard(job_id)
            return True
        return False

    def ids(self) -> list[str]:
        """The ids of the running jobs."""
        return list(self._jobs)

    def leases(self) -> list[tuple[str, str]]:
        """(job id, lease token) of every running job, for a renewal."""
        return [(job_id, job.token or "") for job_id, (job, _) in self._jobs.items()]

    def lose(self, job_id: str) -> bool:
        """The lease on this job is gone (another worker may run it now): stop its handler,
        whose outcome will not be reported. False when the job is not running here."""
        entry = self._jobs.get(job_id)
        if entry is None:
            return False
        self._lost.add(job_id)
        entry[1].cancel()
        return True

    def cancel(self, job_id: str, reason: str) -> bool:
        """Someone asked to cancel this job: stop its handler; the job fails as CANCELLED.
        False when the job is not running here (or was asked already)."""
        entry = self._jobs.get(job_id)
        if entry is None or entry[0].cancel_reason is not None:
            return False
        entry[0].cancel_reason = reason or "cancelled"
        entry[1].cancel()
        return True

    def stop_all(self) -> None:
        """Stop every handler (shutdown past the grace period: their jobs are handed back)."""
        for _, task in list(self._jobs.values()):
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
        degraded: why its main loop cannot reach Redis now (None when it can).
    """

    name: str
    queue: str
    concurrency: int
    completed: int = 0
    failed: int = 0
    last_take: float = 0.0
    degraded: str | None = None
