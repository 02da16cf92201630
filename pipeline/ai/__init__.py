"""The AI layer every pipeline stage uses: the `LLM` protocol and its two implementations.

    llm = make_llm(api_key=settings.anthropic_api_key, mode=settings.llm_mode)
    result = await llm.complete(tier="research", system=..., prompt=..., web_search=True)
    # stable blocks first, each a prompt-cache breakpoint; the per-call prompt last
    result = await llm.complete(
        tier="analysis", system=PromptBlock(rubric, cache="1h"),
        context=[PromptBlock(research, cache="1h")], prompt=ticker_question,
    )
    verdict, result = await llm.structured(tier="judge", system=..., prompt=..., schema=Verdict)

Failures raise `LLMError` (with `error_type`, `retry_after` and `retryable`), which the job queue
classifies; importing this package also teaches the engine the SDK's own exceptions
(`pipeline.ai.errors`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pipeline.ai.anthropic_client import AnthropicLLM
from pipeline.ai.base import (
    DEFAULT_EFFORTS,
    DEFAULT_MODELS,
    LLM,
    PRICES,
    TIERS,
    CacheTTL,
    Effort,
    LLMError,
    LLMResult,
    ModelPrice,
    PromptBlock,
    Tier,
    Usage,
    cost_usd,
)
from pipeline.ai.errors import JUDGE_REJECTION, classify_sdk_error
from pipeline.ai.offline import (
    Fault,
    FixtureFactory,
    OfflineLLM,
    offline_rejections_enabled,
    offline_should_reject,
    register_fixture,
    unregister_fixture,
)

__all__ = [
    "DEFAULT_EFFORTS",
    "DEFAULT_MODELS",
    "JUDGE_REJECTION",
    "LLM",
    "MODES",
    "PRICES",
    "TIERS",
    "AnthropicLLM",
    "CacheTTL",
    "Effort",
    "Fault",
    "FixtureFactory",
    "LLMError",
    "LLMResult",
    "ModelPrice",
    "OfflineLLM",
    "PromptBlock",
    "Tier",
    "Usage",
    "classify_sdk_error",
    "cost_usd",
    "make_llm",
    "offline_rejections_enabled",
    "offline_should_reject",
    "register_fixture",
    "unregister_fixture",
]

log = logging.getLogger("pipeline.ai")

MODES = ("offline", "anthropic")


def make_llm(
    *,
    api_key: str | None,
    mode: str | None = None,
    base_url: str | None = None,
    models: Mapping[Tier, str] | None = None,
    efforts: Mapping[Tier, Effort | None] | None = None,
    latency: float = 0.0,
) -> LLM:
    """Choose and build the model implementation, logging the choice (never the key).

    Args:
        api_key: The Anthropic API key, or None/"" when there is none.
        mode: "offline", "anthropic", or None to pick "anthropic" exactly when a key is set.
        base_url: API base URL for `AnthropicLLM` (default `$ANTHROPIC_BASE_URL`).
        models: Model id per tier for `AnthropicLLM`.
        efforts: Default effort per tier for `AnthropicLLM`.
        latency: Simulated seconds per call for `OfflineLLM` (`PIPELINE_OFFLINE_LATENCY` wins);
            offline faults come from `PIPELINE_OFFLINE_FAULTS`.

    Returns:
        An `AnthropicLLM` or an `OfflineLLM`.

    Raises:
        ValueError: On an unknown mode, or mode "anthropic" without a key.
    """
    key = (api_key or "").strip() or None
    chosen = (mode or "").strip().lower() or ("anthropic" if key else "offline")
    if chosen not in MODES:
        raise ValueError(f"unknown LLM mode {mode!r}; use one of {MODES}")
    if chosen == "anthropic":
        if key is None:
            raise ValueError("LLM mode 'anthropic' needs an API key (ANTHROPIC_API_KEY)")
        llm = AnthropicLLM(key, base_url=base_url, models=models, efforts=efforts)
        log.info(
            "LLM mode: anthropic (base_url=%s, models=%s)", llm.client.base_url, dict(llm.models)
        )
        return llm
    offline = OfflineLLM.from_env(latency=latency)
    log.info(
        "LLM mode: offline (%s; latency=%.3fs, faults=%d)",
        "requested" if (mode or "").strip() else "no API key",
        offline.latency,
        len(offline.faults),
    )
    return offline
