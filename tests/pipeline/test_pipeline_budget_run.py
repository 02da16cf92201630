"""Budgets stopping real runs (real Redis and PostgreSQL): a run that runs out mid-way keeps
what it finished and writes nothing for the refused calls, through the offline model and
through the real Anthropic client against the local Messages API; the daily budget refuses
across runs; `python -m pipeline status` shows the spend."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from pipeline_helpers import HANG, make_stocks, wait_for, wait_row

from jobqueue import JobFailedError, JobState
from pipeline.ai import AnthropicLLM, LLMResult, OfflineLLM
from pipeline.ai.estimate import estimate_call
from pipeline.ai.guard import LLMCall
from pipeline.flow import approve_subsector, enqueue, start_sector_research
from pipeline.prompts import research_prompt
from pipeline.runtime import Runtime
from pipeline.workers import Workers

sys.path.insert(0, str(Path(__file__).parent.parent / "ai"))
from fake_anthropic import API_KEY, FakeAnthropic

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


class HoldFirstAnalysis:
    """The offline model, whose first analysis call waits until `release` is set: one
    expensive call is in flight while the other analyses try to start."""

    def __init__(self, inner: OfflineLLM) -> None:
        self.inner = inner
        self.release = asyncio.Event()
        self.holding = False

    async def complete(self, **kwargs: Any) -> LLMResult:
        if kwargs["tier"] == "analysis" and not self.holding:
            self.holding = True
            await asyncio.wait_for(self.release.wait(), HANG)  # bounds a hang only
        return await self.inner.complete(**kwargs)

    async def structured(self, **kwargs: Any) -> Any:
        return await self.inner.structured(**kwargs)


async def status_output(rt: Runtime, run_id: UUID, **env: str) -> str:
    """`python -m pipeline status RUN_ID` as a real process; returns its stdout."""
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "ANTHROPIC_"))},
        "DATABASE_URL": rt.settings.database_url or "",
        "PYTHONPATH": str(ROOT),
        **env,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pipeline",
        "status",
        str(run_id),
        env=environ,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), HANG)  # bounds a hang only
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def failed_job(rt: Runtime, job_type: str, job_id: str) -> Any:
    """The job once the engine recorded its failure (its final-failure hook, which moves the
    rows, runs before that)."""
    queue = rt.queues[job_type]

    async def failed() -> Any:
        job = await queue.get_job(job_id)
        return job if job is not None and job.state == JobState.FAILED else None

    return await wait_for(failed, what=f"{job_id} failed")


async def reservations_settled(rt: Runtime, run_id: UUID) -> None:
    """Nothing of the run is held any more, and what it spent is what its calls cost."""
    row = await rt.pool.fetchrow(
        "SELECT budget_usd, spent_usd, reserved_usd FROM sector_analysis WHERE id=$1", run_id
    )
    held = await rt.pool.fetchval(
        "SELECT count(*) FROM budget_reservation WHERE run_id=$1 AND state='held'", run_id
    )
    costs = await rt.pool.fetchval(
        "SELECT coalesce(sum(cost_usd), 0) FROM budget_reservation WHERE run_id=$1", run_id
    )
    assert (held, row["reserved_usd"]) == (0, 0)
    assert row["spent_usd"] == costs > 0
    assert row["spent_usd"] <= row["budget_usd"]


async def test_a_budget_stops_an_offline_run_mid_way(runtime: Runtime, workers: Any) -> None:
    """$0.55 fits the research, the ranking and one analysis in flight (an opus analysis may
    cost $0.32): the four analyses that start beside it are refused, the fifth stock is
    finished, and the run ends budget_exceeded with it kept."""
    gate = HoldFirstAnalysis(OfflineLLM())
    runtime.use_llm(gate)
    await workers()
    pool = runtime.pool
    run_id = await start_sector_research("Technology", "u", budget_usd=0.55, runtime=runtime)
    await wait_row(
        pool, "SELECT status = 'awaiting_approval' FROM sector_analysis WHERE id=$1", run_id
    )
    sub = await pool.fetchval(
        "SELECT id FROM sub_sector WHERE sector_analysis_id=$1 ORDER BY name LIMIT 1", run_id
    )
    await approve_subsector(sub, runtime=runtime)
    analyses = runtime.queues["stock-analysis"]

    async def four_refused() -> bool:
        return len(await analyses.get_job_ids(JobState.FAILED)) == 4

    await wait_for(four_refused, what="four analyses refused")
    gate.release.set()
    await wait_row(pool, "SELECT status = 'completed' FROM sub_sector WHERE id=$1", sub)

    assert await pool.fetchval("SELECT status FROM sector_analysis WHERE id=$1", run_id) == (
        "budget_exceeded"
    )
    stocks = await pool.fetch(
        "SELECT id, status, final_reasons FROM stock WHERE sub_sector_id=$1 AND rank <= 5", sub
    )
    done = [s for s in stocks if s["status"] == "completed"]
    refused = [s for s in stocks if s["status"] == "failed"]
    assert (len(done), len(refused)) == (1, 4)
    for s in refused:
        assert "BUDGET_EXCEEDED" in s["final_reasons"][0], s["final_reasons"]
        assert "run budget exhausted" in s["final_reasons"][0]
    # what finished is kept: the analysis, its verdict and its insights
    kept = await pool.fetchrow(
        "SELECT insights FROM stock_analysis WHERE stock_id=$1 AND status='completed'",
        done[0]["id"],
    )
    assert kept is not None and kept["insights"]["verdict"] in ("buy", "hold", "sell")
    # nothing half-written for the refused calls: no analysis row, no usage row
    ids = [s["id"] for s in refused]
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM stock_analysis WHERE stock_id = ANY($1::uuid[])", ids
        )
        == 0
    )
    refused_jobs = [f"stock-analysis:{i}:1" for i in ids]
    assert sorted(await analyses.get_job_ids(JobState.FAILED)) == sorted(refused_jobs)
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM llm_usage WHERE job_id = ANY($1::text[])", refused_jobs
        )
        == 0
    )
    for job_id in refused_jobs:
        job = await analyses.get_job(job_id)
        assert job is not None and job.error_type == "BUDGET_EXCEEDED"
        assert job.attempts_made == 1
    await reservations_settled(runtime, run_id)

    # the status rows say why, and the command shows the spend against the budget
    async def rows_failed() -> bool:
        failed = await pool.fetch(
            "SELECT error_type FROM job_status WHERE job_id = ANY($1::text[]) "
            "AND status = 'failed'",
            refused_jobs,
        )
        return len(failed) == 4 and {r["error_type"] for r in failed} == {"BUDGET_EXCEEDED"}

    await wait_for(rows_failed, what="the refused jobs' rows failed")
    out = await status_output(runtime, run_id)
    spent = await pool.fetchval("SELECT spent_usd FROM sector_analysis WHERE id=$1", run_id)
    share = round(spent / Decimal("0.55") * 100)
    line = f"spent ${spent:.2f} of $0.55 budget ({share}%); budget exceeded: calls were refused"
    assert line in out.splitlines(), out
    refusals = [line for line in out.splitlines() if "BUDGET_EXCEEDED" in line]
    assert len(refusals) == 4 and all("run budget exhausted" in r for r in refusals), out


async def test_a_refused_research_ends_the_run(runtime: Runtime, workers: Any) -> None:
    """Research with web search may cost $0.37: a $0.10 budget refuses it at once; the job
    is not retried although its queue allows two attempts."""
    await workers(queues=["sector-research"])
    run_id = await start_sector_research("Utilities", "u", budget_usd=0.1, runtime=runtime)
    row = await wait_row(
        runtime.pool,
        "SELECT row(status, error_message) FROM sector_analysis WHERE id=$1 "
        "AND status <> 'researching'",
        run_id,
    )
    assert row[0] == "budget_exceeded" and "run budget exhausted" in row[1]
    job = await failed_job(runtime, "sector-research", f"sector-research:{run_id}")
    assert (job.max_attempts, job.attempts_made) == (2, 1)
    assert (
        await runtime.pool.fetchval(
            "SELECT count(*) FROM sub_sector WHERE sector_analysis_id=$1", run_id
        )
        == 0
    )
    assert (
        await runtime.pool.fetchval("SELECT spent_usd FROM sector_analysis WHERE id=$1", run_id)
        == 0
    )


async def test_a_budget_stops_analyses_through_the_real_client(
    runtime: Runtime, workers: Any
) -> None:
    """Two analyses through `AnthropicLLM` and the local Messages API on a $0.34 budget: the
    first to reserve ($0.32 at most) is sent and settled at its real cost; the other does not
    fit beside it, nor after it, and never reaches the server."""
    fake = await FakeAnthropic().start()
    fake.text_blocks = ["A deep analysis of the company. " * 20]
    runtime.use_llm(AnthropicLLM(API_KEY, base_url=fake.base_url, timeout=HANG))
    try:
        await workers(queues=["stock-analysis"])
        sub, stocks = await make_stocks(runtime, 2)
        run_id = await runtime.pool.fetchval(
            "UPDATE sector_analysis SET budget_usd = 0.34 FROM sub_sector ss "
            "WHERE ss.id = $1 AND sector_analysis.id = ss.sector_analysis_id "
            "RETURNING sector_analysis.id",
            sub,
        )
        jobs = [await enqueue("stock-analysis", {"stock_id": s}, runtime=runtime) for s in stocks]
        for job in jobs:
            with contextlib.suppress(JobFailedError):
                await job.wait_until_finished(timeout=HANG, block=0.5)
        q = runtime.queues["stock-analysis"]
        states = {j.id: (await q.get_job(j.id)) for j in jobs}
        failed = [j for j in states.values() if j is not None and j.state == JobState.FAILED]
        sent = [j for j in states.values() if j is not None and j.state == JobState.COMPLETED]
        assert (len(sent), len(failed)) == (1, 1)
        assert failed[0].error_type == "BUDGET_EXCEEDED" and failed[0].attempts_made == 1
        assert len(fake.requests) == 1
        assert fake.requests[0].body["max_tokens"] == 16000
        statuses = dict(
            (r["id"], r["status"])
            for r in await runtime.pool.fetch(
                "SELECT id, status FROM stock WHERE id = ANY($1::uuid[])", stocks
            )
        )
        assert sorted(statuses.values()) == ["failed", "judging"]
        # spent is what the client priced the call at (`LLMResult.cost_usd`, as recorded)
        real = await runtime.pool.fetchval(
            "SELECT cost_usd FROM llm_usage WHERE job_id=$1", sent[0].id
        )
        spent = await runtime.pool.fetchval(
            "SELECT spent_usd FROM sector_analysis WHERE id=$1", run_id
        )
        assert spent == real > 0
        await reservations_settled(runtime, run_id)
    finally:
        await fake.close()


async def test_the_daily_budget_refuses_across_runs(
    make_runtime: Any, workers: Any, prefix: str
) -> None:
    """One run's research spends part of the organisation's day; the next run's research would
    fit the daily budget alone, but not beside what the first spent."""
    org = f"org-{prefix}"
    first_rt: Runtime = await make_runtime(budget_org=org)
    first_workers = Workers(first_rt, queues=["sector-research"])
    task = asyncio.create_task(first_workers.run())
    try:
        first = await start_sector_research("Energy", "u", runtime=first_rt)
        await wait_row(
            first_rt.pool,
            "SELECT status = 'awaiting_approval' FROM sector_analysis WHERE id=$1",
            first,
        )
    finally:
        await first_workers.close()
        await asyncio.wait_for(task, HANG)  # bounds a hang only
    spent_today = await first_rt.pool.fetchval(
        "SELECT spent_usd FROM budget_day WHERE org=$1 AND day=(now() AT TIME ZONE 'UTC')::date",
        org,
    )
    assert spent_today == await first_rt.pool.fetchval(
        "SELECT spent_usd FROM sector_analysis WHERE id=$1", first
    )
    assert spent_today > 0
    ask = research_prompt("Materials")
    research = LLMCall(
        kind="complete",
        tier="research",
        model=first_rt.settings.model_research,
        system=ask.system,
        context=tuple(ask.context),
        prompt=ask.prompt,
        max_tokens=16000,
        web_search=True,
    )
    daily = estimate_call(research).cost_usd + float(spent_today) / 2

    rt: Runtime = await make_runtime(budget_org=org, daily_budget_usd=daily)
    await workers(queues=["sector-research"])
    second = await start_sector_research("Materials", "u", runtime=rt)
    row = await wait_row(
        rt.pool,
        "SELECT row(status, error_message) FROM sector_analysis WHERE id=$1 "
        "AND status <> 'researching'",
        second,
    )
    assert row[0] == "budget_exceeded"
    assert "daily budget exhausted" in row[1] and org in row[1]
    assert await rt.pool.fetchval("SELECT spent_usd FROM sector_analysis WHERE id=$1", second) == 0
    out = await status_output(
        rt, second, PIPELINE_BUDGET_ORG=org, PIPELINE_DAILY_BUDGET_USD=str(daily)
    )
    assert re.search(
        rf"^today \(\S+ UTC\): spent \${spent_today:.2f} of \${daily:.2f} daily budget \(\d+%\)$",
        out,
        re.M,
    ), out
    assert "spent $0.00 of $5.00 budget (0%); budget exceeded: calls were refused" in out


async def test_a_budget_lowered_mid_run_refuses_the_ranking(runtime: Runtime, workers: Any) -> None:
    """The budget is a column read at every call: lowered to what the research spent, the
    approved sub-sector's ranking is refused (not retried, although its queue allows three
    attempts), the sub-sector fails, and the run ends budget_exceeded with its research kept."""
    await workers(queues=["sector-research", "stock-ranking"])
    pool = runtime.pool
    run_id = await start_sector_research("Financials", "u", runtime=runtime)
    await wait_row(
        pool, "SELECT status = 'awaiting_approval' FROM sector_analysis WHERE id=$1", run_id
    )
    await pool.execute("UPDATE sector_analysis SET budget_usd = spent_usd WHERE id=$1", run_id)
    sub = await pool.fetchval(
        "SELECT id FROM sub_sector WHERE sector_analysis_id=$1 ORDER BY name LIMIT 1", run_id
    )
    job = await approve_subsector(sub, runtime=runtime)
    await wait_row(
        pool, "SELECT status = 'budget_exceeded' FROM sector_analysis WHERE id=$1", run_id
    )
    row = await pool.fetchrow("SELECT status, error_message FROM sub_sector WHERE id=$1", sub)
    assert row["status"] == "failed" and "BUDGET_EXCEEDED" in row["error_message"]
    assert await pool.fetchval("SELECT count(*) FROM stock WHERE sub_sector_id=$1", sub) == 0
    assert await pool.fetchval("SELECT research FROM sector_analysis WHERE id=$1", run_id)
    ranking = await failed_job(runtime, "stock-ranking", job.id)
    assert (ranking.max_attempts, ranking.attempts_made) == (3, 1)
    await reservations_settled(runtime, run_id)
