"""The provider-neutral AI layer: results, usage, errors, prices and the `LLM` protocol.

Every pipeline stage talks to a model through `LLM`; the two implementations are
`pipeline.ai.anthropic_client.AnthropicLLM` (the real API) and `pipeline.ai.offline.OfflineLLM`
(deterministic, no network). Failures surface as `LLMError`, whose `error_type` and
`retry_after` and `retryable` attributes are read by the job queue's failure classifier, so a
handler can simply let it propagate.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, get_args, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from jobqueue import ErrorType, error_type_info
from jobqueue import redact as _redact
from pipeline.ai.ratelimits import RateLimitReading

__all__ = [
    "DEFAULT_EFFORTS",
    "DEFAULT_MODELS",
    "LLM",
    "MAX_CACHE_BREAKPOINTS",
    "PRICES",
    "TIERS",
    "WEB_SEARCH_PRICE_USD",
    "CacheTTL",
    "Effort",
    "LLMError",
    "LLMResult",
    "ModelPrice",
    "PromptBlock",
    "Tier",
    "Usage",
    "check_prompt_blocks",
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

CacheTTL = Literal["5m", "1h"]
"""Lifetime of a prompt-cache entry (`cache_control.ttl`): five minutes (the API's default,
refreshed on every hit) or one hour (for a prefix that calls reuse more than 5 minutes apart)."""

MAX_CACHE_BREAKPOINTS = 4
"""The Messages API refuses a request with more `cache_control` blocks than this."""


@dataclass(frozen=True)
class PromptBlock:
    """A piece of a request's prompt; with `cache` set, a prompt-cache breakpoint closes it.

    A breakpoint caches everything up to and including its block (tools, system, then
    messages), so a call whose request starts with the same blocks reads that prefix from the
    cache. Put stable blocks first and the per-call text last. A prefix shorter than the
    model's minimum cacheable length is simply not cached.

    Attributes:
        text: The block's text (not empty: the API refuses an empty text block).
        cache: The cache entry's TTL, or None for a block that is not a breakpoint.

    Raises:
        ValueError: On an empty text or an unknown TTL.
    """

    text: str
    cache: CacheTTL | None = None

    def __post_init__(self) -> None:
        if not self.text:
            raise ValueError("a PromptBlock needs text (the API refuses an empty text block)")
        if self.cache is not None and self.cache not in get_args(CacheTTL):
            raise ValueError(
                f"PromptBlock cache must be one of {get_args(CacheTTL)} or None, got {self.cache!r}"
            )


T = TypeVar("T", bound=BaseModel)

# The engine's redaction (API keys, Bearer tokens, URL passwords), re-exported for the AI layer.
redact = _redact


class Usage(BaseModel):
    """Token and tool counts of one logical call (summed over `pause_turn` continuations).

    The prompt of a call is `input_tokens + cache_read_tokens + cache_write_tokens` tokens:
    `input_tokens` are the ones neither read from nor written to the prompt cache.
    `cache_write_1h_tokens` is the part of `cache_write_tokens` written with a one-hour TTL
    (priced higher than the five-minute default).
    """

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    web_searches: int = 0
    thinking_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        """Return the field-wise sum of two usages."""
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens + other.cache_write_1h_tokens,
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
    rate_limits: dict[str, RateLimitReading] = Field(default_factory=dict)
    """What the provider's rate-limit headers said of its limits after the call (limiter
    bucket name -> reading); empty when it said nothing (the offline model)."""


class LLMError(Exception):
    """The only error type a model call raises; chained (`raise ... from`) to the SDK's error.

    Attributes:
        error_type: How the job queue should classify the failure: a built-in `ErrorType` or
            a type registered with the engine.
        retry_after: Seconds the server asked us to wait, if it said; None otherwise.
        retryable: Whether repeating the same request can succeed (default: the type's).
        status_code: The HTTP status, if the failure came with one.
        request_id: The provider's request id, if known.
        rate_limits: What the error response's rate-limit headers said (a 429 states them too).

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
        rate_limits: Mapping[str, RateLimitReading] | None = None,
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
        self.rate_limits: dict[str, RateLimitReading] = dict(rate_limits or {})

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
    """USD per million tokens for one model, plus USD per web search.

    Attributes:
        input: Prompt tokens neither read from nor written to the cache.
        output: Output tokens (thinking included).
        cache_read: Prompt tokens read from the cache (a hit or a refresh).
        cache_write: Prompt tokens written to the cache with the default 5-minute TTL
            (1.25x `input` on the current models).
        web_search: One server-side web search.
        cache_write_1h: Prompt tokens written with the 1-hour TTL; None means 2x `input`,
            the multiplier of every current model.
    """

    input: float
    output: float
    cache_read: float
    cache_write: float
    web_search: float = WEB_SEARCH_PRICE_USD
    cache_write_1h: float | None = None

    def __post_init__(self) -> None:
        if self.cache_write_1h is None:
            object.__setattr__(self, "cache_write_1h", 2.0 * self.input)

    def cache_write_price(self, ttl: CacheTTL) -> float:
        """Return the price of a million tokens written to the cache with `ttl`.

        Args:
            ttl: "5m" or "1h".

        Returns:
            USD per million tokens.
        """
        if ttl == "1h":
            assert self.cache_write_1h is not None  # set by __post_init__
            return self.cache_write_1h
        return self.cache_write


# Cache writes are 1.25x input (5m) and 2x input (1h) on every model; cache reads as the model
# pages list them (Opus and Sonnet 5.5 $0.20, Haiku 5.5 $0.01, Fable 5.1 $0.25). Haiku 5.5
# prompts over 100K tokens are billed at 5x (not modelled: no stage sends such a prompt).
PRICES: dict[str, ModelPrice] = {
    "claude-opus-5-5": ModelPrice(4.0, 20.0, cache_read=0.20, cache_write=5.0, cache_write_1h=8.0),
    "claude-sonnet-5-5": ModelPrice(
        2.0, 10.0, cache_read=0.20, cache_write=2.5, cache_write_1h=4.0
    ),
    "claude-haiku-5-5": ModelPrice(
        0.10, 0.50, cache_read=0.01, cache_write=0.125, cache_write_1h=0.20
    ),
    "claude-fable-5-1": ModelPrice(
        10.0, 50.0, cache_read=0.25, cache_write=12.5, cache_write_1h=20.0
    ),
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

    Cache writes are priced by TTL: `usage.cache_write_1h_tokens` at the 1-hour price, the
    rest of `usage.cache_write_tokens` at the 5-minute price.

    Args:
        model: The model id that served the call.
        usage: Its token and search counts.

    Returns:
        The cost in USD (0.0 for a model with no known price).
    """
    price = price_for(model)
    if price is None:
        return 0.0
    write_1h = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
    write_5m = usage.cache_write_tokens - write_1h
    tokens = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_tokens * price.cache_read
        + write_5m * price.cache_write_price("5m")
        + write_1h * price.cache_write_price("1h")
    )
    return round(tokens / 1_000_000 + usage.web_searches * price.web_search, 8)


def check_prompt_blocks(system: str | PromptBlock, context: Sequence[PromptBlock]) -> None:
    """Refuse a request the API would refuse for its cache breakpoints, before it is sent.

    Args:
        system: The system prompt (a `PromptBlock` may be a breakpoint).
        context: The blocks sent before the per-call prompt.

    Raises:
        LLMError: VALIDATION_ERROR (not retryable) when there are more than
            `MAX_CACHE_BREAKPOINTS` breakpoints, or a 1-hour entry after a 5-minute one
            (the API requires longer TTLs first).
    """
    blocks = [system, *context] if isinstance(system, PromptBlock) else list(context)
    ttls = [b.cache for b in blocks if b.cache is not None]
    if len(ttls) > MAX_CACHE_BREAKPOINTS:
        raise LLMError(
            f"{len(ttls)} cache breakpoints in one request; the API allows {MAX_CACHE_BREAKPOINTS}",
            error_type=ErrorType.VALIDATION_ERROR,
            retryable=False,
        )
    for before, after in itertools.pairwise(ttls):
        if before == "5m" and after == "1h":
            raise LLMError(
                f"cache TTLs {ttls}: a 1h breakpoint cannot follow a 5m one",
                error_type=ErrorType.VALIDATION_ERROR,
                retryable=False,
            )


@runtime_checkable
class LLM(Protocol):
    """What a pipeline stage needs from a language model."""

    async def complete(
        self,
        *,
        tier: Tier,
        system: str | PromptBlock,
        prompt: str,
        context: Sequence[PromptBlock] = (),
        max_tokens: int = 16000,
        effort: Effort | None = None,
        web_search: bool = False,
        seed_key: str = "",
    ) -> LLMResult:
        """Generate free text (optionally with web search).

        Args:
            tier: Which stage is calling; selects the model and default effort.
            system: The system prompt; a `PromptBlock` with `cache` set is a cache breakpoint.
            prompt: The per-call part of the user message, sent last.
            context: Blocks of the user message sent before `prompt`, stable ones first
                (at most `MAX_CACHE_BREAKPOINTS` breakpoints with `system`).
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
        system: str | PromptBlock,
        prompt: str,
        schema: type[T],
        context: Sequence[PromptBlock] = (),
        max_tokens: int = 8000,
        effort: Effort | None = None,
        seed_key: str = "",
    ) -> tuple[T, LLMResult]:
        """Generate an instance of `schema` via structured output.

        Args:
            tier: Which stage is calling; selects the model and default effort.
            system: The system prompt; a `PromptBlock` with `cache` set is a cache breakpoint.
            prompt: The per-call part of the user message, sent last.
            schema: The pydantic model the reply must validate against.
            context: Blocks of the user message sent before `prompt`, stable ones first.
            max_tokens: Output budget (thinking included).
            effort: Overrides the tier's default effort.
            seed_key: Extra variation key; only the offline model uses it.

        Returns:
            The validated instance and the call's result (its `text` is the raw JSON).

        Raises:
            LLMError: On any failure, including a reply that does not validate.
        """
        ...
