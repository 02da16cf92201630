"""The provider-neutral AI layer: results, usage, errors, prices and the `LLM` protocol.

Every pipeline stage talks to a model through `LLM`; the two implementations are
`pipeline.ai.anthropic_client.AnthropicLLM` (the real API) and `pipeline.ai.offline.OfflineLLM`
(deterministic, no network). Failures surface as `LLMError`, whose `error_type` and
`retry_after` and `retryable` attributes are read by the job queue's failure classifier, so a
handler can simply let it propagate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict

from jobqueue import error_type_info
from jobqueue import redact as _redact

__all__ = [
    "DEFAULT_EFFORTS",
    "DEFAULT_MODELS",
    "LLM",
    "PRICES",
    "TIERS",
    "WEB_SEARCH_PRICE_USD",
    "Effort",
    "LLMError",
    "LLMResult",
    "ModelPrice",
    "Tier",
    "Usage",
    "cost_usd",
    "price_for",
    "redact",
]

Tier = Literal["research", "ranking", "analysis", "judge", "format"]
"""One model tier per pipeline stage; the concrete model id for each lives in configuration."""

TIERS: tuple[Tier, ...] = ("research", "ranking", "analysis", "judge", "format")

Effort = Literal["low", "medium", "high", "xhigh", "max"]
"""Values accepted by `output_config={"effort": ...}`."""

DEFAULT_MODELS: dict[Tier, str] = {
    "research": "claude-opus-5-5",
    "ranking": "claude-sonnet-5-5",
    "analysis": "claude-opus-5-5",
    "judge": "claude-sonnet-5-5",
    "format": "claude-haiku-5-5",
}
"""Model id per tier when configuration does not say otherwise."""

DEFAULT_EFFORTS: dict[Tier, Effort | None] = {
    "research": "high",
    "ranking": None,
    "analysis": "high",
    "judge": "medium",
    "format": "low",
}
"""Effort per tier when a call does not pass one; None sends no `output_config`."""

T = TypeVar("T", bound=BaseModel)

# The engine's redaction (API keys, Bearer tokens, URL passwords), re-exported for the AI layer.
redact = _redact


class Usage(BaseModel):
    """Token and tool counts of one logical call (summed over `pause_turn` continuations)."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    web_searches: int = 0
    thinking_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        """Return the field-wise sum of two usages."""
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            web_searches=self.web_searches + other.web_searches,
            thinking_tokens=self.thinking_tokens + other.thinking_tokens,
        )


class LLMResult(BaseModel):
    """The outcome of one `complete()` or `structured()` call."""

    text: str
    model: str
    usage: Usage
    cost_usd: float
    stop_reason: str | None = None
    request_id: str | None = None


