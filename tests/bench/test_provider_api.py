"""The simulator answers the real `anthropic` SDK: create, stream, parse, count_tokens; the
rate-limit headers on every answer; keys and models apart; prompt caching."""

from __future__ import annotations

import math

import aiohttp
import anthropic
import pytest
from provider_helpers import API_KEY, MODEL, MakeSim, reset_time, sdk, user
from pydantic import BaseModel, Field, field_validator

from bench.provider import Limits, ManualClock, estimate_input_tokens

pytestmark = pytest.mark.integration

HEADERS = [
    f"anthropic-ratelimit-{bucket}-{part}"
    for bucket in ("requests", "input-tokens", "output-tokens")
    for part in ("limit", "remaining", "reset")
]


class Ranked(BaseModel):
    ticker: str = Field(pattern=r"^[A-Z][A-Z0-9.\-]{0,9}$")
    name: str = Field(min_length=1, max_length=200)
    rank: int = Field(ge=1, le=10)
    rationale: str = Field(min_length=10, max_length=2000)


class Ranking(BaseModel):
    """Like the pipeline's: ten stocks, ranks 1..10 each once, distinct tickers."""

    stocks: list[Ranked] = Field(min_length=10, max_length=10)

    @field_validator("stocks")
    @classmethod
    def _distinct(cls, stocks: list[Ranked]) -> list[Ranked]:
        assert sorted(s.rank for s in stocks) == list(range(1, 11)), "ranks 1..10"
        assert len({s.ticker for s in stocks}) == 10, "distinct tickers"
        return stocks


class Verdict(BaseModel):
    approved: bool
    score: int = Field(ge=1, le=10)
    reasons: list[str] = Field(min_length=1, max_length=10)
    confidence: float = Field(ge=0.0, le=1.0)


async def test_create_stream_and_parse_succeed_through_the_sdk(make_sim: MakeSim) -> None:
    sim = await make_sim(latency_median=0.02, latency_min=0.01, latency_max=0.05)
    async with sdk(sim) as client:
        msg = await client.messages.create(
            model="claude-opus-5-5", max_tokens=2000, system="Be brief.", messages=user("Hi")
        )
        assert msg.type == "message" and msg.model == "claude-opus-5-5"
        assert msg._request_id and msg._request_id.startswith("req_sim_")
        types = [b.type for b in msg.content]
        assert types == ["thinking", "text"], "an Opus reply thinks first"
        assert msg.content[1].text
        assert 1 <= msg.usage.output_tokens <= 2000
        assert msg.usage.input_tokens == estimate_input_tokens(
            {"system": "Be brief.", "messages": user("Hi")}
        )

        async with client.messages.stream(
            model=MODEL, max_tokens=3000, messages=user("Write a long analysis.")
        ) as stream:
            final = await stream.get_final_message()
            headers = stream.response.headers
        text = "".join(b.text for b in final.content if b.type == "text")
        assert len(text) > 20
        assert final.stop_reason == "end_turn"
        assert all(h in headers for h in HEADERS)
        assert final.usage.output_tokens <= 3000

        parsed = await client.messages.parse(
            model=MODEL, max_tokens=4000, messages=user("Rank ten stocks."), output_format=Ranking
        )
        assert isinstance(parsed.parsed_output, Ranking)
        verdict = await client.messages.parse(
            model=MODEL, max_tokens=1000, messages=user("Judge it."), output_format=Verdict
        )
        assert isinstance(verdict.parsed_output, Verdict)
        assert verdict.parsed_output.approved is True, "false_share is 0 by default"


async def test_structured_output_in_a_stream(make_sim: MakeSim) -> None:
    sim = await make_sim()
    async with (
        sdk(sim) as client,
        client.messages.stream(
            model=MODEL, max_tokens=4000, messages=user("Rank."), output_format=Ranking
        ) as stream,
    ):
        final = await stream.get_final_message()
    assert isinstance(final.parsed_output, Ranking)


