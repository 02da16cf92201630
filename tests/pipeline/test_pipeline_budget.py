"""Cost budgets on real PostgreSQL: reserve/settle arithmetic, concurrent reservations against
one budget, refusals, reclaiming what a crashed holder left, where budgets come from."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from budget_helpers import a_call, amounts, day_amounts, new_run

from jobqueue import ConfigError, classify_error
from pipeline import db
from pipeline.ai import LLMError
from pipeline.budget import (
    BUDGET_EXCEEDED,
    BudgetGuard,
    check_usd,
    reclaim_expired_reservations,
    release,
    reserve,
    settle,
)
from pipeline.budget_report import get_day_budget, get_run_budget
from pipeline.runtime import Runtime

pytestmark = pytest.mark.integration


def test_amounts_and_options_are_validated() -> None:
    for bad in (-0.01, float("nan"), float("inf"), True, "5"):
        with pytest.raises(ConfigError, match="budget_usd"):
            check_usd(bad, "budget_usd")
    assert check_usd(0, "budget_usd") == 0.0
    with pytest.raises(ConfigError, match="reservation_ttl"):
        BudgetGuard(None, reservation_ttl=0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="daily_budget_usd"):
        BudgetGuard(None, daily_budget_usd=-1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="org"):
        BudgetGuard(None, org=" ")  # type: ignore[arg-type]


# -- reserve and settle ----------------------------------------------------------------------


async def test_reserve_settle_release_arithmetic(pool: asyncpg.Pool, org: str) -> None:
    run = await new_run(pool, "1.00")
    first = await reserve(pool, a_call(run), 0.3, org=org)
    second = await reserve(pool, a_call(run), 0.2, org=org)
    assert first.estimate_usd == Decimal("0.3")
    assert await amounts(pool, run) == (0, Decimal("0.5"))
    assert await day_amounts(pool, org) == (0, Decimal("0.5"))

    await settle(pool, first.id, 0.0123)  # the real cost replaces the estimate
    assert await amounts(pool, run) == (Decimal("0.0123"), Decimal("0.2"))
    await release(pool, second.id)  # a failed call spends nothing
    assert await amounts(pool, run) == (Decimal("0.0123"), 0)
    assert await day_amounts(pool, org) == (Decimal("0.0123"), 0)

    # settling or releasing twice changes nothing
    await settle(pool, first.id, 0.5)
    await release(pool, first.id)
    await settle(pool, second.id, 0.5)
    assert await amounts(pool, run) == (Decimal("0.0123"), 0)
    states = await pool.fetch(
        "SELECT state, cost_usd FROM budget_reservation WHERE run_id = $1 ORDER BY id", run
    )
    assert [(r["state"], r["cost_usd"]) for r in states] == [
        ("settled", Decimal("0.0123")),
        ("released", None),
    ]
    budget = await get_run_budget(pool, run)
    assert budget is not None and budget.line() == "spent $0.01 of $1.00 budget (1%)"


async def test_a_call_that_does_not_fit_is_refused_and_marks_the_run(
    pool: asyncpg.Pool, org: str
) -> None:
    run = await new_run(pool, "0.50")
    held = await reserve(pool, a_call(run), 0.4, org=org)
    with pytest.raises(LLMError) as refused:
        await reserve(pool, a_call(run, tier="judge"), 0.2, org=org)
    err = refused.value
    assert err.error_type == BUDGET_EXCEEDED and err.retryable is False
    assert "run budget exhausted" in err.message and "judge call" in err.message
    verdict = classify_error(err)  # the engine's view: this type, never retried
    assert verdict.error_type == BUDGET_EXCEEDED and verdict.retryable is False
    # the refusal held nothing, on the run or the day
    assert await amounts(pool, run) == (0, Decimal("0.4"))
    assert await day_amounts(pool, org) == (0, Decimal("0.4"))
    budget = await get_run_budget(pool, run)
    assert budget is not None and budget.exceeded
    assert budget.line() == (
        "spent $0.00 of $0.50 budget (0%), $0.40 reserved; budget exceeded: calls were refused"
    )
    # what fits still goes: the budget is a ceiling, not a switch
    await settle(pool, held.id, 0.1)
    await reserve(pool, a_call(run), 0.4, org=org)
    assert await amounts(pool, run) == (Decimal("0.1"), Decimal("0.4"))


async def test_a_run_without_budget_and_a_call_without_run(pool: asyncpg.Pool, org: str) -> None:
    unlimited = await new_run(pool, None)
    await reserve(pool, a_call(unlimited), 1000.0, org=org)
    none_left = await new_run(pool, "0")
    with pytest.raises(LLMError, match="run budget exhausted"):
        await reserve(pool, a_call(none_left), 0.01, org=org)
    outside = await reserve(pool, a_call(None), 0.5, org=org)  # only the day counts it
    await settle(pool, outside.id, 0.25)
    assert await day_amounts(pool, org) == (Decimal("0.25"), Decimal("1000"))


async def test_concurrent_reservations_never_exceed_the_budget(
    database_url: str, pool: asyncpg.Pool, org: str
) -> None:
    """50 calls at once against a run budget that fits 10: exactly 10 are held."""
    run = await new_run(pool, "1.00")
    wide = await db.create_pool(database_url, min_size=20, max_size=20)
    try:

        async def one() -> object:
            try:
                return await reserve(wide, a_call(run), 0.1, org=org)
            except LLMError as exc:
                return exc

        outcomes = await asyncio.gather(*(one() for _ in range(50)))
    finally:
        await wide.close()
    refused = [o for o in outcomes if isinstance(o, LLMError)]
    held = [o for o in outcomes if not isinstance(o, LLMError)]
    assert len(held) == 10 and len(refused) == 40
    assert all(e.error_type == BUDGET_EXCEEDED for e in refused)
    assert await amounts(pool, run) == (0, Decimal("1.0"))
    assert await day_amounts(pool, org) == (0, Decimal("1.0"))
    for r in held:
        await settle(pool, r.id, 0.05)  # type: ignore[attr-defined]
    assert await amounts(pool, run) == (Decimal("0.5"), 0)


async def test_concurrent_reservations_never_exceed_the_daily_budget(
    database_url: str, pool: asyncpg.Pool, org: str
) -> None:
    runs = [await new_run(pool, "100") for _ in range(5)]
    wide = await db.create_pool(database_url, min_size=20, max_size=20)
    try:

        async def one(i: int) -> str:
            try:
                await reserve(wide, a_call(runs[i % 5]), 0.1, org=org, daily_budget_usd=1.0)
            except LLMError as exc:
                return exc.message
            return "held"

        outcomes = await asyncio.gather(*(one(i) for i in range(50)))
    finally:
        await wide.close()
    assert outcomes.count("held") == 10
    assert all("daily budget exhausted" in o for o in outcomes if o != "held")
    assert await day_amounts(pool, org) == (0, Decimal("1.0"))
    total = await pool.fetchval(
        "SELECT sum(reserved_usd) FROM sector_analysis WHERE id = ANY($1::uuid[])", runs
    )
    assert total == Decimal("1.0")  # a refusal by the day holds nothing on the run either


async def test_the_daily_budget_counts_every_run(pool: asyncpg.Pool, org: str) -> None:
    first, second = await new_run(pool, "5"), await new_run(pool, "5")
    r = await reserve(pool, a_call(first), 0.6, org=org, daily_budget_usd=1.0)
    await settle(pool, r.id, 0.7)  # a call may cost more than its estimate (continuations)
    with pytest.raises(LLMError, match="daily budget exhausted") as refused:
        await reserve(pool, a_call(second), 0.4, org=org, daily_budget_usd=1.0)
    assert org in refused.value.message
    await reserve(pool, a_call(second), 0.3, org=org, daily_budget_usd=1.0)
    await reserve(pool, a_call(second), 0.4, org=f"{org}-other", daily_budget_usd=1.0)
    day = await get_day_budget(pool, org, 1.0)
    assert (day.spent_usd, day.reserved_usd) == (0.7, 0.3)
    assert day.line().endswith("spent $0.70 of $1.00 daily budget (70%), $0.30 reserved")
    second_budget = await get_run_budget(pool, second)
    assert second_budget is not None and second_budget.exceeded


# -- what a crashed holder leaves ------------------------------------------------------------


async def test_the_next_delivery_of_a_job_reclaims_its_own_reservation(
    pool: asyncpg.Pool, org: str
) -> None:
    run = await new_run(pool, "0.50")
    call = a_call(run, job_id="stock-analysis:x:1", attempt=1, call_index=0)
    crashed = await reserve(pool, call, 0.4, org=org)  # never settled: the worker died
    again = await reserve(pool, call, 0.4, org=org)  # the job runs again: the call fits again
    assert await amounts(pool, run) == (0, Decimal("0.4"))
    state = await pool.fetchval("SELECT state FROM budget_reservation WHERE id=$1", crashed.id)
    assert state == "expired"
    await settle(pool, again.id, 0.02)
    assert await amounts(pool, run) == (Decimal("0.02"), 0)
    assert await day_amounts(pool, org) == (Decimal("0.02"), 0)


async def test_an_expired_reservation_is_reclaimed_when_a_call_needs_the_room(
    pool: asyncpg.Pool, org: str
) -> None:
    run = await new_run(pool, "0.50")
    crashed = await reserve(pool, a_call(run, job_id="a", attempt=1), 0.4, org=org, ttl=3600)
    with pytest.raises(LLMError):  # held, and not expired: it counts
        await reserve(pool, a_call(run, job_id="b", attempt=1), 0.4, org=org)
    # the TTL passes (moved instead of waited for)
    await pool.execute("UPDATE budget_reservation SET expires_at = now() WHERE id=$1", crashed.id)
    await pool.execute("UPDATE sector_analysis SET budget_exceeded_at = NULL WHERE id=$1", run)
    later = await reserve(pool, a_call(run, job_id="b", attempt=1), 0.4, org=org)
    assert await amounts(pool, run) == (0, Decimal("0.4"))
    budget = await get_run_budget(pool, run)
    assert budget is not None and not budget.exceeded  # the call went through in the end
    # the holder was not dead after all: its late settle spends, and holds nothing back
    await settle(pool, crashed.id, 0.05)
    assert await amounts(pool, run) == (Decimal("0.05"), Decimal("0.4"))
    await release(pool, later.id)
    assert await amounts(pool, run) == (Decimal("0.05"), 0)
    assert await day_amounts(pool, org) == (Decimal("0.05"), 0)


async def test_reclaim_expired_reservations(pool: asyncpg.Pool, org: str) -> None:
    run = await new_run(pool, "5")
    held = [await reserve(pool, a_call(run), 0.1, org=org) for _ in range(3)]
    await pool.execute(
        "UPDATE budget_reservation SET expires_at = now() WHERE id = ANY($1::bigint[])",
        [h.id for h in held[:2]],
    )
    assert await reclaim_expired_reservations(pool) >= 2
    assert await amounts(pool, run) == (0, Decimal("0.1"))
    assert await day_amounts(pool, org) == (0, Decimal("0.1"))


# -- where budgets come from -----------------------------------------------------------------


def test_budget_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import pydantic

    from pipeline.settings import Settings

    for name in list(os.environ):
        if name.startswith("PIPELINE_"):
            monkeypatch.delenv(name)
    default = Settings()
    assert (default.run_budget_usd, default.daily_budget_usd, default.budget_org) == (
        5.0,
        None,
        "default",
    )
    monkeypatch.setenv("PIPELINE_RUN_BUDGET_USD", "2.5")
    monkeypatch.setenv("PIPELINE_DAILY_BUDGET_USD", "40")
    monkeypatch.setenv("PIPELINE_BUDGET_ORG", "acme")
    monkeypatch.setenv("PIPELINE_BUDGET_RESERVATION_TTL", "120")
    s = Settings()
    assert (s.run_budget_usd, s.daily_budget_usd, s.budget_org) == (2.5, 40.0, "acme")
    assert s.budget_reservation_ttl == 120.0
    for name, bad in (
        ("PIPELINE_RUN_BUDGET_USD", "-1"),
        ("PIPELINE_RUN_BUDGET_USD", "inf"),
        ("PIPELINE_DAILY_BUDGET_USD", "nan"),
        ("PIPELINE_BUDGET_RESERVATION_TTL", "0"),
    ):
        with monkeypatch.context() as m:
            m.setenv(name, bad)
            field = name.removeprefix("PIPELINE_").lower()
            with pytest.raises(pydantic.ValidationError, match=field):
                Settings()


async def test_a_run_gets_its_budget_when_it_starts(make_runtime: Any) -> None:
    from pipeline.flow import start_sector_research

    rt: Runtime = await make_runtime(run_budget_usd=2.5)
    default = await start_sector_research("Tech", "u", runtime=rt)
    own = await start_sector_research("Tech", "u", budget_usd=0.75, runtime=rt)
    budgets = {
        r["id"]: r["budget_usd"]
        for r in await rt.pool.fetch(
            "SELECT id, budget_usd FROM sector_analysis WHERE id = ANY($1::uuid[])", [default, own]
        )
    }
    assert budgets == {default: Decimal("2.5"), own: Decimal("0.75")}
    before = await rt.pool.fetchval("SELECT count(*) FROM sector_analysis")
    with pytest.raises(ConfigError, match=r"budget_usd .* got -1"):
        await start_sector_research("Tech", "u", budget_usd=-1, runtime=rt)
    assert await rt.pool.fetchval("SELECT count(*) FROM sector_analysis") == before
