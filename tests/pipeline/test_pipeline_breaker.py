"""An overloaded provider in the middle of a run: with the shared limits' breaker, analyses
(one attempt each) wait for the model instead of failing, the breaker opens and closes, and
the jobs' errors say why they waited."""

from __future__ import annotations

from typing import Any

import pytest
from pipeline_helpers import rows_settled, wait_row

from pipeline.ai.offline import Fault, OfflineLLM
from pipeline.flow import approve_subsector, start_sector_research
from pipeline.runtime import Runtime

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


async def test_an_overload_defers_analyses_and_no_stock_fails(
    make_runtime: Any, workers: Any
) -> None:
    rt: Runtime = await make_runtime(
        limits="shared", breaker_failures=2, breaker_window=60.0, breaker_cooldown=0.2
    )
    # the first 4 analysis calls are answered 529 "overloaded" (NETWORK_ERROR)
    rt.use_llm(
        OfflineLLM(faults=(Fault("overloaded", times=4, retry_after=0.05, tiers={"analysis"}),))
    )
    analysis = rt.queues["stock-analysis"]
    assert analysis.config.attempts == 1 and analysis.config.limiter is not None
    await workers()
    run_id = await start_sector_research("Utilities", "breaker-user", runtime=rt)
    await wait_row(
        rt.pool, "SELECT status = 'awaiting_approval' FROM sector_analysis WHERE id=$1", run_id
    )
    sub = await rt.pool.fetchval(
        "SELECT id FROM sub_sector WHERE sector_analysis_id=$1 ORDER BY name LIMIT 1", run_id
    )
    await approve_subsector(sub, runtime=rt)
    await wait_row(rt.pool, "SELECT status = 'completed' FROM sector_analysis WHERE id=$1", run_id)

    stocks = await rt.pool.fetch(
        "SELECT status FROM stock WHERE sub_sector_id=$1 AND rank <= 5", sub
    )
    assert [s["status"] for s in stocks] == ["completed"] * 5  # none failed for good
    state = await analysis.get_limiter_state()
    assert state.breaker is not None
    assert state.breaker.openings >= 1 and state.breaker.state == "closed"
    # the deferrals spent no attempt, and the jobs' errors named the breaker
    rows = [r for r in await rows_settled(str(run_id)) if r.job_type == "stock-analysis"]
    assert rows and all(r.status == "completed" for r in rows)
    messages = []
    for row in rows:
        job = await analysis.get_job(row.job_id)
        assert job is not None and job.attempts_made == 1
        messages.append(job.error_message or "")
    assert any("circuit breaker anthropic.claude-opus-5-5 open" in m for m in messages), messages