class LLMError(Exception):
    """The only error type a model call raises; chained (`raise ... from`) to the SDK's error.

    Attributes:
        error_type: How the job queue should classify the failure: a built-in `ErrorType` or
            a type registered with the engine.
        retry_after: Seconds the server asked us to wait, if it said; None otherwise.
        retryable: Whether repeating the same request can succeed (default: the type's).
        status_code: The HTTP status, if the failure came with one.
        request_id: The provider's request id, if known.

    Raises:
        ValueError: `error_type` is not a known error type.
    """

    def __init__(
        self,
        message: str,
        *,
        error_type: str,
        retry_after: float | None = None,
        retryable: bool | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        info = error_type_info(error_type)
        if info is None:
            raise ValueError(f"LLMError error_type must be a known error type, got {error_type!r}")
        self.error_type = info.name
        self.retry_after = None if retry_after is None else max(0.0, float(retry_after))
        self.retryable = info.retryable if retryable is None else bool(retryable)
        self.status_code = status_code
        self.request_id = request_id

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle with the keyword attributes (plain `Exception` pickling drops them)."""
        return (_rebuild_llm_error, (self.message, self.__dict__.copy()))

    def __repr__(self) -> str:
        return (
            f"LLMError({self.message!r}, error_type={self.error_type}, "
            f"retry_after={self.retry_after!r}, retryable={self.retryable!r}, "
            f"status_code={self.status_code!r})"
        )


def _rebuild_llm_error(message: str, state: dict[str, Any]) -> LLMError:
    err = LLMError.__new__(LLMError)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


WEB_SEARCH_PRICE_USD = 0.01
"""$10 per 1,000 server-side web searches."""


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens for one model, plus USD per web search."""

    input: float
    output: float
    cache_read: float
    cache_write: float
    web_search: float = WEB_SEARCH_PRICE_USD


PRICES: dict[str, ModelPrice] = {
    "claude-opus-5-5": ModelPrice(4.0, 20.0, cache_read=0.20, cache_write=5.0),
    "claude-sonnet-5-5": ModelPrice(2.0, 10.0, cache_read=0.20, cache_write=2.5),
    "claude-haiku-5-5": ModelPrice(0.10, 0.50, cache_read=0.01, cache_write=0.125),
    "claude-fable-5-1": ModelPrice(10.0, 50.0, cache_read=1.0, cache_write=12.5),
}
"""Price table; thinking tokens are billed as output and already inside `output_tokens`."""

_FAMILY_FALLBACK = {
    "opus": "claude-opus-5-5",
    "sonnet": "claude-sonnet-5-5",
    "haiku": "claude-haiku-5-5",
    "fable": "claude-fable-5-1",
}


def price_for(model: str) -> ModelPrice | None:
    """Look up a model's price: exact id, then a dated id (`<id>-YYYYMMDD`), then its family.

    Args:
        model: A model id such as `claude-opus-5-5`.

    Returns:
        The price, or None for an unknown model (e.g. the offline fake).
    """
    if model in PRICES:
        return PRICES[model]
    for known, price in PRICES.items():
        if model.startswith(known + "-"):
            return price
    for family, known in _FAMILY_FALLBACK.items():
        if family in model:
            return PRICES[known]
    return None


def cost_usd(model: str, usage: Usage) -> float:
    """Compute what a call cost in USD from its usage and the price table.

    Args:
        model: The model id that served the call.
        usage: Its token and search counts.

    Returns:
        The cost in USD (0.0 for a model with no known price).
    """
    price = price_for(model)
    if price is None:
        return 0.0
    tokens = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_tokens * price.cache_read
        + usage.cache_write_tokens * price.cache_write
    )
    return round(tokens / 1_000_000 + usage.web_searches * price.web_search, 8)


@runtime_checkable
class LLM(Protocol):
    """What a pipeline stage needs from a language model."""

    async def complete(
        self,
        *,
        tier: Tier,
        system: str,
        prompt: str,
        max_tokens: int = 16000,
        effort: Effort | None = None,
        web_search: bool = False,
        seed_key: str = "",
    ) -> LLMResult:
        """Generate free text (optionally with web search).

        Args:
            tier: Which stage is calling; selects the model and default effort.
            system: The system prompt.
            prompt: The user message.
            max_tokens: Output budget (thinking included).
            effort: Overrides the tier's default effort.
            web_search: Enable the server-side web search tool.
            seed_key: Extra variation key; only the offline model uses it.

        Returns:
            The joined text of all `text` blocks with usage and cost.

        Raises:
            LLMError: On any failure.
        """
        ...

    async def structured(
        self,
        *,
        tier: Tier,
        system: str,
        prompt: str,
        schema: type[T],
        max_tokens: int = 8000,
        effort: Effort | None = None,
        seed_key: str = "",
    ) -> tuple[T, LLMResult]:
        """Generate an instance of `schema` via structured output.

        Args:
            tier: Which stage is calling; selects the model and default effort.
            system: The system prompt.
            prompt: The user message.
            schema: The pydantic model the reply must validate against.
            max_tokens: Output budget (thinking included).
            effort: Overrides the tier's default effort.
            seed_key: Extra variation key; only the offline model uses it.

        Returns:
            The validated instance and the call's result (its `text` is the raw JSON).

        Raises:
            LLMError: On any failure, including a reply that does not validate.
        """
        ...
