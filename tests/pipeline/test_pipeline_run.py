"""A whole run in-process against the offline model, real Redis and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from pipeline_helpers import wait_row

from pipeline.ai import offline_should_reject
from pipeline.flow import approve_subsector, start_sector_research
from pipeline.runtime import Runtime
from pipeline.status import get_jobs_by_related_id

pytestmark = pytest.mark.integration


async def test_whole_run(runtime: Runtime, workers: Any) -> None:
    await workers()
    run_id = await start_sector_research("Technology", "user-1", runtime=runtime)
    pool = runtime.pool
    await wait_row(
        pool, "SELECT status = 'awaiting_approval' FROM sector_analysis WHERE id=$1", run_id
    )
    subs = await pool.fetch("SELECT id, status FROM sub_sector WHERE sector_analysis_id=$1", run_id)
    assert 3 <= len(subs) <= 8 and all(s["status"] == "awaiting_approval" for s in subs)
    chosen = subs[0]["id"]
    job1 = await approve_subsector(chosen, runtime=runtime)
    job2 = await approve_subsector(chosen, runtime=runtime)
    assert job1.id == job2.id
    await wait_row(pool, "SELECT status = 'completed' FROM sub_sector WHERE id=$1", chosen)
    stocks = await pool.fetch(
        "SELECT ticker, rank, status, rejections FROM stock WHERE sub_sector_id=$1 ORDER BY rank",
        chosen,
    )
    assert len(stocks) == 10
    top = [s for s in stocks if s["rank"] <= 5]
    assert all(s["status"] == "completed" for s in top)
    assert all(s["status"] == "ranked" for s in stocks if s["rank"] > 5)
    # the offline judge rejects the first analysis of about a third of tickers: re-runs happen
    for s in top:
        assert s["rejections"] == (1 if offline_should_reject(s["ticker"], 1) else 0)
    insights = await pool.fetch(
        "SELECT a.insights, a.attempt FROM stock_analysis a JOIN stock s ON s.id = a.stock_id "
        "WHERE s.sub_sector_id = $1 AND a.status = 'completed'",
        chosen,
    )
    assert len(insights) == 5
    assert all(
        set(i["insights"]) >= {"thesis", "catalysts", "risks", "valuation", "verdict", "confidence"}
        for i in insights
    )
    assert (
        await pool.fetchval("SELECT status FROM sector_analysis WHERE id=$1", run_id) == "completed"
    )

    # the status mirror converges: every job of the run completed with progress 100
    async def mirrored() -> bool:
        rows = await get_jobs_by_related_id(str(run_id))
        return bool(rows) and all(r.status == "completed" and r.progress == 100 for r in rows)

    import asyncio

    for _ in range(500):
        if await mirrored():
            break
        await asyncio.sleep(0.02)
    rows = await get_jobs_by_related_id(str(run_id))
    assert all(r.status == "completed" and r.progress == 100 for r in rows), rows
    types = sorted({r.job_type for r in rows})
    assert types == [
        "format-insights",
        "judge-review",
        "sector-research",
        "stock-analysis",
        "stock-ranking",
    ]
    usage = await pool.fetchval("SELECT count(*) FROM llm_usage WHERE related_id=$1", str(run_id))
    assert usage >= 2 + 1 + 5 + 5 + 5
