"""`make_llm` selection, the price table, `Usage` arithmetic and the package's exports."""

from __future__ import annotations

import logging

import pytest

import pipeline.ai
from pipeline.ai import (
    LLM,
    AnthropicLLM,
    Fault,
    OfflineLLM,
    Usage,
    cost_usd,
    make_llm,
)
from pipeline.ai.base import price_for

KEY = "sk-ant-api03-secret-value-xyz"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PIPELINE_OFFLINE_FAULTS", "PIPELINE_OFFLINE_LATENCY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("api_key", "mode", "expected"),
    [
        (None, None, OfflineLLM),
        ("", None, OfflineLLM),
        ("   ", None, OfflineLLM),
        (KEY, None, AnthropicLLM),
        (KEY, "", AnthropicLLM),
        (KEY, "offline", OfflineLLM),
        (None, "offline", OfflineLLM),
        (KEY, "anthropic", AnthropicLLM),
        (KEY, " Anthropic ", AnthropicLLM),
    ],
)
async def test_make_llm_selection(
    api_key: str | None, mode: str | None, expected: type, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.ai")
    llm = make_llm(api_key=api_key, mode=mode, base_url="http://127.0.0.1:9")
    try:
        assert type(llm) is expected
        assert isinstance(llm, LLM)
        assert (
            "LLM mode: " + ("anthropic" if expected is AnthropicLLM else "offline") in caplog.text
        )
        assert "secret-value" not in caplog.text
    finally:
        await llm.aclose()  # type: ignore[attr-defined]


def test_make_llm_rejects_bad_modes() -> None:
    with pytest.raises(ValueError, match="needs an API key"):
        make_llm(api_key=None, mode="anthropic")
    with pytest.raises(ValueError, match="unknown LLM mode"):
        make_llm(api_key=KEY, mode="openai")


async def test_make_llm_passes_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    llm = make_llm(
        api_key=KEY,
        base_url="http://127.0.0.1:9",
        models={"format": "claude-sonnet-5-5"},
        efforts={"ranking": "low"},
    )
    assert isinstance(llm, AnthropicLLM)
    assert llm.model_for("format") == "claude-sonnet-5-5"
    assert llm.model_for("research") == "claude-opus-5-5"
    assert llm.efforts["ranking"] == "low"
    assert str(llm.client.base_url).startswith("http://127.0.0.1:9")
    await llm.aclose()

    monkeypatch.setenv("PIPELINE_OFFLINE_FAULTS", "auth:2")
    offline = make_llm(api_key=None, latency=0.25)
    assert isinstance(offline, OfflineLLM)
    assert offline.latency == 0.25
    assert offline.faults == (Fault("auth", 2),)
    monkeypatch.setenv("PIPELINE_OFFLINE_LATENCY", "0.05")
    env_latency = make_llm(api_key=None, latency=0.25)
    assert isinstance(env_latency, OfflineLLM)
    assert env_latency.latency == 0.05


@pytest.mark.parametrize(
    ("model", "usage", "expected"),
    [
        ("claude-opus-5-5", Usage(input_tokens=1_000_000), 4.0),
        ("claude-opus-5-5", Usage(output_tokens=1_000_000), 20.0),
        ("claude-sonnet-5-5", Usage(input_tokens=1_000_000, output_tokens=1_000_000), 12.0),
        ("claude-haiku-5-5", Usage(input_tokens=1_000_000, output_tokens=1_000_000), 0.60),
        ("claude-opus-5-5", Usage(cache_read_tokens=1_000_000), 0.20),
        ("claude-sonnet-5-5", Usage(cache_read_tokens=1_000_000), 0.20),
        ("claude-fable-5-1", Usage(cache_read_tokens=1_000_000), 0.25),
        # cache writes: 1.25x input for the 5-minute TTL, 2x for the 1-hour one
        ("claude-opus-5-5", Usage(cache_write_tokens=1_000_000), 5.0),
        ("claude-opus-5-5", Usage(cache_write_tokens=1_000_000, cache_write_1h_tokens=10**6), 8.0),
        ("claude-sonnet-5-5", Usage(cache_write_tokens=10**6, cache_write_1h_tokens=400_000), 3.1),
        ("claude-haiku-5-5", Usage(cache_write_tokens=10**6, cache_write_1h_tokens=10**6), 0.20),
        ("claude-fable-5-1", Usage(cache_write_tokens=10**6), 12.5),
        ("claude-opus-5-5", Usage(web_searches=3), 0.03),
        ("claude-opus-5-5-20260101", Usage(input_tokens=1_000_000), 4.0),
        ("offline", Usage(input_tokens=1_000_000), 0.0),
        ("some-other-model", Usage(output_tokens=1_000_000), 0.0),
    ],
)
def test_cost_usd(model: str, usage: Usage, expected: float) -> None:
    assert cost_usd(model, usage) == pytest.approx(expected)


def test_thinking_tokens_are_not_billed_twice() -> None:
    with_thinking = Usage(output_tokens=1000, thinking_tokens=800)
    assert cost_usd("claude-opus-5-5", with_thinking) == cost_usd(
        "claude-opus-5-5", Usage(output_tokens=1000)
    )
    assert price_for("claude-opus-5-5") is not None
    assert price_for("nope") is None


def test_usage_addition() -> None:
    total = Usage(input_tokens=1, output_tokens=2, web_searches=1) + Usage(
        input_tokens=10,
        cache_read_tokens=5,
        cache_write_tokens=3,
        cache_write_1h_tokens=2,
        thinking_tokens=7,
    )
    assert total == Usage(
        input_tokens=11,
        output_tokens=2,
        cache_read_tokens=5,
        cache_write_tokens=3,
        cache_write_1h_tokens=2,
        web_searches=1,
        thinking_tokens=7,
    )


def test_exports_are_sorted_and_present() -> None:
    exported = pipeline.ai.__all__

    def isort_style(name: str) -> tuple[int, str]:  # ruff RUF022: CONSTANTS, Classes, functions
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert exported == sorted(exported, key=isort_style)
    for name in exported:
        assert hasattr(pipeline.ai, name), name
