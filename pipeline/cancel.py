"""Cancelling a sector run: `cancel_run(run_id)` and `python -m pipeline cancel RUN_ID`.

In this order, so that no step races with the pipeline:

1. **Mark** the run `cancelled` (one conditional UPDATE of its row, `cancelled_at` set). From
   the commit on, in every process: a model call of the run is refused before it is sent
   (`pipeline.cancelled.RunCancelGuard`, the last guard before a call), nothing is enqueued for
   it (`pipeline.flow.enqueue_many`), and a job of it that starts ends at once
   (`pipeline.stages.base.make_handler`); a fan-in or a failure hook leaves its status alone.
   A run that already ended (completed, failed, budget_exceeded) is refused
   (`CancelRefusedError`); cancelling a cancelled run again is allowed and changes nothing.
2. **Sweep** its jobs: every job id it may have, from its `job_status` rows and from its
   domain rows (job ids derive from what they work on, `pipeline.job_ids`), is cancelled
   with `Queue.cancel(..., children=True)`, rankings first: a ranking waiting for its stocks'
   trees is removed with every job of them in one atomic step, so no parent of the tree runs
   afterwards; a waiting or delayed job is removed (its row is marked `cancelled`), a running
   one is signalled wherever its worker runs (it stops, its row becomes `cancelled` through
   the mirror).

Why no job escapes: an enqueuer adds its jobs, writes their rows, then checks the run again
(after its domain rows committed). If that check saw the run not cancelled, it read before
the mark committed, so the jobs, their rows and their domain rows all existed before the
sweep read them: the sweep cancels them. Otherwise the enqueuer withdraws them itself. A job
that still starts (a handler that read the run just before the mark) makes no model call
after the mark, and the one it had in flight, if any, is stopped by the sweep's signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from jobqueue import CancelOutcome, JobQueueError
from pipeline.cancelled import withdraw_jobs
from pipeline.cli_args import cut
from pipeline.flow import validate_payload
from pipeline.job_ids import default_job_id
from pipeline.runtime import Runtime, get_runtime
from pipeline.webhooks.events import emit_run_ended

__all__ = ["CancelRefusedError", "CancelResult", "cancel_run", "run_job_ids", "sweep_run"]

#: Statuses of a run that has not ended: only these can be cancelled.
CANCELLABLE = ("researching", "awaiting_approval", "in_progress")


class CancelRefusedError(JobQueueError, ValueError):
    """The run cannot be cancelled: there is no such run, or it already ended.

    Attributes:
        run_id: The run asked for.
        status: Its status (`completed`, `failed`, `budget_exceeded`), None when there is no
            such run.
    """

    def __init__(self, run_id: str, status: str | None) -> None:
        if status is None:  # the id as given: cut, a 10 KB one is not echoed whole
            message = f"no run {cut(run_id, 80)}"
        else:
            message = f"run {run_id} already ended ({status}); only a running run is cancelled"
        super().__init__(message)
        self.run_id = run_id
        self.status = status


@dataclass(frozen=True)
class CancelResult:
    """What `cancel_run` did.

    Attributes:
        run_id: The run.
        status: Its status now (`cancelled`).
        cancelled_before: True when an earlier call had cancelled it already.
        removed: Jobs removed from their queues (they were waiting or delayed).
        signalled: Running jobs signalled to stop (each ends `cancelled`, or `completed`
            when it finished before the signal reached it).
        finished: Jobs of the run that had ended already.
    """

    run_id: UUID
    status: str
    cancelled_before: bool
    removed: tuple[str, ...] = ()
    signalled: tuple[str, ...] = ()
    finished: int = 0

    def lines(self) -> list[str]:
        """What was done, as printed by `python -m pipeline cancel`."""
        head = "was cancelled already" if self.cancelled_before else "cancelled"
        out = [f"run {self.run_id} {head}"]
        out.append(f"jobs removed from their queues: {len(self.removed)}")
        out += [f"  {j}" for j in self.removed]
        out.append(f"running jobs signalled to stop: {len(self.signalled)}")
        out += [f"  {j}" for j in self.signalled]
        out.append(f"jobs that had ended already: {self.finished}")
        out.append(f"status: {self.status}")
        return out


_DOMAIN_IDS = """
SELECT 'sub' AS kind, ss.id, 0 AS attempt FROM sub_sector ss WHERE ss.sector_analysis_id = $1
UNION ALL
SELECT 'stock', s.id, GREATEST(s.rejections + 1, $2) FROM stock s
  JOIN sub_sector ss ON ss.id = s.sub_sector_id
  WHERE ss.sector_analysis_id = $1 AND (s.status <> 'ranked' OR s.rank <= $3)
