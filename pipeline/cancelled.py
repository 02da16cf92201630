"""What a cancelled run refuses: its model calls, its enqueues and the start of its jobs.

A run is cancelled by one UPDATE of its `sector_analysis` row (`pipeline.cancel.cancel_run`);
everything here reads that row, so the cancel holds in every process at once:

* `RunCancelGuard` sits in the `GuardedLLM` chain (the innermost guard, right before the call
  is sent): a model call of a cancelled run is refused with `RunCancelledError` before
  anything is sent. A call it admitted read the run before the cancel committed: that call
  was in flight when the cancel returned.
* `pipeline.flow.enqueue_many` enqueues nothing for a cancelled run (`cancelled_runs`), and
  checks again after adding, so a job added while the cancel swept the queues is withdrawn.
* `pipeline.stages.base.make_handler` ends a job of a cancelled run at its start.

`RunCancelledError` is classified CANCELLED and never retried: the job ends `cancelled`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

import asyncpg

from jobqueue import CancelOutcome, ErrorType, Queue
from pipeline.ai.base import LLMError, LLMResult
from pipeline.ai.guard import LLMCall
from pipeline.status import cancel_job_rows

log = logging.getLogger(__name__)

__all__ = [
    "RUN_CANCELLED_REASON",
    "RunCancelGuard",
    "RunCancelledError",
    "cancelled_runs",
    "run_is_cancelled",
    "withdraw_jobs",
]

RUN_CANCELLED_REASON = "run cancelled"
"""The error message of jobs a run's cancel stopped or removed."""


class RunCancelledError(LLMError):
    """The run was cancelled: a model call of it is refused (nothing is sent), an enqueue for
    it is refused, a job of it ends at its start. Classified CANCELLED, never retried.

    Args:
        run_id: The cancelled run.
        what: What was refused, for the message.
    """

    def __init__(self, run_id: UUID | str, what: str = "") -> None:
        message = f"run {run_id} is cancelled" + (f": {what} refused" if what else "")
        super().__init__(message, error_type=ErrorType.CANCELLED, retryable=False)
        self.run_id = str(run_id)
        self.what = what

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as itself (`LLMError.__reduce__` rebuilds the base class)."""
        return (type(self), (self.run_id, self.what))


async def run_is_cancelled(pool: asyncpg.Pool | Any, run_id: UUID | None) -> bool:
    """Whether the run is cancelled (False for no run, or a run that is gone).

    Args:
        pool: A pool or connection.
        run_id: The run.
    """
    if run_id is None:
        return False
    cancelled = await pool.fetchval(
        "SELECT status = 'cancelled' FROM sector_analysis WHERE id = $1", run_id
    )
    return bool(cancelled)


async def cancelled_runs(pool: asyncpg.Pool | Any, run_ids: Iterable[UUID | str]) -> set[str]:
    """The cancelled ones among `run_ids`, as strings; one query.

    Args:
        pool: A pool or connection.
        run_ids: Runs (ids as UUIDs or strings).
    """
    ids = sorted({str(r) for r in run_ids})
    if not ids:
        return set()
    rows = await pool.fetch(
        "SELECT id FROM sector_analysis WHERE id = ANY($1::uuid[]) AND status = 'cancelled'", ids
    )
    return {str(r["id"]) for r in rows}


class RunCancelGuard:
    """The `Guard` that refuses every model call of a cancelled run before it is sent.

    It reads the run's row at each call, so a job that was already running when its run was
    cancelled makes no further call (its call in flight, if any, finishes). Put it last in the
    chain: nothing that may wait (a reservation) stands between its check and the call.

    Args:
        pool: The PostgreSQL pool.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def __repr__(self) -> str:
        return "RunCancelGuard()"

    async def before(self, call: LLMCall) -> None:
        """Refuse the call when its run is cancelled.

        Raises:
            RunCancelledError: The run is cancelled; nothing is sent.
        """
        if await run_is_cancelled(self.pool, call.run_id):
            raise RunCancelledError(call.run_id or "", f"{call.tier} model call")

    async def after(
        self, call: LLMCall, reservation: None, outcome: LLMResult | BaseException
    ) -> None:
        """Nothing to settle."""
        del call, reservation, outcome


async def withdraw_jobs(
    queues: Mapping[str, Queue],
    pool: asyncpg.Pool,
    jobs: Iterable[tuple[str, str]],
    reason: str = RUN_CANCELLED_REASON,
    *,
    children: bool = False,
) -> dict[str, CancelOutcome]:
    """Cancel jobs with `Queue.cancel`, and mark the rows of those no longer in a queue.

    A waiting or delayed job is removed (its row is marked `cancelled` here: no event will
    finish it); a running one is signalled wherever its worker runs (its row becomes
    `cancelled` when its worker ends it, through the status mirror).

    Args:
        queues: The queues by name.
        pool: The PostgreSQL pool.
        jobs: `(queue, job id)` pairs; unknown queues are skipped.
        reason: The cancelled jobs' error message.
        children: cancel each job with every job of its flow under it
            (`Queue.cancel_tree`); list parents first: a job a parent's cancel removed or
            signalled is reported so, and its own turn is skipped.

    Returns:
        What `Queue.cancel` did, by job id.
    """
    outcomes: dict[str, CancelOutcome] = {}
    pairs = [(queues[q], job_id) for q, job_id in dict.fromkeys(jobs) if q in queues]
    for q, job_id in pairs:
        if job_id in outcomes:
            continue
        if not children:
            outcomes[job_id] = await q.cancel(job_id, reason)
            continue
        tree = await q.cancel_tree(job_id, reason)
        outcomes[job_id] = tree.outcome
        # references are '<queue>:<id>' (a queue name has no ':')
        for ref in tree.removed:
            outcomes.setdefault(ref.partition(":")[2], "removed")
        for ref in tree.signalled:
            outcomes.setdefault(ref.partition(":")[2], "signalled")
    gone = [j for j, o in outcomes.items() if o in ("removed", "not_found")]
    async with pool.acquire() as conn:
        await cancel_job_rows(gone, reason, conn=conn)
    return outcomes
