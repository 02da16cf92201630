"""`OfflineLLM`: determinism, schema validity, fixtures, faults, judge rejections, latency."""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import hashlib
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from fake_anthropic import HANG
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, conint, constr, field_validator

from jobqueue import ErrorType
from pipeline.ai import (
    LLM,
    Fault,
    LLMError,
    OfflineLLM,
    offline_rejections_enabled,
    offline_should_reject,
    register_fixture,
    unregister_fixture,
)
from pipeline.ai.offline import parse_faults

ROOT = Path(__file__).resolve().parents[2]


class Side(enum.Enum):
    LONG = "long"
    SHORT = "short"


class Pick(BaseModel):
    ticker: str = Field(pattern=r"^[A-Z]{1,5}$")
    company_name: str
    rank: int = Field(ge=1, le=5)
    score: float = Field(gt=0, lt=10)
    conviction: int = Field(ge=1, le=3, multiple_of=1)
    rationale: str = Field(min_length=40, max_length=160)
    side: Side
    horizon: Literal["3m", "12m", "24m"]
    risks: list[str] = Field(min_length=2, max_length=3)
    target_price: Decimal
    note: str | None = None


class Ranking(BaseModel):
    sector: str
    as_of: dt.date
    generated_at: dt.datetime
    run_id: uuid.UUID
    picks: list[Pick] = Field(min_length=5, max_length=5)
    weights: dict[str, float]
    bands: tuple[int, int]
    summary_text: str = Field(alias="summary")
    approved: bool


class Verdict(BaseModel):
    ticker: str
    approved: bool
    reasons: list[str]


async def structured(llm: OfflineLLM, schema: type[BaseModel], prompt: str, key: str = ""):
    return await llm.structured(
        tier="ranking", system="s", prompt=prompt, schema=schema, seed_key=key
    )


async def test_offline_llm_satisfies_protocol() -> None:
    assert isinstance(OfflineLLM(), LLM)


async def test_structured_is_deterministic_and_seeded() -> None:
    llm = OfflineLLM()
    prompt = "Rank the Information Technology sector: NVDA, AMD, MSFT, AVGO, CRM"
    a, res_a = await structured(llm, Ranking, prompt)
    b, _ = await structured(OfflineLLM(), Ranking, prompt)
    assert a == b
    assert res_a.text == a.model_dump_json()
    c, _ = await structured(llm, Ranking, prompt, key="attempt-2")
    d, _ = await structured(llm, Ranking, prompt + " ")
    assert c != a and d != a


async def test_complete_is_deterministic_and_plausible() -> None:
    llm = OfflineLLM()
    prompt = "Research the Energy sector; focus on ticker: XOM"
    a = await llm.complete(tier="research", system="s", prompt=prompt, web_search=True)
    b = await llm.complete(tier="research", system="s", prompt=prompt, web_search=True)
    c = await llm.complete(tier="research", system="s", prompt=prompt, seed_key="2")
    assert a == b
    assert a.text != c.text
    assert len(a.text.split("\n\n")) >= 4
    assert "XOM" in a.text and "Energy" in a.text
    assert a.cost_usd == 0.0 and a.model == "offline" and a.stop_reason == "end_turn"
    assert a.usage.output_tokens == pytest.approx(len(a.text) / 4, abs=1)
    assert 1 <= a.usage.web_searches <= 5 and c.usage.web_searches == 0


