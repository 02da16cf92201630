"""Prompt caching across a whole run: every stage's request (through the real SDK to the local
fake Messages API) marks its stable blocks, `llm_usage` records and prices cache reads and
writes, and an offline run reports a cached share of its input tokens in the summary."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from pipeline_helpers import wait_row

from jobqueue import Job
from pipeline.ai import AnthropicLLM, LLMResult, Usage, cost_usd
from pipeline.flow import approve_subsector, start_sector_research
from pipeline.prompts import (
    JUDGE,
    analysis_prompt,
    format_prompt,
    ranking_prompt,
    research_prompt,
    subsector_prompt,
)
from pipeline.runtime import Runtime
from pipeline.stages.base import record_usage
from pipeline.summary import print_summary
from pipeline.usage_report import cache_share

pytest.importorskip("aiohttp")  # the fake Messages API is an aiohttp app (test-only)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ai"))

from cache_checks import check_cache_layout, reply_by_schema
from fake_anthropic import API_KEY, HANG, FakeAnthropic

pytestmark = pytest.mark.integration

RESEARCH_TEXT = ["Chip demand follows data-centre capex. ", "Margins are cyclical. " * 30]
USAGE = {
    "input_tokens": 50,
    "output_tokens": 20,
    "cache_read_input_tokens": 4000,
    "cache_creation_input_tokens": 1000,
    "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 600},
}


async def _run_to_the_end(runtime: Runtime, sector: str) -> tuple[UUID, UUID]:
    run_id = await start_sector_research(sector, "user-1", runtime=runtime)
    await wait_row(
        runtime.pool, "SELECT status = 'awaiting_approval' FROM sector_analysis WHERE id=$1", run_id
    )
    chosen = await runtime.pool.fetchval(
        "SELECT id FROM sub_sector WHERE sector_analysis_id=$1 ORDER BY name LIMIT 1", run_id
    )
    await approve_subsector(chosen, runtime=runtime)
    await wait_row(runtime.pool, "SELECT status = 'completed' FROM sub_sector WHERE id=$1", chosen)
    return run_id, chosen


async def test_every_stage_caches_its_stable_prefix_through_the_sdk(
    runtime: Runtime, workers: Any
) -> None:
    fake = await FakeAnthropic(
        text_blocks=list(RESEARCH_TEXT), structured_reply=reply_by_schema, usage=dict(USAGE)
    ).start()
    try:
        runtime.use_llm(AnthropicLLM(API_KEY, base_url=fake.base_url, timeout=HANG))
        await workers()
        run_id, chosen = await _run_to_the_end(runtime, "Technology")
    finally:
        await fake.close()
    pool = runtime.pool
    research = await pool.fetchval("SELECT research FROM sector_analysis WHERE id=$1", run_id)
    assert research == "".join(RESEARCH_TEXT)
    sub = await pool.fetchrow("SELECT name, thesis FROM sub_sector WHERE id=$1", chosen)

    # the stage of each request, by its (cached) system prompt
    systems = {
        research_prompt("x").system.text: "research",
        subsector_prompt("x", "r").system.text: "subsectors",
        ranking_prompt("x", "y", "t").system.text: "ranking",
        analysis_prompt(
            ticker="X", name="X", sub_sector="S", thesis="t", rationale="r", attempt=1
        ).system.text: "analysis",
        JUDGE: "judge",
        format_prompt("X", "X", "a").system.text: "format",
    }
    by_stage: dict[str, list[list[dict[str, Any]]]] = {}
    for request in fake.requests:
        blocks = check_cache_layout(request.body)  # <= 4 breakpoints, 1h first, per-call last
        by_stage.setdefault(systems[request.body["system"][0]["text"]], []).append(blocks)
    assert {k: len(v) for k, v in by_stage.items()} == {
        "research": 1,
        "subsectors": 1,
        "ranking": 1,
        "analysis": 5,
        "judge": 5,
        "format": 5,
    }
    shared_research = f"Research on the Technology sector:\n<research>\n{research.strip()}"
    (ranking,) = by_stage["ranking"]
    assert len(ranking) == 2 and ranking[0]["text"].startswith(shared_research)
    assert sub["thesis"] in ranking[-1]["text"]
    analyses = by_stage["analysis"]
    # the five analyses start with the same cached blocks: the research, then the thesis
    assert all(len(a) == 3 and a[:2] == analyses[0][:2] for a in analyses)
    assert analyses[0][0]["text"].startswith(shared_research)
    assert (
        analyses[0][1]["text"] == f"Sub-sector: {sub['name']}\nSub-sector thesis: {sub['thesis']}"
    )
    top = await pool.fetch("SELECT ticker FROM stock WHERE rank <= 5 AND sub_sector_id=$1", chosen)
    asked = {re.findall(r"\((T\d+)\)", a[-1]["text"])[0] for a in analyses}
    assert asked == {r["ticker"] for r in top}  # the stock is in the per-call part only

    # llm_usage holds each call's cache reads and writes, priced by TTL
    rows = await pool.fetch(
        "SELECT stage, model, input_tokens, cache_read_input_tokens, "
        "cache_creation_input_tokens, cost_usd FROM llm_usage WHERE related_id=$1",
        str(run_id),
    )
    assert len(rows) == len(fake.requests) == 18
    for row in rows:
        assert (row["input_tokens"], row["cache_read_input_tokens"]) == (50, 4000)
        assert row["cache_creation_input_tokens"] == 1000
        usage = Usage(
            input_tokens=50,
            output_tokens=20,
            cache_read_tokens=4000,
            cache_write_tokens=1000,
            cache_write_1h_tokens=600,
        )
        assert float(row["cost_usd"]) == pytest.approx(cost_usd(row["model"], usage), abs=1e-6)
    opus = [r for r in rows if r["model"] == "claude-opus-5-5"]
    # Opus 5.5: 50×$4 + 20×$20 + 4000×$0.20 + 400×$5 + 600×$8 per MTok
    assert float(opus[0]["cost_usd"]) == pytest.approx(0.0082, abs=1e-6)
    share = await cache_share(pool, run_id)
    assert (share.calls, share.cache_read_tokens) == (18, 18 * 4000)
    assert share.cached_share == pytest.approx(4000 / 5050)


async def test_an_offline_run_reports_a_cached_share(
    runtime: Runtime, workers: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The offline model simulates the cache deterministically: in each stage called many
    times, exactly the first call writes the shared prefix and every later one reads it."""
    await workers()
    run_id, _ = await _run_to_the_end(runtime, "Technology")
    rows = await runtime.pool.fetch(
        "SELECT stage, count(*) AS calls, "
        "count(*) FILTER (WHERE cache_creation_input_tokens > 0) AS writes, "
        "count(*) FILTER (WHERE cache_read_input_tokens > 0) AS reads "
        "FROM llm_usage WHERE related_id=$1 GROUP BY stage",
        str(run_id),
    )
    stages = {r["stage"]: (r["calls"], r["writes"], r["reads"]) for r in rows}
    for stage in ("stock-analysis", "judge-review", "format-insights"):
        calls, writes, reads = stages[stage]
        assert calls >= 5 and (writes, reads) == (1, calls - 1), (stage, stages[stage])
    share = await cache_share(runtime.pool, run_id)
    assert share.cache_read_tokens > 0 and 0 < share.cached_share < 1

    await print_summary(runtime, run_id, 1.0)
    out = capsys.readouterr().out
    assert share.line() in out
    assert f"cached input: {share.cached_share:.1%} of {share.prompt_tokens:,} prompt tokens" in out