async def test_count_tokens_is_the_estimate_a_create_is_charged(make_sim: MakeSim) -> None:
    sim = await make_sim()
    messages = user("Count me: " + "word " * 101)
    async with sdk(sim) as client:
        counted = await client.messages.count_tokens(
            model=MODEL, system="S" * 40, messages=messages
        )
        msg = await client.messages.create(
            model=MODEL, max_tokens=100, system="S" * 40, messages=messages
        )
    assert counted.input_tokens == msg.usage.input_tokens == math.ceil((40 + 10 + 505) / 4)
    stats = sim.stats()
    assert stats.count_tokens_calls == 1
    assert stats.calls == 1, "count_tokens is not a Messages call"


async def test_headers_are_present_and_consistent(make_sim: MakeSim, clock: ManualClock) -> None:
    limits = Limits(rpm=10, itpm=10_000, otpm=20_000)
    sim = await make_sim(clock=clock, minute_seconds=60.0, limits=limits)
    used_in = used_out = 0
    ids = set()
    async with sdk(sim) as client:
        for n in range(1, 4):
            raw = await client.messages.with_raw_response.create(
                model=MODEL, max_tokens=1000, messages=user(f"question {n} " * 20)
            )
            msg = await raw.parse()
            h = raw.headers
            assert all(name in h for name in HEADERS)
            ids.add(h["request-id"])
            used_in += msg.usage.input_tokens
            used_out += msg.usage.output_tokens
            assert h["anthropic-ratelimit-requests-limit"] == "10"
            assert h["anthropic-ratelimit-input-tokens-limit"] == "10000"
            assert h["anthropic-ratelimit-output-tokens-limit"] == "20000"
            assert int(h["anthropic-ratelimit-requests-remaining"]) == 10 - n
            assert int(h["anthropic-ratelimit-input-tokens-remaining"]) == 10_000 - used_in
            # a JSON reply is sent once the output is settled: the reservation is corrected
            assert int(h["anthropic-ratelimit-output-tokens-remaining"]) == 20_000 - used_out
            # reset = when the bucket is full again: n requests at 10 per 60 s -> 6 s each
            now = sim.wall_time(sim.now())
            assert reset_time(h["anthropic-ratelimit-requests-reset"]) == pytest.approx(
                now + 6.0 * n, abs=0.002
            )
            assert reset_time(h["anthropic-ratelimit-input-tokens-reset"]) == pytest.approx(
                now + used_in * 60 / 10_000, abs=0.002
            )
        assert len(ids) == 3
        clock.advance(60.0)  # a whole minute later every bucket is full again
        raw = await client.messages.with_raw_response.create(
            model=MODEL, max_tokens=10, messages=user("again")
        )
    assert raw.headers["anthropic-ratelimit-requests-remaining"] == "9"
    now = sim.wall_time(sim.now())
    assert reset_time(raw.headers["anthropic-ratelimit-requests-reset"]) == pytest.approx(
        now + 6.0, abs=0.002
    )


async def test_x_api_key_and_bearer_both_work_and_keys_have_their_own_buckets(
    make_sim: MakeSim, clock: ManualClock
) -> None:
    sim = await make_sim(clock=clock, limits=Limits(rpm=1, itpm=10_000, otpm=10_000))
    async with sdk(sim) as client, sdk(sim, api_key="sk-sim-other-key") as other:
        await client.messages.create(model=MODEL, max_tokens=10, messages=user("a"))
        with pytest.raises(anthropic.RateLimitError):
            await client.messages.create(model=MODEL, max_tokens=10, messages=user("b"))
        await other.messages.create(model=MODEL, max_tokens=10, messages=user("c"))
        # the same key sent as x-api-key is the same organisation: still limited
        with pytest.raises(anthropic.RateLimitError):
            await other.messages.create(
                model=MODEL, max_tokens=10, messages=user("d"), extra_headers={"x-api-key": API_KEY}
            )
        # another model has its own buckets
        await client.messages.create(model="claude-haiku-5-5", max_tokens=10, messages=user("e"))
    async with aiohttp.ClientSession() as http:
        body = {"model": MODEL, "max_tokens": 10, "messages": user("f")}
        async with http.post(f"{sim.base_url}/v1/messages", json=body) as response:
            assert response.status == 401
            assert (await response.json())["error"]["type"] == "authentication_error"
            assert response.headers["request-id"].startswith("req_sim_")


