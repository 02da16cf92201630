"""Cancelling a run (`pipeline.cancel_run`, `python -m pipeline cancel RUN_ID`): with its jobs
running in two real worker processes, during its research, before its approval, after it
ended, twice, and a `python -m pipeline run` waiting on it. The checks that hold a cancel
(the model-call guard, the enqueue gate, the check at a job's start) are in
test_pipeline_cancel_guards.py."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from pipeline_helpers import (
    HANG,
    ROOT,
    cli,
    cli_env,
    settled_rows,
    stop_processes,
    wait_for,
    wait_row,
)

from pipeline import CancelRefusedError, RunCancelledError, cancel_run
from pipeline.flow import approve_subsector, start_sector_research
from pipeline.runtime import Runtime

pytestmark = [pytest.mark.integration]

ANALYSES = 5  # the default PIPELINE_STOCKS_TO_ANALYZE of the worker processes


@pytest.fixture
def spawn(runtime: Runtime) -> Iterator[Any]:
    """Starts `python -m pipeline.workers` processes on the test servers."""
    procs: list[subprocess.Popen[bytes]] = []
    s = runtime.settings

    def start(latency: float, *args: str) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.pop("ANTHROPIC_API_KEY", None)
        env.update(
            {
                "REDIS_URL": s.redis_url or "",
                "DATABASE_URL": s.database_url or "",
                "PIPELINE_PREFIX": s.prefix,
                "PIPELINE_LLM_MODE": "offline",
                "PIPELINE_OFFLINE_LATENCY": str(latency),
                "PIPELINE_LEASE": "30",
                "PIPELINE_STALL_INTERVAL": "0.2",
                "PIPELINE_DRAIN_DELAY": "0.3",
                "PIPELINE_REJECTION_DELAY": "0.1",
                "PIPELINE_RETRY_SCALE": "0.01",
                "PIPELINE_LOG_FORMAT": "json",
                "PIPELINE_MIRROR_CLAIM_IDLE": "1",
                "PYTHONPATH": str(ROOT),
            }
        )
        p = subprocess.Popen(
            [sys.executable, "-m", "pipeline.workers", *args],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(p)
        return p

    yield start
    stop_processes(procs)


async def redis_ms(rt: Runtime) -> int:
    sec, usec = await rt.redis.time()
    return int(sec) * 1000 + int(usec) // 1000


async def events_since(rt: Runtime, since_ms: int) -> list[tuple[str, dict[bytes, bytes]]]:
    """Every event of every stage queue from `since_ms` (Redis clock) on."""
    found = []
    for name, q in rt.queues.items():
        for _, fields in await rt.redis.xrange(q.keys.events, min=f"{since_ms}-0"):
            found.append((name, fields))
    return found


async def test_cancel_with_jobs_running_in_two_worker_processes(
    runtime: Runtime, spawn: Any
) -> None:
    pool = runtime.pool
    # the early stages answer at once; the analyses run in two processes, two at a time each,
    # and their model calls take a minute: they are surely running when the run is cancelled
    spawn(0.0, "--queues", "sector-research,stock-ranking,judge-review,format-insights")
    spawn(60.0, "--queues", "stock-analysis", "--concurrency", "2")
    spawn(60.0, "--queues", "stock-analysis", "--concurrency", "2")
    run_id = await start_sector_research("Energy", "u", runtime=runtime)
    await wait_row(
        pool, "SELECT status = 'awaiting_approval' FROM sector_analysis WHERE id=$1", run_id
    )
    sub = await pool.fetchval(
        "SELECT id FROM sub_sector WHERE sector_analysis_id=$1 ORDER BY name LIMIT 1", run_id
    )
    await approve_subsector(sub, runtime=runtime)
    analysis = runtime.queues["stock-analysis"]

    async def four_running() -> bool:
        # two per process at most: four running means both processes run two
        return await runtime.redis.zcard(analysis.keys.active) == 4

    await wait_for(four_running, what="four analyses running in the two processes")

    async def four_calls_in_flight() -> bool:
        held = await pool.fetchval(
            "SELECT count(*) FROM budget_reservation WHERE run_id=$1 AND state='held'", run_id
        )
        return bool(held == 4)

    await wait_for(four_calls_in_flight, what="the four analyses' model calls in flight")

    result = await cancel_run(run_id, runtime=runtime)
    after_pg = await pool.fetchval("SELECT clock_timestamp()")
    after_redis = await redis_ms(runtime)

    assert result.status == "cancelled" and not result.cancelled_before
    stocks = await pool.fetch(
        "SELECT id FROM stock WHERE sub_sector_id=$1 AND rank <= $2", sub, ANALYSES
    )
    analyses = {f"stock-analysis:{r['id']}:1" for r in stocks}
    assert len(result.signalled) >= 4
    assert analyses <= set(result.signalled) | set(result.removed)
    assert result.finished >= 1  # the research had ended
    # the ranking waited for its stocks' trees: removed with them in one step
    assert f"stock-ranking:{sub}" in result.removed
    run = await pool.fetchrow(
        "SELECT status, cancelled_at, completed_at FROM sector_analysis WHERE id=$1", run_id
    )
    assert run["status"] == "cancelled" and run["cancelled_at"] < after_pg
    assert run["completed_at"] is None

    # the status rows settle: the analyses stopped or removed are `cancelled`, the rest ended
    rows = await settled_rows(run_id)
    by_id = {r.job_id: r for r in rows}
    assert {by_id[j].status for j in analyses} == {"cancelled"}
    assert all(by_id[j].error_type == "CANCELLED" for j in analyses)
    assert by_id[f"sector-research:{run_id}"].status == "completed"
    assert by_id[f"stock-ranking:{sub}"].status == "cancelled"
    tree_parents = [r for r in rows if r.job_type in ("judge-review", "format-insights")]
    assert len(tree_parents) == 2 * ANALYSES
    assert {r.status for r in tree_parents} == {"cancelled"}

    # nothing of the run was added or started after the cancel returned
    run_jobs = set(by_id)
    late = [
        (q, f) for q, f in await events_since(runtime, after_redis)
        if f.get(b"id", b"").decode() in run_jobs and f.get(b"ev") in (b"added", b"active")
    ]  # fmt: skip
    assert not late, late
    for q in runtime.queues.values():
        counts = await q.get_job_counts()
        assert counts["waiting"] == counts["delayed"] == counts["active"] == 0, q.name
    # no model call was paid for after the cancel returned: every call of the run with a cost
    # was admitted before (its reservation, made before the cancel check, predates the cancel)
    usage = await pool.fetch(
        "SELECT u.job_id, r.created_at FROM llm_usage u LEFT JOIN budget_reservation r "
        "ON r.job_id = u.job_id AND r.attempt = u.attempt AND r.call_index = u.call_index "
        "WHERE u.related_id = $1",
        str(run_id),
    )
    assert usage and all(u["created_at"] is not None for u in usage)
    assert all(u["created_at"] < after_pg for u in usage)
    late_calls = await pool.fetchval(
        "SELECT count(*) FROM budget_reservation WHERE run_id = $1 AND created_at >= $2 "
        "AND state <> 'released'",
        run_id,
        after_pg,
    )
    assert late_calls == 0

    # the calls stopped in flight give their reservations back (as their handlers unwind, in
    # the worker processes): nothing stays held
    async def none_held() -> bool:
        held = await pool.fetchval(
            "SELECT count(*) FROM budget_reservation WHERE run_id=$1 AND state='held'", run_id
        )
        return held == 0

    await wait_for(none_held, what="the stopped calls' reservations given back")
    assert not await pool.fetchval(
        "SELECT count(*) FROM stock_analysis a JOIN stock s ON s.id = a.stock_id "
        "WHERE s.sub_sector_id = $1",
        sub,
    )

    # cancelling again is allowed and changes nothing
    again = await cancel_run(run_id, runtime=runtime)
    assert again.cancelled_before and again.status == "cancelled"
    assert not again.removed and not again.signalled
    when = await pool.fetchval("SELECT cancelled_at FROM sector_analysis WHERE id=$1", run_id)
    assert when == run["cancelled_at"]


async def test_cancel_during_research_from_the_command_line(runtime: Runtime, spawn: Any) -> None:
    pool = runtime.pool
    spawn(60.0, "--queues", "sector-research")  # its first call lasts a minute
    run_id = await start_sector_research("Energy", "u", runtime=runtime)
    research = runtime.queues["sector-research"]

    async def researching() -> bool:
        return await runtime.redis.zcard(research.keys.active) == 1

    await wait_for(researching, what="the research running")
    env = cli_env(runtime)
    code, out, err = await cli(env, "cancel", str(run_id))
    assert code == 0, err
    assert out.splitlines() == [
        f"run {run_id} cancelled",
        "jobs removed from their queues: 0",
        "running jobs signalled to stop: 1",
        f"  sector-research:{run_id}",
        "jobs that had ended already: 0",
        "status: cancelled",
    ]
    (row,) = await settled_rows(run_id)
    assert (row.status, row.error_type) == ("cancelled", "CANCELLED")
    assert (
        await pool.fetchval("SELECT status FROM sector_analysis WHERE id=$1", run_id) == "cancelled"
    )
    assert not await pool.fetchval(
        "SELECT count(*) FROM sub_sector WHERE sector_analysis_id=$1", run_id
    )
    assert not await pool.fetchval(
        "SELECT count(*) FROM llm_usage WHERE related_id=$1", str(run_id)
    )

    code, out, err = await cli(env, "status", str(run_id))
    assert code == 0, err
    assert re.match(rf"run {run_id} is cancelled at \d{{4}}-", out.splitlines()[0]), out
    assert re.search(rf"^sector-research\s+cancelled .* sector-research:{run_id}", out, re.M)

    code, out, err = await cli(env, "cancel", str(run_id))  # twice: allowed, nothing to do
    assert code == 0, err
    assert out.splitlines()[0] == f"run {run_id} was cancelled already"
    assert "running jobs signalled to stop: 0" in out
    assert out.splitlines()[-1] == "status: cancelled"


async def test_cancel_before_approval_then_approve_is_refused(
    runtime: Runtime, workers: Any
) -> None:
    pool = runtime.pool
    await workers()
    run_id = await start_sector_research("Energy", "u", runtime=runtime)
    await wait_row(
        pool, "SELECT status = 'awaiting_approval' FROM sector_analysis WHERE id=$1", run_id
    )
    result = await cancel_run(str(run_id), runtime=runtime)
    assert (result.removed, result.signalled, result.finished) == ((), (), 1)
    sub = await pool.fetchval(
        "SELECT id FROM sub_sector WHERE sector_analysis_id=$1 ORDER BY name LIMIT 1", run_id
    )
    with pytest.raises(RunCancelledError):
        await approve_subsector(sub, runtime=runtime)
    assert await pool.fetchval("SELECT status FROM sub_sector WHERE id=$1", sub) == (
        "awaiting_approval"
    )
    assert await runtime.queues["stock-ranking"].get_job(f"stock-ranking:{sub}") is None
    code, out, err = await cli(cli_env(runtime), "approve", str(sub))
    assert (code, out) == (2, "")
    assert f"error: run {run_id} is cancelled: approval refused" in err


@pytest.mark.parametrize("status", ["completed", "failed", "budget_exceeded"])
async def test_cancel_of_an_ended_run_is_refused(runtime: Runtime, status: str) -> None:
    pool = runtime.pool
    run_id = await pool.fetchval(
        "INSERT INTO sector_analysis (user_id, sector_name, status) VALUES ('u', 'Tech', $1) "
        "RETURNING id",
        status,
    )
    with pytest.raises(CancelRefusedError) as refused:
        await cancel_run(run_id, runtime=runtime)
    assert refused.value.status == status
    assert f"already ended ({status})" in str(refused.value)
    code, out, err = await cli(cli_env(runtime), "cancel", str(run_id))
    assert (code, out) == (1, "")
    assert f"error: run {run_id} already ended ({status})" in err
    row = await pool.fetchrow(
        "SELECT status, cancelled_at FROM sector_analysis WHERE id=$1", run_id
    )
    assert (row["status"], row["cancelled_at"]) == (status, None)


async def test_cancel_of_no_run(runtime: Runtime) -> None:
    env = cli_env(runtime)
    unknown = str(uuid.uuid4())
    code, out, err = await cli(env, "cancel", unknown)
    assert (code, out, err.strip()) == (2, "", f"error: no run {unknown}")
    code, out, err = await cli(env, "cancel", "not-a-uuid")
    assert (code, out, err.strip()) == (2, "", "error: no run not-a-uuid")
    no_urls = {k: v for k, v in env.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    code, out, err = await cli(no_urls, "cancel", unknown)
    assert (code, err.strip()) == (2, "error: set REDIS_URL and DATABASE_URL")


async def test_a_run_command_ends_when_its_run_is_cancelled(runtime: Runtime) -> None:
    """`python -m pipeline run` waiting for an approval ends (exit 1) once the run is
    cancelled, and says so."""
    env = cli_env(runtime)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pipeline",
        "run",
        "Energy",
        "--timeout",
        str(HANG),
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), HANG)).decode()
        match = re.match(r"^run (\S+): researching 'Energy'$", first)
        assert match, first
        run_id = UUID(match.group(1))
        await wait_row(
            runtime.pool,
            "SELECT status = 'awaiting_approval' FROM sector_analysis WHERE id=$1",
            run_id,
        )
        await cancel_run(run_id, runtime=runtime)
        out, err = await asyncio.wait_for(proc.communicate(), HANG)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 1
    assert "the run was cancelled" in err.decode()
    assert f"run {run_id} is cancelled" in out.decode()
