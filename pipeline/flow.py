"""Starting and moving runs: `enqueue()`, `start_sector_research()`, `approve_subsector()`.

Every job id is derived from what the job works on, so enqueueing twice (a retried handler,
a double click on "approve") enqueues once. `related_id` of every job of a run is the run's
`sector_analysis` id, so `get_jobs_by_related_id(run_id)` follows a whole run. Every job of a
run has the priority of the run's user tier and the user as its group (`pipeline.tiers`).

Nothing is enqueued for a cancelled run (`RunCancelledError`): the run is checked before the
jobs are added and again after, and jobs a cancel raced with are withdrawn (see
`pipeline.cancel` for why one of the two sides always sees the other).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
from pydantic import BaseModel, ValidationError

from jobqueue import InvalidJobError, Job
from pipeline.budget import check_usd
from pipeline.cancelled import RunCancelledError, cancelled_runs, run_is_cancelled, withdraw_jobs
from pipeline.cli_args import shown
from pipeline.fanout import add_stock_flow
from pipeline.job_ids import default_job_id
from pipeline.models import PAYLOAD_MODELS, SectorResearchPayload, StockAnalysisPayload
from pipeline.runs import RUN_OF
from pipeline.runtime import Runtime, get_runtime
from pipeline.status import create_job_status
from pipeline.tiers import DEFAULT_TIER, RunFairness, check_tier, fairness_of_runs

__all__ = [
    "PayloadError",
    "approve_subsector",
    "default_job_id",
    "enqueue",
    "enqueue_many",
    "start_sector_research",
    "validate_payload",
]

log = logging.getLogger(__name__)


class PayloadError(InvalidJobError):
    """The payload does not fit its job type; nothing was written."""

    def __init__(self, job_type: str, detail: str) -> None:
        super().__init__(f"invalid {job_type} payload: {detail}")
        self.job_type = job_type


def validate_payload(job_type: str, payload: Mapping[str, Any] | BaseModel) -> BaseModel:
    """The payload as its job type's model, or `PayloadError` naming the bad fields."""
    model = PAYLOAD_MODELS.get(job_type)
    if model is None:
        raise PayloadError(job_type, f"unknown job type; expected one of {sorted(PAYLOAD_MODELS)}")
    if isinstance(payload, model):
        return payload
    try:
        data = payload.model_dump() if isinstance(payload, BaseModel) else payload
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in exc.errors()
        )
        raise PayloadError(job_type, problems) from None


async def _related_id(rt: Runtime, job_type: str, payload: BaseModel) -> str | None:
    try:
        value = await RUN_OF[job_type](rt.pool, payload)
    except (OSError, asyncpg.PostgresError) as exc:
        log.warning("could not look up the run of a %s job: %s", job_type, type(exc).__name__)
        return None
    return str(value) if value is not None else None


async def enqueue(
    job_type: str,
    payload: Mapping[str, Any] | BaseModel,
    *,
    job_id: str | None = None,
    delay: float = 0.0,
    runtime: Runtime | None = None,
) -> Job:
    """Validate `payload` for `job_type`, add the job to its queue, create its status row.

    A `stock-analysis` is added as its stock's flow (format-insights <- judge-review <- the
    analysis, `pipeline.fanout`), so the analysis is judged and formatted as in a run; the
    analysis job is returned. `judge-review` and `format-insights` run only inside such a
    flow: `enqueue` refuses them (`PayloadError`).

    Args:
        job_type: one of the five stages (`sector-research`, ...).
        payload: the stage's payload (a mapping or its pydantic model).
        job_id: overrides the deduplicating default id.
        delay: seconds before the job may start.
        runtime: the runtime to use (default: the process's, from the environment).

    Returns:
        The job (the existing one when this job id was enqueued before).

    Raises:
        PayloadError: the payload does not fit the job type, or the job type runs only in a
            stock's flow (nothing is written).
        RunCancelledError: the job's run is cancelled (nothing is enqueued, or what a cancel
            raced with is withdrawn).
    """
    return (
        await enqueue_many([(job_type, payload)], job_ids=[job_id], delay=delay, runtime=runtime)
    )[0]