"""


def _job(job_type: str, payload: dict[str, object]) -> tuple[str, str]:
    return job_type, default_job_id(job_type, validate_payload(job_type, payload))


async def run_job_ids(rt: Runtime, run_id: UUID) -> list[tuple[str, str]]:
    """Every `(queue, job id)` the run may have: from its status rows, and derived from its
    domain rows (a job whose row is not written yet is found all the same).

    Args:
        rt: The runtime.
        run_id: The run.

    Returns:
        The pairs, without duplicates, in stage order.
    """
    s = rt.settings
    found = [
        _job("sector-research", {"sector_analysis_id": run_id, "user_id": "-", "sector_name": "-"})
    ]
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT job_id, coalesce(queue, job_type) AS queue FROM job_status "
            "WHERE related_id = $1 ORDER BY created_at, job_id",
            str(run_id),
        )
        domain = await conn.fetch(_DOMAIN_IDS, run_id, s.max_rejections, s.stocks_to_analyze)
    # every ranking first, then each stock's tree parents first: cancelled with their flows
    # (`children=True`), the jobs under them are gone by the time their own ids come
    for r in sorted(domain, key=lambda r: r["kind"] != "sub"):
        if r["kind"] == "sub":
            found.append(_job("stock-ranking", {"sub_sector_id": r["id"]}))
        else:
            found.append(_job("format-insights", {"stock_id": r["id"]}))
            found.append(_job("judge-review", {"stock_id": r["id"]}))
            found += [
                _job("stock-analysis", {"stock_id": r["id"], "attempt": a})
                # attempts go up to max_rejections; a payload allows at most 10
                for a in range(1, min(r["attempt"], 10) + 1)
            ]
    found += [(r["queue"], r["job_id"]) for r in rows]
    return list(dict.fromkeys(found))


async def sweep_run(rt: Runtime, run_id: UUID) -> dict[str, CancelOutcome]:
    """Cancel every job the run may have, each with its flow under it, rankings first (the
    sweep of `cancel_run`; also run when a job of a cancelled run starts all the same, so the
    flow it is part of ends with it rather than waiting or failing).

    Returns:
        What `Queue.cancel` did, by job id.
    """
    return await withdraw_jobs(rt.queues, rt.pool, await run_job_ids(rt, run_id), children=True)


async def cancel_run(run_id: UUID | str, *, runtime: Runtime | None = None) -> CancelResult:
    """Cancel a sector run: mark it `cancelled`, then cancel every job of it still waiting,
    delayed or running, on every machine (see the module's description for the order).

    From the moment the run is marked, no model call of it is sent (a call already in flight
    finishes, or stops with its job), nothing is enqueued for it, and a job of it that starts
    ends at once. Calling it again for a cancelled run is allowed: it sweeps again and
    reports `cancelled_before`.

    Args:
        run_id: The run (`sector_analysis` id).
        runtime: The runtime to use (default: the process's, from the environment).

    Returns:
        What was done, and the run's status (`cancelled`).

    Raises:
        CancelRefusedError: No such run, or it already ended (completed, failed,
            budget_exceeded): nothing is changed.
    """
    try:
        rid = UUID(str(run_id))
    except ValueError:
        raise CancelRefusedError(str(run_id), None) from None
    rt = runtime or await get_runtime()
    marked = await rt.pool.fetchval(
        "UPDATE sector_analysis SET status = 'cancelled', cancelled_at = now() "
        "WHERE id = $1 AND status = ANY($2::text[]) RETURNING true",
        rid,
        list(CANCELLABLE),
    )
    status = "cancelled"
    if not marked:
        status = await rt.pool.fetchval("SELECT status FROM sector_analysis WHERE id = $1", rid)
        if status != "cancelled":
            raise CancelRefusedError(str(rid), status)
    # again when cancelled before: a cancel that died here is completed by the next (one job)
    await emit_run_ended(rt, rid, status)
    outcomes = await sweep_run(rt, rid)
    return CancelResult(
        run_id=rid,
        status=status,
        cancelled_before=not marked,
        removed=_with(outcomes, "removed"),
        signalled=_with(outcomes, "signalled"),
        finished=len(_with(outcomes, "finished")),
    )


def _with(outcomes: dict[str, CancelOutcome], outcome: CancelOutcome) -> tuple[str, ...]:
    return tuple(j for j, o in outcomes.items() if o == outcome)
