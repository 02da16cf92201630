"""The real `AnthropicLLM` against the local fake Messages API: success paths and every error."""

from __future__ import annotations

import asyncio
import time

import anthropic
import pydantic
import pytest
from fake_anthropic import API_KEY, HANG, FakeAnthropic
from pydantic import BaseModel, Field

from jobqueue import ErrorType
from pipeline.ai import AnthropicLLM, LLMError, Usage, classify_sdk_error, cost_usd

E = ErrorType

# scenario, SDK exception raised, error_type, retryable, retry_after, status_code
SCENARIOS = [
    ("429", anthropic.RateLimitError, E.RATE_LIMIT, True, 7.0, 429),
    ("429-ms", anthropic.RateLimitError, E.RATE_LIMIT, True, 1.5, 429),
    ("429-bare", anthropic.RateLimitError, E.RATE_LIMIT, True, None, 429),
    ("ramp", anthropic.RampLimitExceededError, E.RATE_LIMIT, True, 2.0, 429),
    ("spend-enforced", anthropic.EnforcedSpendLimitReachedError, E.API_ERROR, False, None, 429),
    ("spend-contract", anthropic.ContractSpendLimitReachedError, E.API_ERROR, False, None, 429),
    ("529", anthropic.OverloadedError, E.NETWORK_ERROR, True, 3.0, 529),
    ("529-no-retry", anthropic.OverloadedError, E.API_ERROR, False, None, 529),
    ("500", anthropic.InternalServerError, E.NETWORK_ERROR, True, None, 500),
    ("503", anthropic.ServiceUnavailableError, E.NETWORK_ERROR, True, None, 503),
    ("408", anthropic.RequestTimeoutError, E.NETWORK_ERROR, True, None, 408),
    ("409", anthropic.ConflictError, E.NETWORK_ERROR, True, None, 409),
    ("401", anthropic.AuthenticationError, E.API_ERROR, False, None, 401),
    ("402", anthropic.PaymentRequiredError, E.API_ERROR, False, None, 402),
    ("403", anthropic.PermissionDeniedError, E.API_ERROR, False, None, 403),
    ("400", anthropic.BadRequestError, E.VALIDATION_ERROR, False, None, 400),
    ("404", anthropic.NotFoundError, E.VALIDATION_ERROR, False, None, 404),
    ("413", anthropic.ContentTooLargeError, E.VALIDATION_ERROR, False, None, 413),
    ("422", anthropic.UnprocessableEntityError, E.VALIDATION_ERROR, False, None, 422),
    ("drop", anthropic.APIConnectionError, E.NETWORK_ERROR, True, None, None),
]


class Verdict(BaseModel):
    approved: bool
    score: int = Field(ge=1, le=10)
    reasons: list[str]


async def _call(llm: AnthropicLLM, method: str) -> object:
    if method == "complete":
        return await llm.complete(tier="research", system="sys", prompt="go")
    return await llm.structured(tier="judge", system="sys", prompt="go", schema=Verdict)


@pytest.mark.parametrize("method", ["complete", "structured"])
@pytest.mark.parametrize(
    ("scenario", "sdk_error", "error_type", "retryable", "retry_after", "status"), SCENARIOS
)
async def test_error_scenarios_are_classified(
    fake_anthropic: FakeAnthropic,
    llm: AnthropicLLM,
    method: str,
    scenario: str,
    sdk_error: type[Exception],
    error_type: ErrorType,
    retryable: bool,
    retry_after: float | None,
    status: int | None,
) -> None:
    fake_anthropic.enqueue(scenario)
    with pytest.raises(LLMError) as info:
        await _call(llm, method)
    err = info.value
    assert type(err.__cause__) is sdk_error
    assert (err.error_type, err.retryable, err.retry_after, err.status_code) == (
        error_type,
        retryable,
        retry_after,
        status,
    )
    assert API_KEY not in str(err)
    # The SDK made exactly one attempt: the queue owns retries.
    assert len(fake_anthropic.requests) == 1
    assert fake_anthropic.requests[0].headers["x-stainless-retry-count"] == "0"