async def enqueue_many(
    items: Sequence[tuple[str, Mapping[str, Any] | BaseModel]],
    *,
    job_ids: Sequence[str | None] | None = None,
    delay: float = 0.0,
    runtime: Runtime | None = None,
) -> list[Job]:
    """Enqueue several jobs: all validated first, then one Redis call per queue (one per
    stock for `stock-analysis`, each its stock's flow: see `enqueue`).

    Raises:
        PayloadError: a payload does not fit its job type (nothing is written).
        RunCancelledError: a job's run is cancelled (nothing is enqueued, or what a cancel
            raced with is withdrawn).
    """
    rt = runtime or await get_runtime()
    validated = [(t, validate_payload(t, p)) for t, p in items]
    ids = list(job_ids) if job_ids is not None else [None] * len(validated)
    if len(ids) != len(validated):
        raise InvalidJobError(f"{len(ids)} job_ids given for {len(validated)} jobs")
    for (job_type, _), job_id in zip(validated, ids, strict=True):
        if job_type in FLOW_ONLY:
            raise PayloadError(job_type, FLOW_ONLY[job_type])
        if job_type == "stock-analysis" and job_id is not None:
            raise PayloadError(job_type, "its jobs' ids derive from the stock; job_id is refused")
    # the run of each job (its status row's related id): nothing is enqueued for a cancelled one
    related = [await _related_id(rt, t, p) for t, p in validated]
    refused = await _cancelled(rt, related)
    if refused:
        raise RunCancelledError(min(refused), f"enqueue of {len(validated)} job(s)")
    by_queue: dict[str, list[int]] = {}
    for i, (t, _) in enumerate(validated):
        by_queue.setdefault(t, []).append(i)
    fairness = await _fairness(rt, related)
    jobs: list[Job | None] = [None] * len(validated)
    trees: dict[int, list[tuple[str, str]]] = {}
    for i in by_queue.pop("stock-analysis", []):
        # a stock's analysis is its stock's flow: format-insights <- judge-review <- analysis
        p = validated[i][1]
        assert isinstance(p, StockAnalysisPayload)
        jobs[i], trees[i] = await add_stock_flow(
            rt, p.stock_id, related[i], attempt=p.attempt, variation=p.variation, delay=delay
        )
    for job_type, indexes in by_queue.items():
        specs = []
        for i in indexes:
            spec: dict[str, Any] = {
                "name": job_type,
                "data": validated[i][1].model_dump(mode="json"),
                # `is None`, not falsy: an empty id given is refused by the queue, not replaced
                "job_id": default_job_id(job_type, validated[i][1]) if ids[i] is None else ids[i],
                "delay": delay,
            }
            run = related[i]
            if run is not None and run in fairness:
                group, spec["priority"] = fairness[run]
                if rt.settings.fair_groups:
                    spec["group"] = group
            specs.append(spec)
        added = await rt.queues[job_type].add_bulk(specs)
        for i, job in zip(indexes, added, strict=True):
            jobs[i] = job
    # The queue is the truth: its job exists now. The status row is best effort here; if
    # PostgreSQL is down, the mirror creates it from the `added` event once it is back.
    done = [j for j in jobs if j is not None]
    for (job_type, _payload), job, run in zip(validated, done, related, strict=True):
        try:
            async with rt.pool.acquire() as conn:
                await create_job_status(job.id, job_type, run, queue=job_type, conn=conn)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning(
                "status row of %s not written (%s): the mirror will create it",
                job.id,
                type(exc).__name__,
            )
    # Again now that the jobs are in their queues: a cancel that committed since the first
    # check may have swept the queues before they were there, so they are withdrawn here.
    refused = await _cancelled(rt, related)
    if refused:
        rows = zip(validated, done, related, strict=True)
        withdrawn = [
            pair
            for i, ((job_type, _), job, run) in enumerate(rows)
            if run in refused
            for pair in trees.get(i, [(job_type, job.id)])
        ]
        await withdraw_jobs(rt.queues, rt.pool, withdrawn, children=True)
        raise RunCancelledError(min(refused), f"enqueue of {len(withdrawn)} job(s)")
    return done


FLOW_ONLY = {
    job_type: f"a {job_type} job runs in its stock's flow (pipeline.fanout), as the parent of "
    f"{child}: enqueue stock-analysis to analyse a stock"
    for job_type, child in (
        ("judge-review", "the stock's analyses"),
        ("format-insights", "the stock's judge review"),
    )
}
"""The job types `enqueue` refuses, and why."""


async def _fairness(rt: Runtime, runs: Sequence[str | None]) -> dict[str, RunFairness]:
    """(group, priority) per run. Should PostgreSQL be unreachable the jobs are still added,
    ungrouped at the default priority: fairness degrades, nothing is lost."""
    try:
        return await fairness_of_runs(rt.pool, [r for r in runs if r is not None])
    except (OSError, asyncpg.PostgresError) as exc:
        log.warning("could not read the runs' tiers (%s): jobs added ungrouped", type(exc).__name__)
        return {}


