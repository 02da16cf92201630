"""Prompt caching: what each stage's request sends (through the real SDK to the fake Messages
API), how cache reads and writes come back and are priced, and the offline model's cache."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cache_checks import breakpoints, check_cache_layout, reply_by_schema
from fake_anthropic import FakeAnthropic

from jobqueue import ErrorType
from pipeline.ai import (
    AnthropicLLM,
    LLMError,
    OfflineLLM,
    PromptBlock,
    Usage,
    cost_usd,
)
from pipeline.ai.base import MAX_CACHE_BREAKPOINTS
from pipeline.models import Insights, StockRanking, SubSectorList, Verdict
from pipeline.prompts import (
    JUDGE,
    StagePrompt,
    analysis_prompt,
    format_prompt,
    judge_prompt,
    ranking_prompt,
    research_prompt,
    subsector_prompt,
)

RESEARCH = "Semiconductor demand is driven by data-centre capex. " * 40
THESIS = "Accelerators keep taking share of data-centre spend."


def _analysis(ticker: str, attempt: int = 1, reasons: tuple[str, ...] = ()) -> StagePrompt:
    return analysis_prompt(
        ticker=ticker,
        name=f"{ticker} Inc.",
        sub_sector="AI Accelerators",
        thesis=THESIS,
        rationale=f"{ticker} leads on margins",
        attempt=attempt,
        angle="valuation-first" if attempt > 1 else None,
        judge_reasons=reasons,
        sector="Technology",
        research=RESEARCH,
    )


# stage, its prompt, the method and schema it calls, the TTL of each breakpoint in order
STAGES: list[tuple[str, StagePrompt, type[Any] | None, list[str]]] = [
    ("research", research_prompt("Technology"), None, ["5m"]),
    ("subsectors", subsector_prompt("Technology", RESEARCH), SubSectorList, ["5m"]),
    (
        "ranking",
        ranking_prompt("Technology", "AI Accelerators", THESIS, RESEARCH),
        StockRanking,
        ["1h", "1h"],
    ),
    ("analysis", _analysis("NVDA", 2, ("thin valuation",)), None, ["1h", "1h", "1h"]),
    ("judge", judge_prompt("NVDA", "NVIDIA", "An analysis.", 1), Verdict, ["1h"]),
    ("format", format_prompt("NVDA", "NVIDIA", "An approved analysis."), Insights, ["1h"]),
]


async def _send(llm: Any, tier: str, ask: StagePrompt, schema: type[Any] | None) -> Any:
    if schema is None:
        return await llm.complete(
            tier=tier, system=ask.system, context=ask.context, prompt=ask.prompt
        )
    _, result = await llm.structured(
        tier=tier, system=ask.system, context=ask.context, prompt=ask.prompt, schema=schema
    )
    return result


@pytest.mark.parametrize(("tier", "ask", "schema", "ttls"), STAGES, ids=[s[0] for s in STAGES])
async def test_each_stage_request_marks_its_stable_blocks(
    fake_anthropic: FakeAnthropic,
    llm: AnthropicLLM,
    tier: str,
    ask: StagePrompt,
    schema: type[Any] | None,
    ttls: list[str],
) -> None:
    fake_anthropic.structured_reply = reply_by_schema
    model_tier = {"subsectors": "research"}.get(tier, tier)
    await _send(llm, model_tier, ask, schema)
    (request,) = fake_anthropic.requests
    body = request.body
    blocks = check_cache_layout(body)
    assert [ttl for _, ttl in breakpoints(body)] == ttls
    assert body["system"][0]["text"] == ask.system.text
    assert [b["text"] for b in blocks] == [*(c.text for c in ask.context), ask.prompt]
    if tier in ("ranking", "analysis"):
        assert RESEARCH.strip() in blocks[0]["text"]  # the run's research, shared
    if tier == "analysis":
        assert THESIS in blocks[1]["text"] and "NVDA" not in blocks[1]["text"]
        assert "NVDA" in blocks[-1]["text"] and "thin valuation" in blocks[-1]["text"]
    if tier == "judge":
        assert body["system"][0]["text"] == JUDGE  # the rubric is the cached prefix


def test_shared_blocks_are_identical_across_a_subsector() -> None:
    """Every analysis of a sub-sector (any stock, any attempt) starts with the same bytes."""
    first, other, rerun = _analysis("NVDA"), _analysis("AMD"), _analysis("AVGO", 3, ("x",))
    assert first.system == other.system == rerun.system
    assert first.context == other.context == rerun.context
    assert len({first.prompt, other.prompt, rerun.prompt}) == 3
    for ticker, ask in (("NVDA", first), ("AMD", other), ("AVGO", rerun)):
        assert all(ticker not in block.text for block in (ask.system, *ask.context))
    ranking = ranking_prompt("Technology", "AI Accelerators", THESIS, RESEARCH)
    assert ranking.context[0] == first.context[0]  # the same research block everywhere
    # no research yet (or an empty one): no empty block is sent
    assert ranking_prompt("Technology", "X", "t", "  ").context == ()
    assert [
        b.text
        for b in analysis_prompt(
            ticker="A", name="A", sub_sector="S", thesis="t", rationale="r", attempt=1
        ).context
    ] == ["Sub-sector: S\nSub-sector thesis: t"]


SPLIT_USAGE = {
    "input_tokens": 1000,
    "output_tokens": 500,
    "cache_read_input_tokens": 5000,
    "cache_creation_input_tokens": 1000,
    "cache_creation": {"ephemeral_5m_input_tokens": 300, "ephemeral_1h_input_tokens": 700},
}


@pytest.mark.parametrize("method", ["complete", "structured"])
async def test_cache_reads_and_writes_are_counted_and_priced_by_ttl(
    fake_anthropic: FakeAnthropic, llm: AnthropicLLM, method: str
) -> None:
    fake_anthropic.usage = dict(SPLIT_USAGE)
    fake_anthropic.structured_reply = reply_by_schema
    ask = _analysis("NVDA")
    result = await _send(llm, "analysis", ask, None if method == "complete" else Verdict)
    assert result.model == "claude-opus-5-5"
    assert result.usage == Usage(
        input_tokens=1000,
        output_tokens=500,
        cache_read_tokens=5000,
        cache_write_tokens=1000,
        cache_write_1h_tokens=700,
    )
    # Opus 5.5 per MTok: input $4, output $20, cache read $0.20, write $5 (5m) / $8 (1h)
    expected = (1000 * 4 + 500 * 20 + 5000 * 0.20 + 300 * 5 + 700 * 8) / 1e6
    assert result.cost_usd == pytest.approx(expected)
    assert result.cost_usd == cost_usd("claude-opus-5-5", result.usage)


@pytest.mark.parametrize(
    ("system", "context", "written_1h"),
    [
        (PromptBlock("rubric", cache="1h"), (), 100),
        (PromptBlock("rubric", cache="1h"), (PromptBlock("shared", cache="5m"),), 100),
        (PromptBlock("rubric", cache="5m"), (), 0),
        ("plain system", (), 0),
    ],
)
async def test_writes_without_a_split_are_priced_at_the_longest_ttl_asked(
    fake_anthropic: FakeAnthropic,
    llm: AnthropicLLM,
    system: str | PromptBlock,
    context: tuple[PromptBlock, ...],
    written_1h: int,
) -> None:
    """The fake's default usage has 100 written tokens and no `cache_creation` split: they are
    priced as the request's longest TTL, so the cost is never under-reported."""
    result = await llm.complete(tier="judge", system=system, context=context, prompt="p")
    assert result.usage.cache_write_tokens == 100
    assert result.usage.cache_write_1h_tokens == written_1h
    assert result.cost_usd == cost_usd("claude-sonnet-5-5", result.usage)


