"""The pipeline on engine flows (`pipeline.fanout`): the ranking fans out one tree per stock
(format <- judge <- analysis), waits in `waiting-children`, and completes the sub-sector in
its next step once every tree has ended, whatever their outcomes; the status rows follow the
flow; a ranking killed after its fan-out adds nothing twice; `enqueue` refuses the stages
that only run inside a stock's flow."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import pytest
from pipeline_helpers import HANG, make_stocks, wait_row

from jobqueue import JobState
from pipeline.ai import register_fixture
from pipeline.flow import PayloadError, enqueue
from pipeline.models import Verdict
from pipeline.offline_fixtures import register_offline_fixtures
from pipeline.runtime import Runtime
from pipeline.status import get_job_status, get_jobs_by_related_id

pytestmark = pytest.mark.integration

STAGES = ["stock-ranking", "stock-analysis", "judge-review", "format-insights"]


async def ranked(rt: Runtime, sub: UUID) -> list[tuple[UUID, str]]:
    rows = await rt.pool.fetch(
        "SELECT id, ticker FROM stock WHERE sub_sector_id = $1 AND rank <= $2 ORDER BY rank",
        sub,
        rt.settings.stocks_to_analyze,
    )
    return [(r["id"], r["ticker"]) for r in rows]


async def test_fan_out_and_fan_in_with_mixed_outcomes(runtime: Runtime, workers: Any) -> None:
    doomed: set[str] = set()

    def verdict(prompt: str, seed_key: str, rng: Any) -> dict[str, Any]:
        ticker = seed_key.rpartition(":")[0]
        return {"approved": ticker not in doomed, "score": 7, "reasons": [f"{ticker} is thin"]}

    assert runtime.llm  # the offline model registers its fixtures first: ours replaces its judge
    register_fixture(Verdict, verdict)
    try:
        sub, _ = await make_stocks(runtime, 0)
        run = await runtime.pool.fetchval(
            "SELECT sector_analysis_id FROM sub_sector WHERE id = $1", sub
        )
        # the ranking alone first: it fans out and waits for the stocks' trees
        await workers(queues=["stock-ranking"])
        ranking = await enqueue("stock-ranking", {"sub_sector_id": sub}, runtime=runtime)
        q = runtime.queues["stock-ranking"]
        await wait_for(lambda: q.get_job_state(ranking.id), JobState.WAITING_CHILDREN)
        stocks = await ranked(runtime, sub)
        assert len(stocks) == runtime.settings.stocks_to_analyze
        doomed.add(stocks[0][1])  # the judge rejects this one every time
        job = await q.get_job(ranking.id)
        assert job is not None
        assert sorted(await job.pending_children()) == sorted(
            f"format-insights:format-insights:{sid}" for sid, _ in stocks
        )
        # its status row waits too, and every job of the trees has a row of the run
        row = await get_job_status(ranking.id)
        assert row is not None and row.status in ("waiting", "active")
        await wait_row(
            runtime.pool,
            "SELECT status = 'waiting' FROM job_status WHERE job_id = $1",
            ranking.id,
        )
        kinds = [r.job_type for r in await get_jobs_by_related_id(str(run))]
        assert kinds.count("format-insights") == kinds.count("judge-review") == len(stocks)

        await workers(queues=STAGES[1:])
        await wait_for(lambda: q.get_job_state(ranking.id), JobState.COMPLETED)
        assert (
            await runtime.pool.fetchval("SELECT status FROM sub_sector WHERE id = $1", sub)
            == "completed"
        )
        done = await q.get_job(ranking.id)
        assert done is not None and done.state == JobState.COMPLETED and done.step == 1
        failed_id = str(stocks[0][0])
        assert done.result["failed"] == [failed_id]
        assert sorted(done.result["stock_ids"]) == sorted(str(s) for s, _ in stocks)
        statuses = dict(
            await runtime.pool.fetch(
                "SELECT ticker, status FROM stock WHERE sub_sector_id = $1 AND rank <= $2",
                sub,
                runtime.settings.stocks_to_analyze,
            )
        )
        assert statuses.pop(stocks[0][1]) == "failed"
        assert set(statuses.values()) == {"completed"}
        assert await runtime.pool.fetchval(
            "SELECT status FROM sector_analysis WHERE id = $1", run
        ) in ("completed", "in_progress")
        await wait_row(
            runtime.pool,
            "SELECT status = 'completed' AND progress = 100 FROM job_status WHERE job_id = $1",
            ranking.id,
        )
        fmt = await get_job_status(f"format-insights:{failed_id}")
        judge = await get_job_status(f"judge-review:{failed_id}")
        await wait_row(
            runtime.pool,
            "SELECT status = 'failed' FROM job_status WHERE job_id = $1",
            f"format-insights:{failed_id}",
        )
        assert fmt is not None and judge is not None
    finally:
        register_offline_fixtures(force=True)


async def test_judge_and_format_run_only_inside_a_stocks_flow(runtime: Runtime) -> None:
    for job_type in ("judge-review", "format-insights"):
        with pytest.raises(PayloadError, match="runs in its stock's flow"):
            await enqueue(job_type, {"stock_id": str(UUID(int=1))}, runtime=runtime)
    with pytest.raises(PayloadError, match="job_id is refused"):
        await enqueue(
            "stock-analysis", {"stock_id": str(UUID(int=1))}, job_id="mine", runtime=runtime
        )
    assert [k async for k in runtime.redis.scan_iter(match=f"{runtime.settings.prefix}:*")] == []


async def test_a_stock_enqueued_twice_is_one_tree(runtime: Runtime) -> None:
    _, [stock] = await make_stocks(runtime, 1)
    first = await enqueue("stock-analysis", {"stock_id": stock}, runtime=runtime)
    again = await enqueue("stock-analysis", {"stock_id": stock}, runtime=runtime)
    assert first.id == again.id == f"stock-analysis:{stock}:1"
    counts = {t: await runtime.queues[t].get_job_counts() for t in STAGES[1:]}
    assert counts["stock-analysis"]["waiting"] == 1
    assert counts["judge-review"]["waiting-children"] == 1
    assert counts["format-insights"]["waiting-children"] == 1


async def wait_for(read: Any, want: object) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HANG
    while (got := await read()) != want:
        assert loop.time() < deadline, f"still {got!r}, never {want!r}"
        await asyncio.sleep(0.02)