async def test_retry_after_http_date(fake_anthropic: FakeAnthropic, llm: AnthropicLLM) -> None:
    """The fake dates its Retry-After 30 s after it replies (whole seconds); the delay is
    measured from when the reply is parsed, so the call's own duration is allowed for."""
    fake_anthropic.enqueue("429-date")
    started = time.time()
    with pytest.raises(LLMError) as info:
        await llm.complete(tier="research", system="s", prompt="p")
    took = time.time() - started
    assert info.value.error_type is E.RATE_LIMIT
    assert info.value.retry_after is not None
    assert 30.0 - 1.0 - took <= info.value.retry_after <= 30.0


async def test_sse_error_after_200_is_network_error(
    fake_anthropic: FakeAnthropic, llm: AnthropicLLM
) -> None:
    fake_anthropic.enqueue("sse-overloaded")
    with pytest.raises(LLMError) as info:
        await llm.complete(tier="research", system="s", prompt="p")
    err = info.value
    assert type(err.__cause__) is anthropic.APIStatusError
    assert (err.error_type, err.retryable, err.status_code) == (E.NETWORK_ERROR, True, 200)


@pytest.mark.parametrize("method", ["complete", "structured"])
async def test_read_timeout_is_network_error(fake_anthropic: FakeAnthropic, method: str) -> None:
    """The fake never answers "slow" (until it closes): only the client's timeout ends the call."""
    fake_anthropic.enqueue("slow")
    async with AnthropicLLM(API_KEY, base_url=fake_anthropic.base_url, timeout=0.3) as llm:
        with pytest.raises(LLMError) as info:
            await asyncio.wait_for(_call(llm, method), HANG)  # bounds a hang only
    assert type(info.value.__cause__) is anthropic.APITimeoutError
    assert (info.value.error_type, info.value.retryable) == (E.NETWORK_ERROR, True)
    assert len(fake_anthropic.requests) == 1


async def test_api_key_is_redacted_from_messages(
    fake_anthropic: FakeAnthropic, llm: AnthropicLLM
) -> None:
    fake_anthropic.enqueue("401")
    with pytest.raises(LLMError) as info:
        await llm.complete(tier="research", system="s", prompt="p")
    assert API_KEY in str(info.value.__cause__)  # the server echoed it...
    assert API_KEY not in str(info.value)  # ...but our message does not carry it
    assert API_KEY not in repr(info.value)
    assert "sk-***" in str(info.value)
    assert API_KEY not in repr(llm)


async def test_complete_joins_text_blocks_after_thinking(
    fake_anthropic: FakeAnthropic, llm: AnthropicLLM
) -> None:
    fake_anthropic.text_blocks = ["Alpha ", "beta ", "gamma."]
    result = await llm.complete(tier="research", system="sys", prompt="go", web_search=True)
    assert result.text == "Alpha beta gamma."
    assert result.model == "claude-opus-5-5"
    assert result.stop_reason == "end_turn"
    assert result.request_id == "req_fake_1"
    assert result.usage == Usage(
        input_tokens=1000,
        output_tokens=500,
        cache_read_tokens=200,
        cache_write_tokens=100,
        web_searches=2,
        thinking_tokens=120,
    )
    # 1000×$4 + 500×$20 + 200×$0.20 + 100×$5 per MTok, plus 2 searches × $0.01
    assert result.cost_usd == pytest.approx(0.01454 + 0.02)
    assert result.cost_usd == cost_usd("claude-opus-5-5", result.usage)