async def test_plain_prompts_keep_the_plain_wire_format(
    fake_anthropic: FakeAnthropic, llm: AnthropicLLM
) -> None:
    await llm.complete(tier="format", system="S", prompt="P")
    await llm.complete(tier="format", system=PromptBlock("S"), prompt="P")
    for request in fake_anthropic.requests:
        assert request.body["system"] == "S"
        assert request.body["messages"] == [{"role": "user", "content": "P"}]
        assert breakpoints(request.body) == []


TOO_MANY = tuple(PromptBlock(f"block {i}", cache="1h") for i in range(MAX_CACHE_BREAKPOINTS))
BAD_LAYOUTS = [
    pytest.param(PromptBlock("s", cache="1h"), TOO_MANY, "5 cache breakpoints", id="five"),
    pytest.param(
        PromptBlock("s", cache="5m"), (PromptBlock("c", cache="1h"),), "cannot follow", id="ttl"
    ),
]


@pytest.mark.parametrize(("system", "context", "message"), BAD_LAYOUTS)
async def test_a_layout_the_api_would_refuse_is_refused_before_sending(
    fake_anthropic: FakeAnthropic,
    llm: AnthropicLLM,
    system: PromptBlock,
    context: tuple[PromptBlock, ...],
    message: str,
) -> None:
    for model in (llm, OfflineLLM()):
        with pytest.raises(LLMError, match=message) as info:
            await model.complete(tier="analysis", system=system, context=context, prompt="p")
        assert (info.value.error_type, info.value.retryable) == (ErrorType.VALIDATION_ERROR, False)
        with pytest.raises(LLMError, match=message):
            await model.structured(
                tier="judge", system=system, context=context, prompt="p", schema=Verdict
            )
    assert fake_anthropic.requests == []
    # exactly the limit is fine
    await llm.complete(tier="analysis", system="s", context=TOO_MANY, prompt="p")
    assert len(breakpoints(fake_anthropic.requests[0].body)) == MAX_CACHE_BREAKPOINTS


