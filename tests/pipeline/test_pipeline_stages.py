"""Stages against real Redis and PostgreSQL: progress, the judge loop, the fan-in race,
a 429 from the real Anthropic client, and bad payloads."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from pipeline_helpers import HANG, make_stocks, wait_row

from jobqueue import Job, JobState
from pipeline.ai import AnthropicLLM, register_fixture
from pipeline.flow import PayloadError, enqueue, start_sector_research
from pipeline.models import Verdict
from pipeline.offline_fixtures import register_offline_fixtures
from pipeline.runtime import Runtime
from pipeline.stages.base import complete_subsector_if_done

sys.path.insert(0, str(Path(__file__).parent.parent / "ai"))
from fake_anthropic import API_KEY, FakeAnthropic

pytestmark = pytest.mark.integration


async def wait_for_state(job: Job, state: JobState) -> None:
    """Wait until the job is in `state` (a deadline that only bounds a hang)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HANG
    while await job.queue.get_job_state(job.id) != state:
        assert loop.time() < deadline, f"{job.id} never became {state}"
        await asyncio.sleep(0.02)


async def progress_events(rt: Runtime, queue: str, job_id: str) -> list[int]:
    entries = await rt.redis.xrange(rt.queues[queue].keys.events)
    return [
        int(f[b"p"])
        for _, f in entries
        if f.get(b"ev") == b"progress" and f[b"id"].decode() == job_id
    ]


async def test_research_progress_and_rows(runtime: Runtime, workers: Any) -> None:
    await workers(queues=["sector-research"])
    run_id = await start_sector_research("Health Care", "u1", runtime=runtime)
    await wait_row(
        runtime.pool,
        "SELECT status = 'awaiting_approval' FROM sector_analysis WHERE id = $1",
        run_id,
    )
    assert await progress_events(runtime, "sector-research", f"sector-research:{run_id}") == [
        0,
        10,
        60,
        70,
        90,
        100,
    ]
    research = await runtime.pool.fetchval(
        "SELECT research FROM sector_analysis WHERE id=$1", run_id
    )
    assert research and len(research) > 100


async def test_judge_approves_on_second_try(runtime: Runtime, workers: Any) -> None:
    def verdict(prompt: str, seed_key: str, rng: Any) -> dict[str, Any]:
        attempt = int(seed_key.rpartition(":")[2])
        return {
            "approved": attempt >= 2,
            "score": 8 if attempt >= 2 else 4,
            "reasons": [f"reason for attempt {attempt}"],
        }

    register_fixture(Verdict, verdict)
    try:
        await workers(queues=["stock-analysis", "judge-review", "format-insights"])
        sub, [stock] = await make_stocks(runtime, 1)
        await enqueue("stock-analysis", {"stock_id": stock}, runtime=runtime)
        await wait_row(runtime.pool, "SELECT status = 'completed' FROM stock WHERE id=$1", stock)
        rows = await runtime.pool.fetch(
            "SELECT attempt, approved, variation FROM stock_analysis WHERE stock_id=$1 "
            "ORDER BY attempt",
            stock,
        )
        assert [(r["attempt"], r["approved"]) for r in rows] == [(1, False), (2, True)]
        assert rows[1]["variation"]["judge_reasons"] == ["reason for attempt 1"]
        assert rows[1]["variation"]["angle"]
        # one judge job: the revise loop is its steps, apart from its attempts (errors)
        judge = await runtime.queues["judge-review"].get_job(f"judge-review:{stock}")
        assert judge is not None and judge.state == JobState.COMPLETED
        assert judge.step == 1 and judge.attempts_made == 1
        assert judge.result["attempt"] == 2 and judge.result["approved"]
        # on its own (no ranking waits for it) a stock's flow does not complete its sub-sector
        assert (
            await runtime.pool.fetchval("SELECT status FROM sub_sector WHERE id=$1", sub)
            == "analyzing"
        )
    finally:
        register_offline_fixtures(force=True)


async def test_judge_gives_up_after_three_rejections(runtime: Runtime, workers: Any) -> None:
    register_fixture(
        Verdict,
        lambda p, k, r: {"approved": False, "score": 2, "reasons": ["thin", "no valuation"]},
    )
    try:
        await workers(queues=["stock-analysis", "judge-review", "format-insights"])
        sub, [stock] = await make_stocks(runtime, 1)
        await enqueue("stock-analysis", {"stock_id": stock}, runtime=runtime)
        await wait_row(runtime.pool, "SELECT status = 'failed' FROM stock WHERE id=$1", stock)
        row = await runtime.pool.fetchrow(
            "SELECT rejections, final_reasons FROM stock WHERE id=$1", stock
        )
        assert row["rejections"] == 3 and "no valuation" in row["final_reasons"]
        attempts = await runtime.pool.fetchval(
            "SELECT max(attempt) FROM stock_analysis WHERE stock_id=$1", stock
        )
        assert attempts == 3
        # the judge fails after its third rejection, and the stock's format job with it
        judge = await runtime.queues["judge-review"].get_job(f"judge-review:{stock}")
        assert judge is not None
        await wait_for_state(judge, JobState.FAILED)
        judge = await runtime.queues["judge-review"].get_job(f"judge-review:{stock}")
        assert judge is not None and judge.error_type == "JUDGE_REJECTION"
        assert judge.step == 2 and judge.attempts_made == 1
        fmt = await runtime.queues["format-insights"].get_job(f"format-insights:{stock}")
        assert fmt is not None
        await wait_for_state(fmt, JobState.FAILED)
        assert sub
    finally:
        register_offline_fixtures(force=True)