async def test_model_limits_override_the_default(make_sim: MakeSim, clock: ManualClock) -> None:
    sim = await make_sim(
        clock=clock,
        limits=Limits(rpm=100, itpm=10_000, otpm=10_000),
        model_limits={"claude-opus-5-5": Limits(rpm=7, itpm=5_000, otpm=9_000)},
    )
    async with sdk(sim) as client:
        opus = await client.messages.with_raw_response.create(
            model="claude-opus-5-5", max_tokens=10, messages=user("a")
        )
        other = await client.messages.with_raw_response.create(
            model=MODEL, max_tokens=10, messages=user("a")
        )
    assert opus.headers["anthropic-ratelimit-requests-limit"] == "7"
    assert opus.headers["anthropic-ratelimit-output-tokens-limit"] == "9000"
    assert other.headers["anthropic-ratelimit-requests-limit"] == "100"


async def test_a_cached_prefix_is_read_and_not_charged(
    make_sim: MakeSim, clock: ManualClock
) -> None:
    sim = await make_sim(
        clock=clock, minute_seconds=10.0, limits=Limits(rpm=50, itpm=50_000, otpm=50_000)
    )
    rubric = "Judge the analysis against the house rubric. " * 40  # 1,800 chars
    system = [{"type": "text", "text": rubric, "cache_control": {"type": "ephemeral"}}]
    prefix_tokens = len(rubric) // 4
    async with sdk(sim) as client:

        async def call(text: str) -> tuple[anthropic.types.Usage, int]:
            raw = await client.messages.with_raw_response.create(
                model=MODEL, max_tokens=50, system=system, messages=user(text)
            )
            left = int(raw.headers["anthropic-ratelimit-input-tokens-remaining"])
            return (await raw.parse()).usage, left

        first, left1 = await call("stock one, please")
        assert first.cache_creation_input_tokens == prefix_tokens
        assert first.cache_creation.ephemeral_5m_input_tokens == prefix_tokens
        assert first.cache_read_input_tokens == 0
        second, left2 = await call("stock two, please")
        assert second.cache_read_input_tokens == prefix_tokens
        assert second.cache_creation_input_tokens == 0
        # only the uncached part is charged to the ITPM
        assert left1 - left2 == second.input_tokens
        clock.advance(5 * 10.0 + 1)  # past five scaled minutes after the last use
        third, _ = await call("stock three, please")
        assert third.cache_read_input_tokens == 0
        assert third.cache_creation_input_tokens == prefix_tokens
        # a one-hour entry outlives five scaled minutes
        other_rubric = "Judge the analysis against the firm's checklist " * 36  # 1,728 chars
        long_lived = [
            {
                "type": "text",
                "text": other_rubric,
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            }
        ]
        made = await client.messages.create(
            model=MODEL, max_tokens=5, system=long_lived, messages=user("x")
        )
        assert made.usage.cache_creation.ephemeral_1h_input_tokens == len(other_rubric) // 4
        clock.advance(10 * 10.0)
        hit = await client.messages.create(
            model=MODEL, max_tokens=5, system=long_lived, messages=user("y")
        )
        assert hit.usage.cache_read_input_tokens == len(other_rubric) // 4
    windows = sim.stats().models[MODEL].windows
    assert sum(w.cache_read_tokens for w in windows) == prefix_tokens + len(other_rubric) // 4


async def test_too_many_breakpoints_and_bad_requests_are_400(make_sim: MakeSim) -> None:
    sim = await make_sim()
    blocks = [
        {"type": "text", "text": f"block {i}", "cache_control": {"type": "ephemeral"}}
        for i in range(5)
    ]
    async with sdk(sim) as client:
        with pytest.raises(anthropic.BadRequestError, match="maximum of 4"):
            await client.messages.create(
                model=MODEL, max_tokens=5, system=blocks, messages=user("x")
            )
        with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
            await client.messages.create(model=MODEL, max_tokens=0, messages=user("x"))
    assert sim.stats().invalid == 2