async def test_request_body_per_tier(fake_anthropic: FakeAnthropic, llm: AnthropicLLM) -> None:
    await llm.complete(tier="research", system="S", prompt="P", web_search=True)
    await llm.complete(tier="ranking", system="S", prompt="P", max_tokens=1234)
    await llm.complete(tier="format", system="S", prompt="P", effort="medium")
    research, ranking, fmt = (r.body for r in fake_anthropic.requests)
    assert research["model"] == "claude-opus-5-5"
    assert research["output_config"] == {"effort": "high"}
    assert research["tools"] == [
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
    ]
    assert research["stream"] is True
    assert research["system"] == "S"
    assert research["messages"] == [{"role": "user", "content": "P"}]
    assert ranking["model"] == "claude-sonnet-5-5"
    assert ranking["max_tokens"] == 1234
    assert "output_config" not in ranking  # no effort configured for ranking
    assert "tools" not in ranking
    assert fmt["model"] == "claude-haiku-5-5"
    assert fmt["output_config"] == {"effort": "medium"}  # the call's effort wins
    for request in fake_anthropic.requests:
        for forbidden in ("temperature", "top_p", "top_k"):
            assert forbidden not in request.body
        assert request.headers["x-stainless-retry-count"] == "0"


async def test_models_and_efforts_are_configurable(fake_anthropic: FakeAnthropic) -> None:
    async with AnthropicLLM(
        API_KEY,
        base_url=fake_anthropic.base_url,
        models={"judge": "claude-haiku-5-5"},
        efforts={"judge": None},
    ) as llm:
        result = await llm.complete(tier="judge", system="s", prompt="p")
    assert result.model == "claude-haiku-5-5"
    assert fake_anthropic.requests[0].body["model"] == "claude-haiku-5-5"
    assert "output_config" not in fake_anthropic.requests[0].body


async def test_pause_turn_is_continued(fake_anthropic: FakeAnthropic, llm: AnthropicLLM) -> None:
    fake_anthropic.enqueue("pause", "pause")
    result = await llm.complete(tier="research", system="s", prompt="p", web_search=True)
    assert result.text == "part 1; part 2; final after 2 pause(s)."
    assert result.stop_reason == "end_turn"
    assert result.usage.input_tokens == 3000
    assert result.usage.web_searches == 6
    assert len(fake_anthropic.requests) == 3
    last = fake_anthropic.requests[-1].body["messages"]
    assert [m["role"] for m in last] == ["user", "assistant"]
    block_types = [b["type"] for b in last[1]["content"]]
    assert block_types == ["thinking", "text", "thinking", "text"]
    assert last[1]["content"][1]["text"] == "part 1; "


async def test_pause_turn_loop_is_capped(fake_anthropic: FakeAnthropic, llm: AnthropicLLM) -> None:
    fake_anthropic.enqueue(*["pause"] * 10)
    result = await llm.complete(tier="research", system="s", prompt="p")
    assert len(fake_anthropic.requests) == 4  # the first call plus 3 continuations
    assert result.stop_reason == "pause_turn"
    assert result.text == "part 1; part 2; part 3; part 4; "


async def test_structured_parses_schema(fake_anthropic: FakeAnthropic, llm: AnthropicLLM) -> None:
    fake_anthropic.structured_json = '{"approved": false, "score": 4, "reasons": ["thin"]}'
    verdict, result = await llm.structured(tier="judge", system="s", prompt="p", schema=Verdict)
    assert verdict == Verdict(approved=False, score=4, reasons=["thin"])
    assert result.text == fake_anthropic.structured_json
    assert result.model == "claude-sonnet-5-5"
    assert result.cost_usd == cost_usd("claude-sonnet-5-5", result.usage) > 0
    assert result.request_id == "req_fake_1"
    body = fake_anthropic.requests[0].body
    assert body["output_config"]["effort"] == "medium"
    fmt = body["output_config"]["format"]
    assert fmt["type"] == "json_schema"
    assert fmt["schema"]["additionalProperties"] is False
    assert set(fmt["schema"]["required"]) == {"approved", "score", "reasons"}
    assert "temperature" not in body and "stream" not in body


