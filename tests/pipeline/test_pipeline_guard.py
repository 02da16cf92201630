"""The seam around model calls (`GuardedLLM`) and the local estimate of a call's cost."""

from __future__ import annotations

import math
import uuid
from decimal import Decimal

import asyncpg
import pytest
from budget_helpers import a_call, amounts, new_run

from pipeline.ai import LLMError, LLMResult, OfflineLLM, Usage, cost_usd
from pipeline.ai.base import PromptBlock
from pipeline.ai.estimate import actual_cost, estimate_call, estimate_tokens
from pipeline.ai.guard import GuardedLLM, LLMCall, current_scope, job_scope
from pipeline.budget import (
    BUDGET_EXCEEDED,
    BudgetGuard,
)
from pipeline.models import Verdict

pytestmark = pytest.mark.integration


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
