"""Queue operations beyond adding and reading jobs, mixed into `Queue`: remove, cancel, drain,
clean, obliterate, retry, promote, job logs, workers and events (limits: `queue_limits`).

Each change of job state is one Lua script (`lua/remove.lua`, `cancel.lua`, `drain.lua`,
`clean.lua`, `retry.lua`, `obliterate.lua`) that also appends its events to the queue's stream.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from .config import QueueConfig
from .core._inputs import cut, finite, job_ref, shown
from .core.codec import text as _s
from .core.connection import scan_slot, server_time
from .core.keys import QueueKeys
from .core.replies import CancelOutcome
from .core.scripts import Scripts
from .core.scripts_ops import CANCEL_OUTCOMES as _CANCEL_OUTCOMES
from .core.states import JobState
from .errors import ConfigError
from .events import QueueEvents
from .workerinfo import WorkerInfo

if TYPE_CHECKING:
    from .job import Job

__all__ = [
    "MAX_LOG_LINES",
    "MAX_LOG_LINE_BYTES",
    "CancelOutcome",
    "QueueOpsMixin",
    "TreeCancelResult",
]

log = logging.getLogger(__name__)

MAX_LOG_LINES = 1000
"""Log lines kept per job (the oldest are dropped)."""
MAX_LOG_LINE_BYTES = 4096
"""Longest log line kept, in bytes of UTF-8 (longer ones are cut and end with `...`)."""

_CLEAN_STATES = frozenset({"completed", "failed", "waiting", "delayed"})
_BATCH = 1000


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(_s(value)) if value not in (None, b"", "") else default
    except ValueError:
        return default


def _truncate(line: str, limit: int = MAX_LOG_LINE_BYTES) -> str:
    raw = line.encode()
    if len(raw) <= limit:
        return line
    return raw[: limit - 3].decode(errors="ignore") + "..."


@dataclass(frozen=True, slots=True)
class TreeCancelResult:
    """What `Queue.cancel_tree` did.

    Attributes:
        outcome: for the job itself, as `Queue.cancel`: "removed", "signalled", "finished"
            or "not_found".
        removed: references `"<queue>:<id>"` of the jobs under it that were removed (they
            had not started).
        signalled: references of the jobs under it that were running and were signalled to
            stop (each ends `failed` with error type `CANCELLED`).
    """

    outcome: CancelOutcome
    removed: tuple[str, ...] = ()
    signalled: tuple[str, ...] = ()


class QueueOpsMixin:
    """Operations of `Queue` that remove, cancel, retry and inspect jobs and workers."""

    # provided by Queue
    redis: Redis
    keys: QueueKeys
    config: QueueConfig
    scripts: Scripts
    prefix: str

    if TYPE_CHECKING:

        @property
        def name(self) -> str: ...

        async def get_job(self, job_id: str) -> Job | None: ...

    # -- removing -------------------------------------------------------------------------

    async def remove(self, job_id: str) -> bool:
        """Delete a job that is not running (with its state and log); emits `removed`.

        Args:
            job_id: the job's id.

        Returns:
            True when it was removed, False when there was no such job.

        Raises:
            QueueStateError: the job is active (cancel it instead).
        """
        return await self.scripts.remove(job_ref(job_id))

    async def cancel(
        self, job_id: str, reason: str = "cancelled", *, children: bool = False
    ) -> CancelOutcome:
        """Cancel a job wherever it is (and, with `children`, every job of its flow under it).

        A waiting, delayed or waiting-children job is removed. An active job is signalled: its
        worker (in any process) cancels the handler at once (pub/sub) or at its next lease
        renewal, and the job ends `failed` with error type `CANCELLED`, without retry. A flow
        child that ends so counts as failed for its parent (its `on_failure` applies).

        Args:
            job_id: the job's id.
            reason: recorded as the job's error message.
            children: also cancel every job under it that has not ended, on any queue of the
                flow, in the same atomic step: parents are removed before their children's
                ends could release them, so no parent of the tree runs afterwards. Without it,
                a cancelled flow parent is removed alone and its children run on.

        Returns:
            For the job itself: "removed", "signalled", "finished" (it had already ended:
            nothing changed) or "not_found".
        """
        if children:
            return (await self.cancel_tree(job_id, reason)).outcome
        job_ref(job_id)
        if not isinstance(reason, str):
            raise ConfigError(f"reason must be a str, got {shown(reason)}")
        outcome = await self.scripts.cancel(job_id, reason or "cancelled")
        log.info("queue %s: cancel of job %s: %s", self.name, cut(job_id, 200), outcome)
        return outcome

    async def cancel_tree(self, job_id: str, reason: str = "cancelled") -> TreeCancelResult:
        """Cancel a job and every job of its flow under it that has not ended, in one atomic
        step (`cancel(job_id, children=True)`), and say which jobs of the tree it reached.

        Args:
            job_id: the job's id.
            reason: recorded as the error message of the jobs cancelled.

        Returns:
            The job's own outcome and the references of the jobs under it removed and
            signalled (a job that ended already is in neither).
        """
        job_ref(job_id)
        if not isinstance(reason, str):
            raise ConfigError(f"reason must be a str, got {shown(reason)}")
        done = await self.scripts.cancel_tree(job_id, reason or "cancelled")
        result = TreeCancelResult(_CANCEL_OUTCOMES[done.root], done.removed, done.signalled)
        log.info(
            "queue %s: cancel of job %s and its children: %s (%d removed, %d signalled)",
            self.name, cut(job_id, 200), result.outcome, len(done.removed), len(done.signalled),
        )  # fmt: skip  # the id is cut: a 10 KB id given by mistake is not logged whole
        return result

    async def drain(self) -> int:
        """Remove every waiting (also prioritized or paused) and delayed job.

        Active and finished jobs are kept. Runs in batches of 1000 (each one atomic).

        Returns:
            The number of jobs removed.
        """
        total = 0
        while True:
            removed, left = await self.scripts.drain(_BATCH)
            total += removed
            if removed == 0 or left == 0:
                break
        if total:
            log.info("queue %s drained: %d job(s) removed", self.name, total)
        return total

    async def clean(self, state: JobState | str, grace: float, limit: int = 1000) -> list[str]:
        """Remove jobs of one state older than `grace` seconds.

        Finished jobs are aged by their finish time, waiting and delayed jobs by their
        creation time (at most `10 * limit` of those are examined per call).

        Args:
            state: "completed", "failed", "waiting" or "delayed".
            grace: minimum age in seconds of the jobs removed (0 = all).
            limit: most jobs removed by this call.

        Returns:
            The ids of the removed jobs.

        Raises:
            ConfigError: a bad state, grace or limit.
        """
        st = str(JobState(state)) if isinstance(state, JobState) else str(state)
        if st not in _CLEAN_STATES:
            raise ConfigError(f"clean state must be one of {sorted(_CLEAN_STATES)}, got {state!r}")
        if (
            isinstance(grace, bool)
            or not isinstance(grace, int | float)
            or not (finite(grace) and grace >= 0)
        ):
            raise ConfigError(f"grace must be a finite number of seconds >= 0, got {grace!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"limit must be an int >= 1, got {limit!r}")
        scan_cap = min(max(limit * 10, 1000), 100_000)
        ids = await self.scripts.clean(
            st, grace_ms=int(grace * 1000), limit=limit, scan_cap=scan_cap
        )
        if ids:
            log.info("queue %s: cleaned %d %s job(s)", self.name, len(ids), st)
        return ids

    async def obliterate(self, force: bool = False) -> int:
        """Delete every key of the queue: jobs, logs, events, settings, heartbeats.

        The queue is first paused atomically (so no job starts), then its keys are deleted by
        SCAN in batches, `meta` last.

        Args:
            force: go ahead even when jobs are active (their workers lose them).

        Returns:
            The number of keys deleted.

        Raises:
            QueueStateError: jobs are active and `force` is False (nothing deleted).
        """
        await self.scripts.obliterate(force=force)
        deleted = 0
        meta = self.keys.meta
        # keys written while a pass runs (a worker finishing a job) may escape it: repeat
        for _ in range(3):
            deleted_now = 0
            batch: list[Any] = []
            # every key of the queue is in its slot: on a cluster, only that node is scanned
            async for key in scan_slot(self.redis, self.keys.all_keys_pattern, key=meta):
                if _s(key) != meta:
                    batch.append(key)
                if len(batch) >= _BATCH:
                    deleted_now += int(await self.redis.unlink(*batch))
                    batch = []
            if batch:
                deleted_now += int(await self.redis.unlink(*batch))
            deleted += deleted_now
            if deleted_now == 0:
                break
        deleted += int(await self.redis.delete(meta))
        log.warning("queue %s obliterated: %d key(s) deleted", self.name, deleted)
        return deleted

    # -- retrying -------------------------------------------------------------------------

    async def retry_job(self, job_id: str) -> None:
        """Move a failed job back to waiting; attempts restart from 0, the error is kept.

        Raises:
            JobNotFoundError: no such job.
            QueueStateError: the job has not failed.
        """
        await self.scripts.retry_job(job_ref(job_id))

    async def retry_failed(self, limit: int | None = None) -> int:
        """Move failed jobs (oldest first) back to waiting, attempts reset to 0.

        Only jobs that failed before the call are retried, so jobs failing again meanwhile are
        not retried twice.

        Args:
            limit: most jobs retried (None = all).

        Returns:
            The number of jobs retried.
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise ConfigError(f"limit must be an int or None, got {shown(limit)}")
        sec, usec = await server_time(self.redis, key=self.keys.meta)
        cutoff = int(sec) * 1000 + int(usec) // 1000
        left = math.inf if limit is None else limit
        total = 0
        while left > 0:
            batch = int(min(_BATCH, left))
            retried, examined = await self.scripts.retry_failed(batch=batch, upto_ms=cutoff)
            total += retried
            left -= retried
            if examined < batch:
                break
        if total:
            log.info("queue %s: %d failed job(s) retried", self.name, total)
        return total

    async def promote(self, job_id: str) -> None:
        """Make a delayed job ready to run now (its delay is dropped; it keeps its priority
        and group); emits `waiting`.

        Raises:
            JobNotFoundError: no such job.
            QueueStateError: the job is not delayed (e.g. it became due and started).
        """
        await self.scripts.promote(job_ref(job_id))
        log.info("queue %s: delayed job %s promoted", self.name, job_id)

    async def get_failed_jobs(self, limit: int = 20) -> list[Job]:
        """The most recently failed jobs, newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"limit must be an int >= 1, got {shown(limit)}")
        ids = await self.redis.zrevrange(self.keys.failed, 0, max(0, limit - 1))
        jobs = []
        for raw in ids:
            job = await self.get_job(_s(raw))
            if job is not None:
                jobs.append(job)
        return jobs

    # -- logs -----------------------------------------------------------------------------

    async def add_job_log(self, job_id: str, line: str) -> int:
        """Append a line to a job's log (the newest 1000 lines of at most 4 KB are kept).

        Returns:
            The number of lines in the log.

        Raises:
            JobNotFoundError: no such job.
        """
        return await self.scripts.log(
            job_ref(job_id), _truncate(str(line)), max_lines=MAX_LOG_LINES
        )

    async def get_job_logs(self, job_id: str, start: int = 0, end: int = -1) -> list[str]:
        """Lines `start..end` (inclusive, negative from the end) of a job's log, oldest first."""
        for what, index in (("start", start), ("end", end)):
            if isinstance(index, bool) or not isinstance(index, int):
                raise ConfigError(f"{what} must be an int, got {shown(index)}")
        key = self.keys.logs(job_ref(job_id))
        return [_s(x) for x in await self.redis.lrange(key, start, end)]

    # -- workers, limits, events ----------------------------------------------------------

    async def get_workers(self) -> list[WorkerInfo]:
        """The live workers of this queue (whose heartbeat has not expired), by name."""
        names = [_s(n) for n in await self.redis.zrange(self.keys.worker_set, 0, -1)]
        if not names:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self.keys.worker(name))
            hashes = await pipe.execute()
        live, dead = [], []
        for name, h in zip(names, hashes, strict=True):
            if h:
                live.append(WorkerInfo.from_hash(h))
            else:
                dead.append(name)
        if dead:
            await self.redis.zrem(self.keys.worker_set, *dead)
        return sorted(live, key=lambda w: w.name)

    def events(self, *, last_id: str = "$") -> QueueEvents:
        """An iterator over the queue's events from `last_id` ("$" = from now on).

        See `QueueEvents`; close it when done (or use `async with`).
        """
        return QueueEvents(self, last_id=last_id)