def test_prompt_block_validation() -> None:
    with pytest.raises(ValueError, match="needs text"):
        PromptBlock("")
    with pytest.raises(ValueError, match="'10m'"):
        PromptBlock("x", cache="10m")  # type: ignore[arg-type]


# -- the offline model's simulated cache ---------------------------------------------------


async def test_offline_second_call_reads_the_prefix_the_first_wrote() -> None:
    llm = OfflineLLM()
    system = PromptBlock("s" * 400, cache="1h")  # 100 tokens
    research = PromptBlock("r" * 800, cache="1h")  # 200 tokens
    thesis = PromptBlock("t" * 40, cache="1h")  # 10 tokens

    async def call(context: tuple[PromptBlock, ...], prompt: str, tier: Any = "analysis") -> Usage:
        result = await llm.complete(tier=tier, system=system, context=context, prompt=prompt)
        return result.usage

    first = await call((research, thesis), "p" * 20)
    assert (first.input_tokens, first.cache_read_tokens, first.cache_write_tokens) == (5, 0, 310)
    assert first.cache_write_1h_tokens == 310
    second = await call((research, thesis), "q" * 40)
    assert (second.input_tokens, second.cache_read_tokens, second.cache_write_tokens) == (
        10,
        310,
        0,
    )
    # another thesis after the same research: the research is read, the new thesis written
    other = await call((research, PromptBlock("u" * 80, cache="1h")), "p")
    assert (other.cache_read_tokens, other.cache_write_tokens, other.input_tokens) == (300, 20, 1)
    # a cache is per model: the same blocks from another tier are written again
    judged = await call((research, thesis), "p", tier="judge")
    assert (judged.cache_read_tokens, judged.cache_write_tokens) == (0, 310)
    # nothing marked: everything is input, nothing is remembered
    plain = await llm.complete(tier="format", system="s" * 400, prompt="p")
    assert plain.usage.input_tokens == 101 and plain.usage.cache_read_tokens == 0
    # 5m and 1h writes are told apart
    mixed = await llm.complete(
        tier="ranking",
        system=PromptBlock("a" * 40, cache="1h"),
        context=(PromptBlock("b" * 80, cache="5m"),),
        prompt="p",
    )
    assert (mixed.usage.cache_write_tokens, mixed.usage.cache_write_1h_tokens) == (30, 10)


async def test_offline_concurrent_calls_share_one_write() -> None:
    """Five analyses of a sub-sector at once: one writes the shared prefix, four read it,
    whatever order they run in (the totals are deterministic)."""
    llm = OfflineLLM(latency=0.01)
    asks = [_analysis(t) for t in ("NVDA", "AMD", "AVGO", "MSFT", "AAPL")]
    results = await asyncio.gather(
        *(
            llm.complete(tier="analysis", system=a.system, context=a.context, prompt=a.prompt)
            for a in asks
        )
    )
    shared = sum(-(-len(b.text) // 4) for b in (asks[0].system, *asks[0].context))
    assert sorted(r.usage.cache_write_tokens for r in results) == [0, 0, 0, 0, shared]
    assert sorted(r.usage.cache_read_tokens for r in results) == [0, shared, shared, shared, shared]
    total = sum(r.usage.cache_read_tokens for r in results)
    prompt_tokens = sum(
        r.usage.input_tokens + r.usage.cache_read_tokens + r.usage.cache_write_tokens
        for r in results
    )
    assert total / prompt_tokens > 0.5  # most of an analysis's prompt is the shared prefix
    # structured calls use the same cache
    _, verdict = await llm.structured(
        tier="analysis",
        system=asks[0].system,
        context=asks[0].context,
        prompt="judge me",
        schema=Verdict,
    )
    assert verdict.usage.cache_read_tokens == shared
