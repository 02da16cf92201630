"""Overrides from the environment reach what they configure: `PIPELINE_QUEUES__<STAGE>__<FIELD>`
a stage's `QueueConfig` (and its jobs and workers), `PIPELINE_MAX_REJECTIONS` how many judge
rejections fail a stock, `PIPELINE_STOCKS_TO_ANALYZE` how many stocks a ranking fans out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pydantic
import pytest
from pipeline_helpers import make_stocks, rows_settled, wait_row

from jobqueue import RateLimit
from pipeline.ai import offline_should_reject, register_fixture
from pipeline.flow import approve_subsector, enqueue, start_sector_research
from pipeline.models import Verdict
from pipeline.offline_fixtures import register_offline_fixtures
from pipeline.runtime import Runtime
from pipeline.settings import JOB_TYPES, Settings

pytestmark = pytest.mark.integration

MakeRuntime = Callable[..., Awaitable[Runtime]]

STOCK_ANALYSIS_ENV = {
    "PIPELINE_QUEUES__STOCK_ANALYSIS__ATTEMPTS": "4",
    "PIPELINE_QUEUES__STOCK_ANALYSIS__CONCURRENCY": "7",
    "PIPELINE_QUEUES__STOCK_ANALYSIS__TIMEOUT": "12.5",
    "PIPELINE_QUEUES__STOCK_ANALYSIS__RATE_MAX": "11",
    "PIPELINE_QUEUES__STOCK_ANALYSIS__RATE_PER": "2.5",
    "PIPELINE_QUEUES__STOCK_ANALYSIS__WORKER_CONCURRENCY": "3",
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """What these tests set is all the environment says about the pipeline."""
    import os

    for name in list(os.environ):
        if name.startswith("PIPELINE_"):
            monkeypatch.delenv(name)


def test_queue_overrides_reach_that_stages_queue_config(monkeypatch: pytest.MonkeyPatch) -> None:
    seed = {t: Settings().queue_config(t) for t in JOB_TYPES}
    for name, value in STOCK_ANALYSIS_ENV.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    config = settings.queue_config("stock-analysis")
    assert (config.attempts, config.concurrency, config.timeout) == (4, 7, 12.5)
    assert config.rate_limit == RateLimit(max=11, per=2.5)
    assert settings.queue_settings("stock-analysis").worker_concurrency == 3
    assert seed["stock-analysis"].attempts == 1  # the override changed something
    for other in JOB_TYPES:
        if other != "stock-analysis":
            assert settings.queue_config(other) == seed[other], other


def test_a_misspelt_stage_override_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_QUEUES__STOCK_ANALYSYS__ATTEMPTS", "4")
    with pytest.raises(pydantic.ValidationError, match="stock_analysys"):
        Settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PIPELINE_QUEUES__JUDGE_REVIEW__CONCURRENCY", "0"),
        ("PIPELINE_QUEUES__JUDGE_REVIEW__RATE_PER", "-1"),
        ("PIPELINE_QUEUES__JUDGE_REVIEW__ATTEMPTS", "many"),
        ("PIPELINE_MAX_REJECTIONS", "0"),
        ("PIPELINE_STOCKS_TO_ANALYZE", "11"),
    ],
)
def test_bad_overrides_are_refused_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(pydantic.ValidationError) as info:
        Settings()
    field = name.removeprefix("PIPELINE_").rsplit("__", 1)[-1].lower()
    assert field in str(info.value)


async def test_queue_overrides_reach_jobs_and_workers(
    monkeypatch: pytest.MonkeyPatch, make_runtime: MakeRuntime
) -> None:
    from pipeline.workers import Workers

    for name, value in STOCK_ANALYSIS_ENV.items():
        monkeypatch.setenv(name, value)
    rt = await make_runtime()
    queue = rt.queues["stock-analysis"]
    assert queue.config.attempts == 4 and queue.config.concurrency == 7
    _, [stock] = await make_stocks(rt, 1)
    job = await enqueue("stock-analysis", {"stock_id": stock}, runtime=rt)
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.max_attempts == 4
    workers = Workers(rt, queues=["stock-analysis", "judge-review"])
    assert [w.concurrency for w in workers.workers] == [3, 10]
    await workers.close()


@pytest.mark.parametrize(
    ("max_rejections", "outcome"),
    [("1", "failed"), ("2", "completed")],
)
async def test_max_rejections_decides_when_a_rejected_stock_fails(
    monkeypatch: pytest.MonkeyPatch,
    make_runtime: MakeRuntime,
    workers: Any,
    max_rejections: str,
    outcome: str,
) -> None:
    """The offline judge rejects NVDA's first analysis and approves any second one: one
    rejection allowed fails the stock, two let the re-run through."""
    monkeypatch.setenv("PIPELINE_MAX_REJECTIONS", max_rejections)
    rt = await make_runtime()
    assert rt.settings.max_rejections == int(max_rejections)
    await workers(queues=["stock-analysis", "judge-review", "format-insights"])
    sub, [stock] = await make_stocks(rt, 1)
    ticker = await rt.pool.fetchval("SELECT ticker FROM stock WHERE id=$1", stock)
    assert offline_should_reject(ticker, 1) and not offline_should_reject(ticker, 2)
    await enqueue("stock-analysis", {"stock_id": stock}, runtime=rt)
    await wait_row(rt.pool, "SELECT status = $2 FROM stock WHERE id=$1", stock, outcome)
    row = await rt.pool.fetchrow("SELECT rejections FROM stock WHERE id=$1", stock)
    assert row["rejections"] == 1
    analyses = await rt.pool.fetchval(
        "SELECT count(*) FROM stock_analysis WHERE stock_id=$1", stock
    )
    assert analyses == (1 if outcome == "failed" else 2)
    # the judge's steps are the loop: one analysis judged per step
    judge = await rt.queues["judge-review"].get_job(f"judge-review:{stock}")
    assert judge is not None and judge.step == analyses - 1 and sub


async def test_max_rejections_counts_every_rejection(
    monkeypatch: pytest.MonkeyPatch, make_runtime: MakeRuntime, workers: Any
) -> None:
    monkeypatch.setenv("PIPELINE_MAX_REJECTIONS", "2")
    register_fixture(Verdict, lambda p, k, r: {"approved": False, "score": 2, "reasons": ["no"]})
    try:
        rt = await make_runtime()
        await workers(queues=["stock-analysis", "judge-review", "format-insights"])
        _, [stock] = await make_stocks(rt, 1)
        await enqueue("stock-analysis", {"stock_id": stock}, runtime=rt)
        await wait_row(rt.pool, "SELECT status = 'failed' FROM stock WHERE id=$1", stock)
        assert await rt.pool.fetchval("SELECT rejections FROM stock WHERE id=$1", stock) == 2
        attempts = await rt.pool.fetchval(
            "SELECT max(attempt) FROM stock_analysis WHERE stock_id=$1", stock
        )
        assert attempts == 2
    finally:
        register_offline_fixtures(force=True)


async def test_stocks_to_analyze_decides_the_fan_out(
    monkeypatch: pytest.MonkeyPatch, make_runtime: MakeRuntime, workers: Any
) -> None:
    monkeypatch.setenv("PIPELINE_STOCKS_TO_ANALYZE", "2")
    rt = await make_runtime()
    await workers()
    run_id = await start_sector_research("Industrials", "u", runtime=rt)
    await wait_row(
        rt.pool, "SELECT status = 'awaiting_approval' FROM sector_analysis WHERE id=$1", run_id
    )
    sub = await rt.pool.fetchval(
        "SELECT id FROM sub_sector WHERE sector_analysis_id=$1 ORDER BY name LIMIT 1", run_id
    )
    await approve_subsector(sub, runtime=rt)
    # the fan-in counts two stocks too: the sub-sector completes once both are done
    await wait_row(rt.pool, "SELECT status = 'completed' FROM sub_sector WHERE id=$1", sub)
    stocks = await rt.pool.fetch(
        "SELECT rank, status FROM stock WHERE sub_sector_id=$1 ORDER BY rank", sub
    )
    assert len(stocks) == 10
    assert [s["status"] for s in stocks] == ["completed"] * 2 + ["ranked"] * 8
    analysed = await rt.pool.fetchval(
        "SELECT count(DISTINCT a.stock_id) FROM stock_analysis a JOIN stock s "
        "ON s.id = a.stock_id WHERE s.sub_sector_id = $1",
        sub,
    )
    assert analysed == 2
    rows = await rows_settled(str(run_id))
    assert len([r for r in rows if r.job_type == "format-insights"]) == 2