async def test_fan_in_race_completes_subsector_once(runtime: Runtime) -> None:
    """Two last stocks finishing at the same moment: exactly one marks the sub-sector."""
    for _ in range(10):
        sub, stocks = await make_stocks(runtime, 2, status="formatting")
        barrier = asyncio.Barrier(2)

        async def finish(stock: UUID, sub: UUID = sub, barrier: asyncio.Barrier = barrier) -> bool:
            async with runtime.pool.acquire() as conn, conn.transaction():
                await conn.execute("UPDATE stock SET status='completed' WHERE id=$1", stock)
                await barrier.wait()  # both stocks updated, neither committed
                return await complete_subsector_if_done(conn, sub, 5)

        results = await asyncio.gather(*(finish(s) for s in stocks))
        assert sorted(results) == [False, True]
        assert (
            await runtime.pool.fetchval("SELECT status FROM sub_sector WHERE id=$1", sub)
            == "completed"
        )


async def test_429_from_real_client_defers_without_spending_an_attempt(
    runtime: Runtime, workers: Any
) -> None:
    fake = await FakeAnthropic().start()
    fake.text_blocks = ["A deep analysis of the company. " * 20]
    llm = AnthropicLLM(API_KEY, base_url=fake.base_url, timeout=HANG)
    runtime.use_llm(llm)
    try:
        fake.enqueue("429-ms")  # retry-after-ms: 1500, then "ok"
        await workers(queues=["stock-analysis"])
        _, [stock] = await make_stocks(runtime, 1)
        job = await enqueue("stock-analysis", {"stock_id": stock}, runtime=runtime)
        q = runtime.queues["stock-analysis"]

        await job.wait_until_finished(timeout=HANG)
        got = await q.get_job(job.id)
        assert got is not None and got.state == JobState.COMPLETED
        assert got.max_attempts == 1 and got.attempts_made == 1  # the 429 spent nothing
        events = [
            f
            for _, f in await runtime.redis.xrange(q.keys.events)
            if f.get(b"id") == job.id.encode()
        ]
        retry = next(f for f in events if f[b"ev"] == b"retrying")
        assert retry[b"et"] == b"RATE_LIMIT" and int(retry[b"delay"]) == 1500
        assert len(fake.requests) == 2
        # its judge, its parent in the stock's flow, runs now (or ran already)
        judge = await runtime.queues["judge-review"].get_job(f"judge-review:{stock}")
        assert judge is not None and judge.state != JobState.WAITING_CHILDREN
    finally:
        await fake.close()


@pytest.mark.parametrize(
    ("job_type", "payload"),
    [
        (
            "sector-research",
            {"sector_analysis_id": "not-a-uuid", "user_id": "u", "sector_name": "Tech"},
        ),
        (
            "sector-research",
            {"sector_analysis_id": str(UUID(int=1)), "user_id": "u", "sector_name": ""},
        ),
        ("stock-analysis", {"stock_id": str(UUID(int=1)), "attempt": 0}),
        ("stock-analysis", {"stock_id": str(UUID(int=1)), "extra": 1}),
        ("judge-review", {}),
        ("no-such-stage", {}),
    ],
)
async def test_bad_payloads_write_nothing(
    runtime: Runtime, job_type: str, payload: dict[str, Any]
) -> None:
    before = await runtime.pool.fetchval("SELECT count(*) FROM job_status")
    with pytest.raises(PayloadError):
        await enqueue(job_type, payload, runtime=runtime)
    assert await runtime.pool.fetchval("SELECT count(*) FROM job_status") == before
    assert [k async for k in runtime.redis.scan_iter(match=f"{runtime.settings.prefix}:*")] == []


async def test_start_rejects_bad_sector_before_writing(runtime: Runtime) -> None:
    before = await runtime.pool.fetchval("SELECT count(*) FROM sector_analysis")
    with pytest.raises(PayloadError):
        await start_sector_research("   ", "u", runtime=runtime)
    assert await runtime.pool.fetchval("SELECT count(*) FROM sector_analysis") == before


async def test_a_stage_that_cannot_succeed_fails_its_stock_and_the_run_finishes(
    runtime: Runtime, workers: Any
) -> None:
    from pipeline.ai import Fault, OfflineLLM

    # formatting hits an auth error (not retried): the stock fails, the sub-sector completes
    runtime.use_llm(
        OfflineLLM(faults=[Fault("auth", times=100, tiers={"format"})], reject_first_attempt=False)
    )
    await workers(queues=["stock-analysis", "judge-review", "format-insights"])
    sub, [stock] = await make_stocks(runtime, 1)
    await enqueue("stock-analysis", {"stock_id": stock}, runtime=runtime)
    await wait_row(runtime.pool, "SELECT status = 'failed' FROM stock WHERE id=$1", stock)
    reasons = await runtime.pool.fetchval("SELECT final_reasons FROM stock WHERE id=$1", stock)
    assert "formatting failed: API_ERROR" in reasons[0]
    assert sub
    q = runtime.queues["format-insights"]
    failed = await q.get_job_ids("failed")
    job = await q.get_job(failed[0])
    assert job is not None and job.error_type == "API_ERROR" and job.attempts_made == 1
