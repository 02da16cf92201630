"""A whole run in-process against the offline model, real Redis and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from pipeline_helpers import rows_settled, wait_row

from pipeline.ai import offline_should_reject
from pipeline.flow import approve_subsector, start_sector_research
from pipeline.runtime import Runtime

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
    rows = await rows_settled(str(run_id))
    types = sorted({r.job_type for r in rows})
    assert types == [
        "format-insights",
        "judge-review",
        "sector-research",
        "stock-analysis",
        "stock-ranking",
    ]
    # each stage reports its documented progress points, in order: the ranking across its
    # fan-out and fan-in steps, the judge once per analysis it judges (its steps)
    expected = {
        "sector-research": [0, 10, 60, 70, 90, 100],
        "stock-ranking": [0, 10, 70, 90, 100],
        "stock-analysis": [0, 10, 80, 90, 100],
        "judge-review": [0, 20, 70, 90, 100],
        "format-insights": [0, 20, 70, 90, 100],
    }
    for job_type, points in expected.items():
        job_id = next(r.job_id for r in rows if r.job_type == job_type)
        entries = await runtime.redis.xrange(runtime.queues[job_type].keys.events)
        seen = [
            int(f[b"p"])
            for _, f in entries
            if f.get(b"ev") == b"progress" and f[b"id"].decode() == job_id
        ]
        job = await runtime.queues[job_type].get_job(job_id)
        assert job is not None
        steps = 1 if job_type == "stock-ranking" else job.step + 1
        assert seen == points * steps, (job_type, seen)
    usage = await pool.fetchval("SELECT count(*) FROM llm_usage WHERE related_id=$1", str(run_id))
    assert usage >= 2 + 1 + 5 + 5 + 5


async def test_cleanup_old_jobs_redis_and_postgres(runtime: Runtime, workers: Any) -> None:
    from pipeline import cleanup_old_jobs

    await workers(queues=["sector-research"])
    run_id = await start_sector_research("Utilities", "u2", runtime=runtime)
    await wait_row(
        runtime.pool, "SELECT status = 'awaiting_approval' FROM sector_analysis WHERE id=$1", run_id
    )
    job_id = f"sector-research:{run_id}"
    q = runtime.queues["sector-research"]
    # the mirror has applied the job's last event: nothing re-creates the row after cleanup
    await rows_settled(str(run_id))
    assert (await cleanup_old_jobs(1.0)) == (0, 0)  # nothing is a day old
    result = await cleanup_old_jobs(0)
    assert result.redis >= 1 and result.postgres >= 1
    assert await q.get_job(job_id) is None
    assert (
        await runtime.pool.fetchval("SELECT count(*) FROM job_status WHERE job_id=$1", job_id) == 0
    )
