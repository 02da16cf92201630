"""The provider's `anthropic-ratelimit-*` headers, read through the real SDK from every answer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from fake_anthropic import FakeAnthropic
from pydantic import BaseModel

from pipeline.ai import AnthropicLLM, LLMError
from pipeline.ai.ratelimits import RateLimitReading, read_rate_limits

HEADERS = {
    "anthropic-ratelimit-requests-limit": "50",
    "anthropic-ratelimit-requests-remaining": "41",
    "anthropic-ratelimit-requests-reset": "2026-12-02T10:00:05Z",
    "anthropic-ratelimit-input-tokens-limit": "30000",
    "anthropic-ratelimit-input-tokens-remaining": "21000",
    "anthropic-ratelimit-input-tokens-reset": "2026-12-02T10:00:03.250Z",
    "anthropic-ratelimit-output-tokens-limit": "32000",
    "anthropic-ratelimit-output-tokens-remaining": "12000",
    "anthropic-ratelimit-output-tokens-reset": "2026-12-02T10:00:04Z",
}


class Verdict(BaseModel):
    approved: bool


def test_read_rate_limits_names_buckets_as_the_limiter() -> None:
    got = read_rate_limits(HEADERS)
    assert set(got) == {"requests", "input_tokens", "output_tokens"}
    assert got["input_tokens"] == RateLimitReading(
        bucket="input_tokens",
        limit=30000,
        remaining=21000,
        reset=datetime(2026, 12, 2, 10, 0, 3, 250000, tzinfo=UTC),
    )


def test_read_rate_limits_ignores_what_it_cannot_read() -> None:
    assert read_rate_limits(None) == {}
    assert read_rate_limits({"content-type": "application/json"}) == {}
    got = read_rate_limits(
        {
            "Anthropic-RateLimit-Requests-Limit": "x",
            "anthropic-ratelimit-requests-remaining": "-3",
            "anthropic-ratelimit-input-tokens-remaining": "7",
            "anthropic-ratelimit-input-tokens-reset": "soon",
        }
    )
    assert got == {"input_tokens": RateLimitReading(bucket="input_tokens", remaining=7)}


async def test_structured_result_carries_the_headers(
    fake_anthropic: FakeAnthropic, llm: AnthropicLLM
) -> None:
    fake_anthropic.ratelimit_headers = dict(HEADERS)
    fake_anthropic.structured_json = '{"approved": true}'
    _, result = await llm.structured(tier="judge", system="s", prompt="p", schema=Verdict)
    assert result.rate_limits == read_rate_limits(HEADERS)


async def test_stream_output_remaining_counts_the_unused_reservation(
    fake_anthropic: FakeAnthropic, llm: AnthropicLLM
) -> None:
    # a stream's headers come before the answer, while the provider still holds max_tokens
    fake_anthropic.ratelimit_headers = dict(HEADERS)
    result = await llm.complete(tier="research", system="s", prompt="p", max_tokens=4000)
    assert result.usage.output_tokens == 500
    out = result.rate_limits["output_tokens"]
    assert out.limit == 32000 and out.remaining == 12000 + 4000 - 500
    assert result.rate_limits["input_tokens"].remaining == 21000


async def test_stream_output_remaining_never_passes_the_limit(
    fake_anthropic: FakeAnthropic, llm: AnthropicLLM
) -> None:
    fake_anthropic.ratelimit_headers = {
        "anthropic-ratelimit-output-tokens-limit": "32000",
        "anthropic-ratelimit-output-tokens-remaining": "31000",
    }
    result = await llm.complete(tier="research", system="s", prompt="p", max_tokens=16000)
    assert result.rate_limits["output_tokens"].remaining == 32000


@pytest.mark.parametrize("method", ["complete", "structured"])
async def test_a_429_carries_the_headers(
    fake_anthropic: FakeAnthropic, llm: AnthropicLLM, method: str
) -> None:
    fake_anthropic.ratelimit_headers = {
        **HEADERS,
        "anthropic-ratelimit-input-tokens-remaining": "0",
    }
    fake_anthropic.enqueue("429")
    call = (
        llm.complete(tier="research", system="s", prompt="p")
        if method == "complete"
        else llm.structured(tier="judge", system="s", prompt="p", schema=Verdict)
    )
    with pytest.raises(LLMError) as info:
        await call
    assert info.value.status_code == 429 and info.value.retry_after == 7.0
    assert info.value.rate_limits["input_tokens"].remaining == 0


async def test_a_dropped_connection_has_no_readings(
    fake_anthropic: FakeAnthropic, llm: AnthropicLLM
) -> None:
    fake_anthropic.ratelimit_headers = dict(HEADERS)
    fake_anthropic.enqueue("drop")
    with pytest.raises(LLMError) as info:
        await llm.structured(tier="judge", system="s", prompt="p", schema=Verdict)
    assert info.value.rate_limits == {}


async def test_concurrent_calls_each_get_their_own_headers(
    fake_anthropic: FakeAnthropic, llm: AnthropicLLM
) -> None:
    # one client, two calls in flight together (the fake answers them as a pair): each result
    # holds the headers of its own answer
    fake_anthropic.pair_delayed = True
    fake_anthropic.ratelimit_for = lambda body: {
        "anthropic-ratelimit-requests-remaining": body["messages"][0]["content"].split("-")[1]
    }

    async def one(prompt: str) -> int | None:
        if prompt.startswith("s"):
            _, result = await llm.structured(
                tier="judge", system="s", prompt=prompt, schema=Verdict
            )
        else:
            result = await llm.complete(tier="format", system="s", prompt=prompt)
        return result.rate_limits["requests"].remaining

    fake_anthropic.structured_json = '{"approved": true}'
    got = await asyncio.gather(one("s-11"), one("c-22"))
    assert list(got) == [11, 22]
    assert fake_anthropic.max_in_flight == 2
