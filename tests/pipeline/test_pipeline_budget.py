"""Cost budgets on real PostgreSQL: the estimate, reserve/settle arithmetic, concurrent
reservations against one budget, refusals, reclaiming what a crashed holder left, the guard
seam around model calls."""

from __future__ import annotations

import asyncio
import math
import uuid
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from jobqueue import ConfigError, classify_error
from pipeline import db
from pipeline.ai import LLMError, LLMResult, OfflineLLM, Usage, cost_usd
from pipeline.ai.base import PromptBlock
from pipeline.ai.estimate import actual_cost, estimate_call, estimate_tokens
from pipeline.ai.guard import GuardedLLM, LLMCall, current_scope, job_scope
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
from pipeline.models import Verdict
from pipeline.runtime import Runtime

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(runtime: Runtime) -> asyncpg.Pool:
    return runtime.pool


@pytest.fixture
def org() -> str:
    """An organisation of this test's own: the day's row is not shared with other tests."""
    return f"org-{uuid.uuid4()}"


async def new_run(pool: asyncpg.Pool, budget: str | None) -> UUID:
    run: UUID = await pool.fetchval(
        "INSERT INTO sector_analysis (user_id, sector_name, budget_usd) VALUES ('u', 'Tech', $1) "
        "RETURNING id",
        None if budget is None else Decimal(budget),
    )
    return run


def a_call(run_id: UUID | None, **fields: Any) -> LLMCall:
    values: dict[str, Any] = {
        "kind": "complete",
        "tier": "analysis",
        "model": "claude-opus-5-5",
        "system": "You are an analyst.",
        "prompt": "Analyse NVDA.",
        "max_tokens": 1000,
        "run_id": run_id,
    }
    values.update(fields)
    return LLMCall(**values)


async def amounts(pool: asyncpg.Pool, run_id: UUID) -> tuple[Decimal, Decimal]:
    row = await pool.fetchrow(
        "SELECT spent_usd, reserved_usd FROM sector_analysis WHERE id = $1", run_id
    )
    return row["spent_usd"], row["reserved_usd"]


async def day_amounts(pool: asyncpg.Pool, org: str) -> tuple[Decimal, Decimal]:
    row = await pool.fetchrow(
        "SELECT spent_usd, reserved_usd FROM budget_day WHERE org = $1 "
        "AND day = (now() AT TIME ZONE 'UTC')::date",
        org,
    )
    return row["spent_usd"], row["reserved_usd"]


# -- the estimate ----------------------------------------------------------------------------


def test_estimate_is_the_worst_case_of_one_call() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abc") == 1
    assert estimate_tokens("x" * 35) == 10
    assert estimate_tokens("x" * 36) == 11  # rounded up
    call = a_call(None, system="s" * 350, prompt="p" * 700, max_tokens=2000)
    est = estimate_call(call)
    assert (est.input_tokens, est.output_tokens, est.web_searches) == (300, 2000, 0)
    assert math.isclose(est.cost_usd, (300 * 4.0 + 2000 * 20.0) / 1e6)
    searching = estimate_call(a_call(None, tier="research", max_tokens=2000, web_search=True))
    assert searching.web_searches == 5
    assert math.isclose(searching.cost_usd - estimate_call(a_call(None)).cost_usd, 0.05 + 0.02)
    assert estimate_call(a_call(None, model="offline")).cost_usd == 0.0  # no price, no cost
    # the prompt up to a cache breakpoint may be written to the cache: priced as such
    cached = a_call(
        None,
        system=PromptBlock("s" * 350, cache="1h"),
        context=(PromptBlock("c" * 70), PromptBlock("r" * 280, cache="5m")),
        prompt="p" * 35,
        max_tokens=100,
    )
    est = estimate_call(cached)
    assert est.input_tokens == 100 + 20 + 80 + 10
    assert math.isclose(est.cost_usd, (100 * 8.0 + 100 * 5.0 + 10 * 4.0 + 100 * 20.0) / 1e6)


def test_actual_cost_prices_the_offline_model_as_the_configured_one() -> None:
    usage = Usage(input_tokens=100, output_tokens=400, web_searches=1)
    call = a_call(None)
    real = LLMResult(text="", model="claude-opus-5-5", usage=usage, cost_usd=0.123)
    assert actual_cost(call, real) == 0.123  # the provider's model: its own figure
    offline = LLMResult(text="", model="offline", usage=usage, cost_usd=0.0)
    assert actual_cost(call, offline) == cost_usd("claude-opus-5-5", usage) > 0


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


# -- the guard seam --------------------------------------------------------------------------


class Recorder:
    """A guard that records what it sees; refuses when `refuse` is set."""

    def __init__(self, name: str, log: list[str], refuse: bool = False) -> None:
        self.name, self.log, self.refuse = name, log, refuse
        self.calls: list[LLMCall] = []

    async def before(self, call: LLMCall) -> str:
        self.calls.append(call)
        self.log.append(f"{self.name}.before")
        if self.refuse:
            raise LLMError("no", error_type=BUDGET_EXCEEDED, retryable=False)
        return f"{self.name}-token"

    async def after(
        self, call: LLMCall, reservation: str, outcome: LLMResult | BaseException
    ) -> None:
        kind = "result" if isinstance(outcome, LLMResult) else type(outcome).__name__
        self.log.append(f"{self.name}.after({reservation}, {kind})")