async def _cancelled(rt: Runtime, related: Sequence[str | None]) -> set[str]:
    """The cancelled runs among `related`; none when PostgreSQL cannot say (the queue is the
    truth for enqueueing: a job of a cancelled run added then ends at its start)."""
    runs = {r for r in related if r is not None}
    if not runs:
        return set()
    try:
        return await cancelled_runs(rt.pool, runs)
    except (OSError, asyncpg.PostgresError) as exc:
        log.warning("could not check for cancelled runs: %s", type(exc).__name__)
        return set()


async def start_sector_research(
    sector_name: str,
    user_id: str,
    *,
    budget_usd: float | None = None,
    user_tier: str = DEFAULT_TIER,
    runtime: Runtime | None = None,
    run_id: UUID | None = None,
) -> UUID:
    """Create a `sector_analysis` row and enqueue its research; returns the run's id.

    Args:
        sector_name: The sector to research.
        user_id: Who asked.
        budget_usd: USD the run's model calls may cost; default `PIPELINE_RUN_BUDGET_USD`.
            A call that would not fit is refused (BUDGET_EXCEEDED) and the run ends
            `budget_exceeded` with what it finished kept.
        user_tier: The user's subscription tier, "free", "pro" or "enterprise", stored on the
            run: every job of the run runs at its priority (enterprise first), and within a
            tier users are served in turn (`pipeline.tiers`).
        runtime: The runtime to use (default: the process's, from the environment).
        run_id: The run's id (default: a new one); starting a run of an existing id writes
            no second row (a scheduled `watch` job that is retried starts one run).

    Returns:
        The run's id.

    Raises:
        PayloadError: A bad sector name, user id or user tier (nothing is written).
        ConfigError: `budget_usd` is not a finite number >= 0.
    """
    budget = None if budget_usd is None else check_usd(budget_usd, "budget_usd")
    try:
        tier = check_tier(user_tier)
    except ValueError as exc:
        raise PayloadError("sector-research", str(exc)) from None
    rt = runtime or await get_runtime()
    # validate before writing anything
    probe = validate_payload(
        "sector-research",
        {"sector_analysis_id": UUID(int=0), "user_id": user_id, "sector_name": sector_name},
    )
    assert isinstance(probe, SectorResearchPayload)
    inserted: UUID | None = await rt.pool.fetchval(
        "INSERT INTO sector_analysis (id, user_id, sector_name, budget_usd, user_tier) "
        "VALUES (COALESCE($4, gen_random_uuid()), $1, $2, $3, $5) ON CONFLICT (id) DO NOTHING "
        "RETURNING id",
        probe.user_id,
        probe.sector_name,
        Decimal(str(rt.settings.run_budget_usd if budget is None else budget)),
        run_id,
        tier,
    )
    run_id = inserted or run_id
    assert run_id is not None
    await enqueue(
        "sector-research",
        {"sector_analysis_id": run_id, "user_id": probe.user_id, "sector_name": probe.sector_name},
        runtime=rt,
    )
    return run_id


async def approve_subsector(sub_sector_id: UUID | str, *, runtime: Runtime | None = None) -> Job:
    """Approve a sub-sector and enqueue its stock ranking (approving twice enqueues once).

    Raises:
        PayloadError: no such sub-sector, or it is not awaiting approval any more and was
            never approved (e.g. failed).
        RunCancelledError: its run is cancelled (nothing is changed or enqueued).
    """
    try:
        sid = UUID(str(sub_sector_id))
    except ValueError:
        raise PayloadError(
            "stock-ranking", f"not a sub-sector id: {shown(str(sub_sector_id))}"
        ) from None
    rt = runtime or await get_runtime()
    async with rt.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT status, sector_analysis_id FROM sub_sector WHERE id = $1 FOR UPDATE", sid
        )
        if row is None:
            raise PayloadError("stock-ranking", f"no sub-sector {sid}")
        if await run_is_cancelled(conn, row["sector_analysis_id"]):
            raise RunCancelledError(row["sector_analysis_id"], "approval")
        if row["status"] == "awaiting_approval":
            await conn.execute(
                "UPDATE sub_sector SET status = 'approved', approved_at = now() WHERE id = $1", sid
            )
            await conn.execute(
                "UPDATE sector_analysis SET status = 'in_progress' WHERE id = $1 "
                "AND status = 'awaiting_approval'",
                row["sector_analysis_id"],
            )
        elif row["status"] == "failed":
            raise PayloadError("stock-ranking", f"sub-sector {sid} failed; it cannot be approved")
    return await enqueue("stock-ranking", {"sub_sector_id": sid}, runtime=rt)
