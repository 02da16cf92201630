"""What a worker's upkeep may see and ask of it: the jobs it runs now, and its counters.

The lease renewal, the cancel listener and the heartbeat run beside the worker's main loop.
They talk to it only through these two objects, never through the worker's own attributes:
`RunningJobs` (which jobs run, with which lease token; stop one whose lease was lost or that
someone cancelled) and `WorkerStats` (what the heartbeat publishes).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

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

    def lose(self, job_id: str) -> bool:
        """The lease on this job is gone (another worker may run it now): stop its handler,
        whose outcome will not be reported. False when the job is not running here."""
        entry = self.get(job_id)
        if entry is None:
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