async def test_a_replayed_attempt_overwrites_its_cache_counts(runtime: Runtime) -> None:
    job: Job = await runtime.queues["judge-review"].add("judge-review", {"stock_analysis_id": "x"})
    first = LLMResult(
        text="",
        model="claude-sonnet-5-5",
        usage=Usage(input_tokens=10, cache_write_tokens=100, cache_write_1h_tokens=100),
        cost_usd=cost_usd(
            "claude-sonnet-5-5",
            Usage(input_tokens=10, cache_write_tokens=100, cache_write_1h_tokens=100),
        ),
    )
    replay_usage = Usage(input_tokens=10, cache_read_tokens=100)
    replay = first.model_copy(
        update={"usage": replay_usage, "cost_usd": cost_usd("claude-sonnet-5-5", replay_usage)}
    )
    async with runtime.pool.acquire() as conn:
        await record_usage(conn, job, "judge-review", [first], "run-x")
        await record_usage(conn, job, "judge-review", [replay], "run-x")
    row = await runtime.pool.fetchrow(
        "SELECT cache_read_input_tokens, cache_creation_input_tokens, cost_usd FROM llm_usage "
        "WHERE job_id=$1",
        job.id,
    )
    assert (row["cache_read_input_tokens"], row["cache_creation_input_tokens"]) == (100, 0)
    assert float(row["cost_usd"]) == pytest.approx(replay.cost_usd, abs=1e-6)
