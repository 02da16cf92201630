"""A transaction PostgreSQL rolls back for a conflict (a real deadlock here) defers the job
without spending an attempt: two deliveries of one job at once are allowed by at-least-once,
and an expensive analysis has a single attempt."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from pydantic import BaseModel

from jobqueue import ErrorType, Job, JobState, RetryAfter
from pipeline.runtime import Runtime
from pipeline.stages.base import Stage, make_handler

pytestmark = pytest.mark.integration


class _Payload(BaseModel):
    n: int = 0


async def _deadlock(pool: asyncpg.Pool, table: str) -> None:
    """Two transactions lock two rows in opposite orders: PostgreSQL aborts one of them."""
    await pool.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v int)")
    await pool.execute(f"INSERT INTO {table} VALUES (1, 0), (2, 0)")
    both_hold_one = asyncio.Barrier(2)

    async def lock(first: int, second: int) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(f"UPDATE {table} SET v = v + 1 WHERE id = $1", first)
            await both_hold_one.wait()
            await conn.execute(f"UPDATE {table} SET v = v + 1 WHERE id = $1", second)

    await asyncio.gather(lock(1, 2), lock(2, 1))


async def test_a_deadlock_defers_the_job_without_spending_an_attempt(runtime: Runtime) -> None:
    table = f"deadlock_{runtime.settings.prefix}".replace("-", "_")

    async def run(rt: Runtime, job: Job, payload: _Payload) -> dict[str, Any]:
        await _deadlock(rt.pool, table)
        return {}

    handler = make_handler(runtime, Stage("stock-analysis", _Payload, run))
    queue = runtime.queues["stock-analysis"]
    added = await queue.add("stock-analysis", {"n": 1})
    job = Job(queue, added.id, {"n": "stock-analysis", "d": {"n": 1}}, state=JobState.ACTIVE)
    job.attempt = 1
    try:
        with pytest.raises(RetryAfter) as caught:
            await handler(job)
    finally:
        await runtime.pool.execute(f"DROP TABLE IF EXISTS {table}")
    assert caught.value.spend_attempt is False
    assert caught.value.error_type == ErrorType.NETWORK_ERROR
    assert isinstance(caught.value.__cause__, asyncpg.exceptions.DeadlockDetectedError)
