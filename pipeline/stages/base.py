"""What every stage shares: the handler wrapper (validation, logs, final-failure hook),
model-usage accounting, failing a stock, and completing a sub-sector (the ranking's fan-in
step, `pipeline.fanout`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.exceptions
import structlog
from pydantic import BaseModel

from jobqueue import (
    ErrorType,
    Job,
    QueueFullError,
    RetryAfter,
    WaitForChildren,
    classify_error,
    is_final_failure,
)
from pipeline.ai import LLMResult
from pipeline.ai.guard import job_scope
from pipeline.budget import BUDGET_EXCEEDED, end_run_if_stopped
from pipeline.cancel import sweep_run
from pipeline.cancelled import RunCancelledError, run_is_cancelled
from pipeline.runs import RunOf
from pipeline.runtime import Runtime
from pipeline.webhooks.events import emit_run_ended

__all__ = ["Stage", "complete_subsector_if_done", "make_handler", "record_usage"]

log = structlog.get_logger("pipeline")

# A database or Redis that is away, or a transaction PostgreSQL rolled back for a conflict
# (a deadlock or serialization failure, e.g. two deliveries of one job at once, which
# at-least-once allows): the job waits and runs again instead of failing.
INFRA_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.TransactionRollbackError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    QueueFullError,  # Redis out of memory: enqueuing the next stage waits, nothing was written
)

#: Call indexes a step of a job may use: step n's calls are numbered from n * STEP_CALLS, so
#: the usage rows and budget reservations of a job's steps (a judge judging again) never
#: overwrite one another.
STEP_CALLS = 100


def first_call(job: Job) -> int:
    """The index of the first model call of this run of the job (its step's first)."""
    return job.step * STEP_CALLS


RunFn = Callable[[Runtime, Job, Any], Awaitable[dict[str, Any]]]
FailFn = Callable[[Runtime, Job, Any, str], Awaitable[None]]


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: its job type, payload model and the two functions it runs, and how
    to find the run a payload belongs to (its model calls count against that run's budget)."""

    job_type: str
    payload: type[BaseModel]
    run: RunFn
    on_final_failure: FailFn | None = None
    run_of: RunOf | None = None


def make_handler(rt: Runtime, stage: Stage) -> Callable[[Job], Awaitable[dict[str, Any]]]:
    """The engine handler of a stage: validates the payload, logs `→ ✓ ✗`, attributes the
    job's model calls to its run (`job_scope`), and runs the stage's final-failure hook when
    the job will not be retried (so a run never hangs on a stock that can no longer finish).
    A job refused for budget then ends its run `budget_exceeded` once nothing of it runs.
    A job of a cancelled run ends at its start (`RunCancelledError`: CANCELLED, not retried,
    its row `cancelled`), as does one whose model call or enqueue its run's cancel refused."""

    async def handler(job: Job) -> dict[str, Any]:
        payload = stage.payload.model_validate(job.data)
        bound = log.bind(stage=stage.job_type, job_id=job.id, attempt=job.attempt)
        bound.info(f"→ {stage.job_type} started")
        t0 = time.monotonic()
        run_id = None
        try:
            try:
                run_id = await stage.run_of(rt.pool, payload) if stage.run_of else None
                if run_id is not None and await run_is_cancelled(rt.pool, run_id):
                    await _sweep_cancelled_run(rt, run_id)
                    raise RunCancelledError(run_id, f"{stage.job_type} job")
                with job_scope(
                    run_id,
                    job_id=job.id,
                    attempt=job.attempt,
                    stage=stage.job_type,
                    first_call=first_call(job),
                ):
                    result = await stage.run(rt, job, payload)
            except INFRA_ERRORS as exc:
                # PostgreSQL or Redis is away: wait for it without spending an attempt (an
                # expensive analysis has a single one), bounded by the queue's max_deferrals
                raise RetryAfter(
                    rt.settings.infra_retry_delay,
                    f"dependency unavailable ({type(exc).__name__}); will retry",
                    error_type=ErrorType.NETWORK_ERROR,
                    spend_attempt=False,
                ) from exc
        except WaitForChildren:
            # the fan-out or a rejection added children: the job runs again once they ended
            bound.info(f"⋯ {stage.job_type} waits for its children")
            raise
        except BaseException as exc:
            c = classify_error(exc)
            if c.error_type == ErrorType.CANCELLED:
                # stopped on purpose (its run cancelled, or `Queue.cancel`): nothing failed
                bound.info(f"⊘ {stage.job_type} cancelled", reason=c.message)
                raise
            final = is_final_failure(job.queue.config, job, exc)
            bound.warning(
                f"✗ {stage.job_type} failed",
                error_type=str(c.error_type),
                error=c.message,
                final=final,
            )
            if final and stage.on_final_failure is not None:
                await stage.on_final_failure(rt, job, payload, f"{c.error_type}: {c.message}")
            if (
                final
                and c.error_type == BUDGET_EXCEEDED
                and run_id is not None
                and await end_run_if_stopped(rt.pool, run_id)
            ):
                await emit_run_ended(rt, run_id, "budget_exceeded")
            raise
        bound.info(f"✓ {stage.job_type} done", seconds=round(time.monotonic() - t0, 3))
        return result

    return handler


async def _sweep_cancelled_run(rt: Runtime, run_id: Any) -> None:
    """A job of a cancelled run started all the same: sweep the run again, so the flow it is
    part of (its stock's tree, its ranking) ends cancelled with it instead of failing or
    waiting. The sweep signals this very job too, which cancels this task: the sweep goes on
    to its end (bounded) before the job ends."""
    sweep = asyncio.ensure_future(sweep_run(rt, run_id))
    try:
        await asyncio.shield(sweep)
    except asyncio.CancelledError:
        await asyncio.wait([sweep], timeout=rt.settings.infra_retry_delay + 30.0)
        raise


async def record_usage(
    conn: asyncpg.Connection,
    job: Job,
    stage: str,
    results: list[LLMResult],
    related_id: Any,
) -> tuple[int, int, float]:
    """Store each model call's tokens, cache reads and writes, and cost (cache tokens priced
    by `cost_usd`) for this job attempt; a replayed attempt overwrites its rows. Returns the
    totals: uncached input tokens, output tokens, cost. Calls are numbered from the job's step's
    first index (`first_call`), as the guards number them."""
    total_in = total_out = 0
    cost = 0.0
    for i, r in enumerate(results, first_call(job)):
        u = r.usage
        await conn.execute(
            """
            INSERT INTO llm_usage (job_id, attempt, call_index, stage, model, related_id,
                input_tokens, output_tokens, cache_creation_input_tokens,
                cache_read_input_tokens, web_search_requests, cost_usd)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
            ON CONFLICT (job_id, attempt, call_index) DO UPDATE SET
                model = excluded.model, input_tokens = excluded.input_tokens,
                output_tokens = excluded.output_tokens,
                cache_creation_input_tokens = excluded.cache_creation_input_tokens,
                cache_read_input_tokens = excluded.cache_read_input_tokens,
                web_search_requests = excluded.web_search_requests, cost_usd = excluded.cost_usd
            """,
            job.id,
            job.attempt,
            i,
            stage,
            r.model,
            str(related_id) if related_id is not None else None,
            u.input_tokens,
            u.output_tokens,
            u.cache_write_tokens,
            u.cache_read_tokens,
            u.web_searches,
            r.cost_usd,
        )
        total_in += u.input_tokens
        total_out += u.output_tokens
        cost += r.cost_usd
    return total_in, total_out, cost


async def complete_subsector_if_done(
    conn: asyncpg.Connection,
    sub_sector_id: Any,
    stocks_to_analyze: int,
    *,
    rt: Runtime | None = None,
) -> bool:
    """Inside the caller's transaction: mark the sub-sector completed when all its analysed
    stocks are finished, and its run with it. Returns True for the one caller that marked it.
    With `rt`, the run's end is announced (its webhook enqueued) in the same transaction.

    The ranking's fan-in step calls it once every stock's tree has ended (the engine releases
    the ranking once); the row lock on the sub-sector keeps it idempotent should that step
    run twice (at-least-once) or race with anything else that finishes the sub-sector.
    """
    status = await conn.fetchval(
        "SELECT status FROM sub_sector WHERE id = $1 FOR UPDATE", sub_sector_id
    )
    if status is None or status == "completed":
        return False
    pending = await conn.fetchval(
        "SELECT count(*) FROM stock WHERE sub_sector_id = $1 AND rank <= $2 "
        "AND status NOT IN ('completed', 'failed')",
        sub_sector_id,
        stocks_to_analyze,
    )
    if pending:
        return False
    run_id = await conn.fetchval(
        "UPDATE sub_sector SET status = 'completed', completed_at = now() WHERE id = $1 "
        "RETURNING sector_analysis_id",
        sub_sector_id,
    )
    # a run a budget stopped ends as such, with what it finished kept; a cancelled run stays so
    ended = await conn.fetchval(
        "UPDATE sector_analysis SET status = CASE WHEN budget_exceeded_at IS NULL "
        "THEN 'completed' ELSE 'budget_exceeded' END, completed_at = now() WHERE id = $1 "
        "AND status <> 'cancelled' RETURNING status",
        run_id,
    )
    if rt is not None:
        await emit_run_ended(rt, run_id, ended, conn=conn)
    log.info("✓ sub-sector completed", sub_sector_id=str(sub_sector_id))
    return True


async def fail_stock(
    rt: Runtime, stock_id: Any, reasons: list[str], *, conn: asyncpg.Connection | None = None
) -> bool:
    """Mark a stock permanently failed with its reasons (the first final failure's reasons are
    kept); the ranking's fan-in then counts it. Returns True when this call marked it."""
    sql = (
        "UPDATE stock SET status = 'failed', final_reasons = $2::jsonb, completed_at = now() "
        "WHERE id = $1 AND status NOT IN ('completed', 'failed') RETURNING true"
    )
    if conn is not None:
        return bool(await conn.fetchval(sql, stock_id, reasons))
    return bool(await rt.pool.fetchval(sql, stock_id, reasons))