async def test_structured_bad_json_is_retryable_unknown(
    fake_anthropic: FakeAnthropic, llm: AnthropicLLM
) -> None:
    fake_anthropic.enqueue("bad-json")
    with pytest.raises(LLMError) as info:
        await llm.structured(tier="judge", system="s", prompt="p", schema=Verdict)
    assert isinstance(info.value.__cause__, pydantic.ValidationError)
    assert (info.value.error_type, info.value.retryable) == (E.UNKNOWN, True)


async def test_out_of_range_value_fails_validation(
    fake_anthropic: FakeAnthropic, llm: AnthropicLLM
) -> None:
    fake_anthropic.structured_json = '{"approved": true, "score": 11, "reasons": []}'
    with pytest.raises(LLMError) as info:
        await llm.structured(tier="judge", system="s", prompt="p", schema=Verdict)
    assert info.value.error_type is E.UNKNOWN


async def test_base_url_from_environment(
    fake_anthropic: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_anthropic.base_url)
    async with AnthropicLLM(API_KEY) as llm:
        assert llm.base_url == fake_anthropic.base_url
        result = await llm.complete(tier="format", system="s", prompt="p")
    assert result.text == "Hello, world."
    assert len(fake_anthropic.requests) == 1


def test_client_has_sdk_retries_off() -> None:
    llm = AnthropicLLM(API_KEY, base_url="http://127.0.0.1:9", timeout=123.0)
    assert llm.client.max_retries == 0
    assert isinstance(llm.client.timeout, anthropic.Timeout)
    assert llm.client.timeout.read == 123.0
    assert llm.client.timeout.connect == 10.0
    with pytest.raises(ValueError, match="API key"):
        AnthropicLLM("")


async def test_semaphore_caps_concurrency(fake_anthropic: FakeAnthropic) -> None:
    """Replies come two by two, only once two requests are in flight: the client must send two
    at once to finish, and the cap keeps it from ever having more."""
    fake_anthropic.pair_delayed = True
    async with AnthropicLLM(
        API_KEY, base_url=fake_anthropic.base_url, max_concurrency=2, timeout=HANG
    ) as llm:
        await asyncio.gather(
            *(llm.complete(tier="format", system="s", prompt=str(i)) for i in range(6))
        )
    assert fake_anthropic.max_in_flight == 2
    assert len(fake_anthropic.requests) == 6


async def test_connection_refused_is_network_error() -> None:
    async with AnthropicLLM(API_KEY, base_url="http://127.0.0.1:9", timeout=2.0) as llm:
        with pytest.raises(LLMError) as info:
            await llm.complete(tier="format", system="s", prompt="p")
    assert isinstance(info.value.__cause__, anthropic.APIConnectionError)
    assert info.value.error_type is E.NETWORK_ERROR


async def test_scenario_by_header_with_the_raw_sdk(fake_anthropic: FakeAnthropic) -> None:
    client = anthropic.AsyncAnthropic(
        api_key=API_KEY,
        base_url=fake_anthropic.base_url,
        max_retries=0,
        timeout=anthropic.Timeout(HANG, connect=HANG),
    )
    async with client:
        with pytest.raises(anthropic.RateLimitError) as info:
            await client.messages.create(
                model="claude-haiku-5-5",
                max_tokens=100,
                messages=[{"role": "user", "content": "hi"}],
                extra_headers={"x-fake-scenario": "429-ms"},
            )
        ok = await client.messages.create(
            model="claude-haiku-5-5", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        )
    assert ok.content[0].type == "thinking"  # why callers must select blocks by type
    err = classify_sdk_error(info.value)
    assert (err.error_type, err.retry_after) == (E.RATE_LIMIT, 1.5)
    assert [r.scenario for r in fake_anthropic.requests] == ["429-ms", "ok"]