class Broken(Recorder):
    async def after(
        self, call: LLMCall, reservation: str, outcome: LLMResult | BaseException
    ) -> None:
        raise OSError("database away")


async def test_guards_run_around_each_call_with_the_job_it_belongs_to() -> None:
    log: list[str] = []
    outer, inner = Recorder("outer", log), Recorder("inner", log)
    offline = OfflineLLM()
    llm = GuardedLLM(offline, [outer, inner], models={"judge": "claude-haiku-5-5"})
    run = uuid.uuid4()
    with job_scope(run, job_id="judge-review:1", attempt=2, stage="judge-review") as scope:
        await llm.complete(tier="analysis", system="sys", prompt="p" * 10, max_tokens=50)
        verdict, _ = await llm.structured(tier="judge", system="s", prompt="q", schema=Verdict)
        assert isinstance(verdict, Verdict) and scope.calls == 2
    assert current_scope() is None
    assert (
        log
        == [
            "outer.before",
            "inner.before",
            "inner.after(inner-token, result)",
            "outer.after(outer-token, result)",
        ]
        * 2
    )
    first, second = outer.calls
    assert (first.kind, first.tier, first.model, first.max_tokens) == (
        "complete",
        "analysis",
        "claude-opus-5-5",  # the offline model is priced as the tier's configured model
        50,
    )
    assert (first.system_chars, first.prompt_chars) == (3, 10)
    assert (second.kind, second.model, second.max_tokens) == (
        "structured",
        "claude-haiku-5-5",
        8000,
    )
    assert {(c.run_id, c.job_id, c.attempt, c.stage) for c in outer.calls} == {
        (run, "judge-review:1", 2, "judge-review")
    }
    assert [c.call_index for c in outer.calls] == [0, 1]
    assert offline.calls == 2


async def test_a_refusal_sends_nothing_and_releases_the_guards_before_it() -> None:
    log: list[str] = []
    offline = OfflineLLM()
    llm = GuardedLLM(offline, [Recorder("outer", log), Recorder("inner", log, refuse=True)])
    with pytest.raises(LLMError):
        await llm.complete(tier="format", system="s", prompt="p")
    assert offline.calls == 0
    assert log == ["outer.before", "inner.before", "outer.after(outer-token, LLMError)"]


async def test_a_failed_call_reaches_every_guard_and_a_broken_guard_keeps_the_result() -> None:
    from pipeline.ai import Fault

    log: list[str] = []
    failing = GuardedLLM(OfflineLLM(faults=[Fault("overloaded")]), [Recorder("g", log)])
    with pytest.raises(LLMError):
        await failing.complete(tier="format", system="s", prompt="p")
    assert log == ["g.before", "g.after(g-token, LLMError)"]
    broken = GuardedLLM(OfflineLLM(), [Broken("b", log)])
    result = await broken.complete(tier="format", system="s", prompt="p")
    assert result.text  # the call happened: its result is kept though settling failed


async def test_budget_guard_through_a_guarded_model(pool: asyncpg.Pool, org: str) -> None:
    run = await new_run(pool, "0.40")
    guard = BudgetGuard(pool, org=org)
    offline = OfflineLLM()
    llm = GuardedLLM(offline, [guard])
    with job_scope(run, job_id="stock-analysis:s:1", attempt=1, stage="stock-analysis"):
        result = await llm.complete(tier="analysis", system="sys", prompt="Analyse NVDA.")
        # 16,000 output tokens of opus are $0.32: while one such call is in flight, another
        # does not fit beside it
        in_flight = a_call(run, max_tokens=16000, call_index=99)
        held = await guard.before(in_flight)
        with pytest.raises(LLMError, match="run budget exhausted"):
            await llm.complete(tier="analysis", system="sys", prompt="b")
        assert offline.calls == 1  # the refused call was never sent
        await guard.after(in_flight, held, RuntimeError("the call failed"))
        await llm.complete(tier="analysis", system="sys", prompt="c")
    spent, reserved = await amounts(pool, run)
    assert reserved == 0
    rows = await pool.fetch(
        "SELECT call_index, state, cost_usd FROM budget_reservation WHERE run_id=$1 "
        "ORDER BY call_index",
        run,
    )
    assert [(r["call_index"], r["state"]) for r in rows] == [
        (0, "settled"),
        (2, "settled"),  # index 1 was refused: no reservation
        (99, "released"),
    ]
    assert rows[0]["cost_usd"] == round(Decimal(cost_usd("claude-opus-5-5", result.usage)), 8)
    assert spent == rows[0]["cost_usd"] + rows[1]["cost_usd"]


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