async def test_generated_instances_respect_constraints() -> None:
    llm = OfflineLLM()
    prompt = "Rank Information Technology stocks: NVDA, AMD, MSFT, AVGO, CRM"
    seen_scores: set[float] = set()
    for i in range(40):
        ranking, _ = await structured(llm, Ranking, prompt, key=str(i))
        assert ranking.sector == "Information Technology"
        assert len(ranking.picks) == 5
        for pick in ranking.picks:
            assert pick.ticker in {"NVDA", "AMD", "MSFT", "AVGO", "CRM"}
            assert 1 <= pick.rank <= 5 and 0 < pick.score < 10 and 1 <= pick.conviction <= 3
            assert 40 <= len(pick.rationale) <= 160
            assert 2 <= len(pick.risks) <= 3 and all(pick.risks)
            seen_scores.add(pick.score)
        # Each nested pick is about one company: its name matches its ticker.
        names = {"NVDA": "NVIDIA Corporation", "MSFT": "Microsoft Corporation"}
        for pick in ranking.picks:
            if pick.ticker in names:
                assert pick.company_name == names[pick.ticker]
        assert len({p.ticker for p in ranking.picks}) == 5  # no repeats within a round
    assert len(seen_scores) > 50  # varied, not constant


def test_generation_is_stable_across_processes() -> None:
    code = (
        "import asyncio, sys; sys.path.insert(0, 'tests/ai');"
        "from test_ai_offline import Ranking, structured;"
        "from pipeline.ai import OfflineLLM;"
        "r, _ = asyncio.run(structured(OfflineLLM(), Ranking, 'Rank Health Care', 'k'));"
        "print(r.model_dump_json())"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr
        outputs.add(run.stdout)
    assert len(outputs) == 1


class Node(BaseModel):
    name: str
    weight: float = Field(ge=0, le=1)
    children: list[Node] = []
    parent: Node | None = None


class Everything(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tree: Node
    by_ticker: dict[str, list[Node]]
    tags: set[str]
    codes: frozenset[int]
    names: tuple[str, ...]
    pair: tuple[str, int]
    small: list[Annotated[int, Field(ge=5, le=6)]]
    big: conint(gt=100)  # type: ignore[valid-type]
    code: constr(pattern=r"^[A-Z]{2,4}$")  # type: ignore[valid-type]
    three: constr(min_length=3, max_length=3)  # type: ignore[valid-type]
    quarter: float = Field(ge=0, le=1, multiple_of=0.25)
    very_negative: float = Field(lt=-1000)
    level: Level
    anything: Any
    url: HttpUrl
    aliased: int = Field(alias="Aliased", ge=1, le=2)
    tickers: list[str]


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


Node.model_rebuild()
Everything.model_rebuild()


async def test_generic_generator_covers_many_types() -> None:
    llm = OfflineLLM()
    for i in range(30):
        value, _ = await structured(llm, Everything, "ticker: BRK.B and NVDA", key=str(i))
        assert value.code.isupper()
        assert len(value.three) == 3
        assert value.very_negative < -1000
        assert value.quarter in (0.0, 0.25, 0.5, 0.75, 1.0)
        assert set(value.tickers) <= {"BRK.B", "NVDA"}
        assert len(value.model_dump_json()) < 20_000  # recursion stays small


async def test_impossible_schema_raises_validation_error() -> None:
    class Impossible(BaseModel):
        value: str

        @field_validator("value")
        @classmethod
        def never(cls, v: str) -> str:
            raise ValueError("never valid")

    with pytest.raises(LLMError) as info:
        await structured(OfflineLLM(), Impossible, "p")
    assert (info.value.error_type, info.value.retryable) == (ErrorType.VALIDATION_ERROR, False)
    assert "register a fixture" in str(info.value)


class Endless(BaseModel):
    child: Endless


async def test_required_recursion_is_reported() -> None:
    with pytest.raises(LLMError, match="nests too deeply") as info:
        await structured(OfflineLLM(), Endless, "p")
    assert info.value.error_type is ErrorType.VALIDATION_ERROR


@pytest.fixture
def verdict_fixture() -> Iterator[list[tuple[str, str]]]:
    calls: list[tuple[str, str]] = []

    def factory(prompt: str, seed_key: str, rng: random.Random) -> Verdict | dict:
        calls.append((prompt, seed_key))
        ticker = prompt.split()[-1]
        attempt = int(seed_key or 1)
        reject = offline_rejections_enabled() and offline_should_reject(ticker, attempt)
        if rng.random() < 0.5:
            return Verdict(ticker=ticker, approved=not reject, reasons=["ok"])
        return {"ticker": ticker, "approved": not reject, "reasons": ["as dict"]}

    register_fixture(Verdict, factory)
    yield calls
    unregister_fixture(Verdict)


async def test_fixture_registry(verdict_fixture: list[tuple[str, str]]) -> None:
    rejected = next(t for t in (f"T{i}" for i in range(100)) if offline_should_reject(t, 1))
    llm = OfflineLLM()
    first, _ = await structured(llm, Verdict, f"judge {rejected}", key="1")
    second, _ = await structured(llm, Verdict, f"judge {rejected}", key="2")
    assert (first.ticker, first.approved, second.approved) == (rejected, False, True)
    assert verdict_fixture == [(f"judge {rejected}", "1"), (f"judge {rejected}", "2")]
    lenient, _ = await structured(
        OfflineLLM(reject_first_attempt=False), Verdict, f"judge {rejected}", key="1"
    )
    assert lenient.approved is True
    assert offline_rejections_enabled() is True  # restored after the call


async def test_unregistered_schema_falls_back_to_generic() -> None:
    verdict, _ = await structured(OfflineLLM(), Verdict, "judge NVDA")
    assert verdict.ticker == "NVDA"


def test_offline_should_reject_proportion() -> None:
    tickers = [f"TK{i:04d}" for i in range(3000)]
    share = sum(offline_should_reject(t, 1) for t in tickers) / len(tickers)
    assert 0.30 < share < 0.37
    assert not any(offline_should_reject(t, 2) for t in tickers)
    for t in ("NVDA", "AAPL", "XOM", "JPM"):
        expected = int(hashlib.sha256(t.encode()).hexdigest(), 16) % 3 == 0
        assert offline_should_reject(t, 1) is expected


async def test_faults_fire_for_the_first_matching_calls() -> None:
    llm = OfflineLLM(
        faults=[Fault("rate_limit", times=2, retry_after=0.2), Fault("auth", tiers={"judge"})]
    )
    for _ in range(2):
        with pytest.raises(LLMError) as info:
            await llm.complete(tier="research", system="s", prompt="p")
        assert (info.value.error_type, info.value.retry_after) == (ErrorType.RATE_LIMIT, 0.2)
    await llm.complete(tier="research", system="s", prompt="p")
    assert llm.faults_remaining == [0, 1]
    with pytest.raises(LLMError) as info:
        await llm.structured(tier="judge", system="s", prompt="p", schema=Verdict)
    assert (info.value.error_type, info.value.retryable) == (ErrorType.API_ERROR, False)
    await llm.structured(tier="judge", system="s", prompt="p", schema=Verdict)
    assert llm.calls == 5 and llm.calls_by_tier == {"research": 3, "judge": 2}


@pytest.mark.parametrize(
    ("kind", "status", "retry_after"),
    [("overloaded", 529, 1.0), ("server_error", 500, 1.0), ("timeout", None, None)],
)
async def test_transient_faults_are_network_errors(
    kind: str, status: int | None, retry_after: float | None
) -> None:
    llm = OfflineLLM(faults=[Fault(kind, retry_after=1.0)])  # type: ignore[arg-type]
    with pytest.raises(LLMError) as info:
        await llm.complete(tier="analysis", system="s", prompt="p")
    err = info.value
    assert (err.error_type, err.retryable, err.status_code, err.retry_after) == (
        ErrorType.NETWORK_ERROR,
        True,
        status,
        retry_after,
    )


async def test_fault_counters_are_task_safe() -> None:
    llm = OfflineLLM(latency=0.01, faults=[Fault("overloaded", times=3)])
    results = await asyncio.gather(
        *(llm.complete(tier="format", system="s", prompt=str(i)) for i in range(20)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, LLMError) for r in results) == 3
    assert llm.faults_remaining == [0]


def test_fault_validation_and_parsing() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("meteor")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 0"):
        Fault("auth", times=-1)
    assert parse_faults("rate_limit:1:0.2, overloaded:2,,auth:1::judge|format") == (
        Fault("rate_limit", 1, 0.2),
        Fault("overloaded", 2),
        Fault("auth", 1, None, frozenset({"judge", "format"})),
    )
    assert parse_faults("") == ()
    for bad in ("nope:1", "rate_limit:x", "rate_limit:1:y", "a:1:2:3:4"):
        with pytest.raises(ValueError, match="PIPELINE_OFFLINE_FAULTS"):
            parse_faults(bad)


async def test_from_env() -> None:
    env = {
        "PIPELINE_OFFLINE_FAULTS": "rate_limit:1:0.2,overloaded:2",
        "PIPELINE_OFFLINE_LATENCY": "0.01",
    }
    llm = OfflineLLM.from_env(env)
    assert llm.latency == 0.01
    assert llm.faults == (Fault("rate_limit", 1, 0.2), Fault("overloaded", 2))
    kinds = []
    for _ in range(4):
        try:
            await llm.complete(tier="research", system="s", prompt="p")
            kinds.append("ok")
        except LLMError as err:
            kinds.append(err.error_type.value)
    assert kinds == ["RATE_LIMIT", "NETWORK_ERROR", "NETWORK_ERROR", "ok"]
    assert OfflineLLM.from_env({}, latency=0.5).latency == 0.5
    with pytest.raises(ValueError, match="PIPELINE_OFFLINE_LATENCY"):
        OfflineLLM.from_env({"PIPELINE_OFFLINE_LATENCY": "slow"})


def test_faults_from_env_in_a_subprocess() -> None:
    code = (
        "import asyncio\n"
        "from pipeline.ai import make_llm, LLMError\n"
        "async def main():\n"
        "    llm = make_llm(api_key=None)\n"
        "    for _ in range(3):\n"
        "        try:\n"
        "            await llm.complete(tier='research', system='s', prompt='p')\n"
        "            print('ok')\n"
        "        except LLMError as e:\n"
        "            print(e.error_type.value, e.retry_after)\n"
        "asyncio.run(main())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env["PIPELINE_OFFLINE_FAULTS"] = "rate_limit:1:0.2,overloaded:1"
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["RATE_LIMIT 0.2", "NETWORK_ERROR None", "ok"]


async def test_latency_is_simulated_concurrently() -> None:
    llm = OfflineLLM(latency=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await llm.complete(tier="format", system="s", prompt="p")
    assert loop.time() - started >= 0.19  # a lower bound: a slow machine only adds to it
    # Calls that would sleep an hour: all five are inside their sleep at once, so the latency
    # is an asyncio sleep that blocks neither the loop nor the other calls.
    slow = OfflineLLM(latency=3600)
    calls = [asyncio.create_task(structured(slow, Verdict, str(i))) for i in range(5)]
    try:
        deadline = loop.time() + HANG
        while slow.calls < 5 and loop.time() < deadline:
            await asyncio.sleep(0.01)  # paces the polling; decides nothing
        assert slow.calls == 5 and not any(c.done() for c in calls)
    finally:
        for c in calls:
            c.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
    with pytest.raises(ValueError):
        OfflineLLM(latency=-1)


async def test_structured_usage_is_faked_from_text() -> None:
    verdict, result = await structured(OfflineLLM(), Verdict, "x" * 400)
    assert result.usage.input_tokens == 101  # ceil(len("s" + prompt) / 4)
    assert result.text == verdict.model_dump_json()
    assert result.usage.output_tokens == -(-len(result.text) // 4)
    assert result.cost_usd == 0.0
