"""`AnthropicLLM`: the `LLM` protocol over the real Anthropic Messages API (SDK 2.x).

One shared `AsyncAnthropic` client with the SDK's own retries turned off (`max_retries=0`), so
the job queue alone decides when to retry; every failure is re-raised as an `LLMError`
(see `pipeline.ai.errors`). Long calls stream (`messages.stream` + `get_final_message`), which
the SDK requires for large `max_tokens`; structured output uses `messages.parse`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

import anthropic
from pydantic import BaseModel

from jobqueue import ErrorType
from pipeline.ai.base import (
    DEFAULT_EFFORTS,
    DEFAULT_MODELS,
    CacheTTL,
    Effort,
    LLMError,
    LLMResult,
    PromptBlock,
    Tier,
    Usage,
    check_prompt_blocks,
    cost_usd,
)
from pipeline.ai.errors import classify_sdk_error
from pipeline.ai.ratelimits import RateLimitReading, read_rate_limits

__all__ = [
    "MAX_PAUSE_CONTINUATIONS",
    "WEB_SEARCH_TOOL",
    "AnthropicLLM",
    "system_param",
    "usage_from_sdk",
    "user_content_param",
]

log = logging.getLogger("pipeline.ai")

T = TypeVar("T", bound=BaseModel)

WEB_SEARCH_TOOL: dict[str, Any] = {
    "type": "web_search_20250305",
    "name": "web_search",
    "max_uses": 5,
}
"""The server-side web search tool sent when `complete(web_search=True)`."""

MAX_PAUSE_CONTINUATIONS = 3
"""How many times a `pause_turn` reply is sent back to let the model continue."""


def usage_from_sdk(usage: Any, *, write_ttl: CacheTTL = "5m") -> Usage:
    """Convert the SDK's `message.usage` into our `Usage`.

    Args:
        usage: An `anthropic.types.Usage` (or anything with the same attributes).
        write_ttl: Whose price cache writes get when the reply has no per-TTL split
            (`usage.cache_creation`): the API sends it, a stand-in server may not.

    Returns:
        The token, cache, search and thinking counts, missing ones as 0.
    """
    server_tools = getattr(usage, "server_tool_use", None)
    details = getattr(usage, "output_tokens_details", None)
    written = getattr(usage, "cache_creation_input_tokens", None) or 0
    split = getattr(usage, "cache_creation", None)
    if split is not None:
        written_1h = getattr(split, "ephemeral_1h_input_tokens", None) or 0
        # the split is authoritative; the total is at least its sum
        written = max(written, written_1h + (getattr(split, "ephemeral_5m_input_tokens", 0) or 0))
    else:
        written_1h = written if write_ttl == "1h" else 0
    return Usage(
        input_tokens=getattr(usage, "input_tokens", None) or 0,
        output_tokens=getattr(usage, "output_tokens", None) or 0,
        cache_read_tokens=getattr(usage, "cache_read_input_tokens", None) or 0,
        cache_write_tokens=written,
        cache_write_1h_tokens=written_1h,
        web_searches=getattr(server_tools, "web_search_requests", None) or 0,
        thinking_tokens=getattr(details, "thinking_tokens", None) or 0,
    )


def _block_param(block: PromptBlock) -> dict[str, Any]:
    param: dict[str, Any] = {"type": "text", "text": block.text}
    if block.cache is not None:
        param["cache_control"] = {"type": "ephemeral", "ttl": block.cache}
    return param


def system_param(system: str | PromptBlock) -> str | list[dict[str, Any]]:
    """The request's `system`: a plain string, or one text block (with `cache_control`).

    Args:
        system: The system prompt.

    Returns:
        The value sent as `system`.
    """
    if isinstance(system, PromptBlock):
        return [_block_param(system)] if system.cache is not None else system.text
    return system


def user_content_param(context: Sequence[PromptBlock], prompt: str) -> str | list[dict[str, Any]]:
    """The user message's `content`: the context blocks (stable first), then the prompt.

    Args:
        context: Blocks sent before the per-call prompt.
        prompt: The per-call text, last and never a breakpoint.

    Returns:
        The prompt string alone when there is no context, else a list of text blocks.
    """
    if not context:
        return prompt
    return [*(_block_param(b) for b in context), {"type": "text", "text": prompt}]


def _write_ttl(system: str | PromptBlock, context: Sequence[PromptBlock]) -> CacheTTL:
    # Without the API's per-TTL split, writes are priced at the longest TTL the request asked
    # for: the bill is never under-reported.
    blocks = [system, *context] if isinstance(system, PromptBlock) else list(context)
    return "1h" if any(b.cache == "1h" for b in blocks) else "5m"


# The headers of the responses a call received, collected by `_HeaderCapture`: the SDK runs its
# middleware inside the caller's task, so a context variable ties each response to its call
# even when many calls share the client.
_RESPONSES: ContextVar[list[Mapping[str, str]] | None] = ContextVar(
    "pipeline_anthropic_responses", default=None
)


class _HeaderCapture(anthropic.Middleware):
    """Keeps the headers of every HTTP response (errors too) for the call that asked for them:
    `messages.parse` gives no raw response, the rate-limit headers are needed from all."""

    async def handle_async(self, request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        sink = _RESPONSES.get()
        if sink is not None:
            sink.append(response.headers)
        return response


@contextlib.contextmanager
def _capture() -> Iterator[list[Mapping[str, str]]]:
    sink: list[Mapping[str, str]] = []
    token = _RESPONSES.set(sink)
    try:
        yield sink
    finally:
        _RESPONSES.reset(token)


def _latest_limits(sink: list[Mapping[str, str]]) -> dict[str, RateLimitReading]:
    return read_rate_limits(sink[-1]) if sink else {}


def _settled_output(
    limits: dict[str, RateLimitReading], max_tokens: int, output_tokens: int
) -> dict[str, RateLimitReading]:
    """A stream's headers come before its answer, while the provider still holds `max_tokens`
    of output against the call; it gives back what went unused when the call ends, so the
    output bucket's `remaining` after the call is that much higher."""
    reading = limits.get("output_tokens")
    if reading is None or reading.remaining is None:
        return limits
    remaining = reading.remaining + max(0, max_tokens - output_tokens)
    if reading.limit is not None:
        remaining = min(remaining, reading.limit)
    return {**limits, "output_tokens": reading.model_copy(update={"remaining": remaining})}


def _with_limits(err: LLMError, sink: list[Mapping[str, str]]) -> LLMError:
    if not err.rate_limits:
        err.rate_limits = _latest_limits(sink)
    return err


def _text_of(content: Any) -> str:
    """Join every `text` block; thinking and tool blocks may come first, so never `content[0]`."""
    return "".join(block.text for block in content if getattr(block, "type", None) == "text")


class AnthropicLLM:
    """The real model, via one shared `anthropic.AsyncAnthropic` client.

    Args:
        api_key: The Anthropic API key (never logged or put in error messages).
        base_url: API base URL; defaults to `$ANTHROPIC_BASE_URL`, then the SDK default.
        models: Model id per tier; missing tiers fall back to `DEFAULT_MODELS`.
        efforts: Default effort per tier; missing tiers fall back to `DEFAULT_EFFORTS`.
        timeout: Per-request read timeout in seconds (connect timeout is 10 s).
        max_concurrency: Most calls in flight at once from this instance.
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        models: Mapping[Tier, str] | None = None,
        efforts: Mapping[Tier, Effort | None] | None = None,
        timeout: float = 900.0,
        max_concurrency: int = 8,
    ) -> None:
        if not api_key:
            raise ValueError("AnthropicLLM needs an API key")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        self.models: dict[Tier, str] = {**DEFAULT_MODELS, **dict(models or {})}
        self.efforts: dict[Tier, Effort | None] = {**DEFAULT_EFFORTS, **dict(efforts or {})}
        self.base_url = base_url or os.environ.get("ANTHROPIC_BASE_URL") or None
        self.client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=anthropic.Timeout(timeout, connect=10.0),
            middleware=[_HeaderCapture()],
        )
        self._semaphore = asyncio.Semaphore(max_concurrency)

    def __repr__(self) -> str:
        return f"AnthropicLLM(base_url={str(self.client.base_url)!r}, models={self.models!r})"

    def model_for(self, tier: Tier) -> str:
        """Return the model id configured for `tier`.

        Args:
            tier: A pipeline stage.

        Returns:
            The model id.
        """
        try:
            return self.models[tier]
        except KeyError:
            raise ValueError(f"unknown tier {tier!r}") from None

    def _output_config(self, tier: Tier, effort: Effort | None) -> dict[str, Any] | None:
        chosen = effort if effort is not None else self.efforts.get(tier)
        return {"effort": chosen} if chosen else None

    async def aclose(self) -> None:
        """Close the underlying HTTP client."""
        await self.client.close()

    async def __aenter__(self) -> AnthropicLLM:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

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
        """Stream a free-text reply, continuing `pause_turn` replies up to 3 times.

        Args:
            tier: Which stage is calling; selects the model and default effort.
            system: The system prompt; a cached `PromptBlock` is sent with `cache_control`.
            prompt: The per-call part of the user message, sent last.
            context: Text blocks sent before `prompt` (cached ones with `cache_control`).
            max_tokens: Output budget per request (thinking included).
            effort: Overrides the tier's default effort.
            web_search: Offer the server-side web search tool.
            seed_key: Ignored (only the offline model uses it).

        Returns:
            The joined `text` blocks of every turn, summed usage and cost.

        Raises:
            LLMError: On any SDK failure.
        """
        del seed_key
        check_prompt_blocks(system, context)
        model = self.model_for(tier)
        kwargs: dict[str, Any] = {
            "model": model,
            "max_tokens": max_tokens,
            "system": system_param(system),
        }
        output_config = self._output_config(tier, effort)
        if output_config:
            kwargs["output_config"] = output_config
        if web_search:
            kwargs["tools"] = [dict(WEB_SEARCH_TOOL)]
        user = {"role": "user", "content": user_content_param(context, prompt)}
        write_ttl = _write_ttl(system, context)
        assistant_blocks: list[Any] = []
        texts: list[str] = []
        usage = Usage()
        stop_reason: str | None = None
        request_id: str | None = None
        served_by = model
        last_output = 0
        async with self._semaphore:
            with _capture() as sink:
                try:
                    for _turn in range(1 + MAX_PAUSE_CONTINUATIONS):
                        messages: list[Any] = [user]
                        if assistant_blocks:
                            messages.append(
                                {"role": "assistant", "content": list(assistant_blocks)}
                            )
                        async with self.client.messages.stream(
                            messages=messages, **kwargs
                        ) as stream:
                            message = await stream.get_final_message()
                            request_id = stream.request_id or request_id
                        texts.append(_text_of(message.content))
                        turn = usage_from_sdk(message.usage, write_ttl=write_ttl)
                        usage, last_output = usage + turn, turn.output_tokens
                        stop_reason = message.stop_reason
                        served_by = message.model or model
                        if stop_reason != "pause_turn":
                            break
                        assistant_blocks.extend(message.content)
                except Exception as exc:
                    raise _with_limits(classify_sdk_error(exc), sink) from exc
                limits = _settled_output(_latest_limits(sink), max_tokens, last_output)
        if stop_reason == "pause_turn":
            log.warning("model %s still paused after %d continuations", served_by, len(texts) - 1)
        return LLMResult(
            text="".join(texts),
            model=served_by,
            usage=usage,
            cost_usd=cost_usd(served_by, usage),
            stop_reason=stop_reason,
            request_id=request_id,
            rate_limits=limits,
        )

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
        """Ask for JSON matching `schema` via `messages.parse(output_format=schema)`.

        Args:
            tier: Which stage is calling; selects the model and default effort.
            system: The system prompt; a cached `PromptBlock` is sent with `cache_control`.
            prompt: The per-call part of the user message, sent last.
            schema: The pydantic model the reply must validate against.
            context: Text blocks sent before `prompt` (cached ones with `cache_control`).
            max_tokens: Output budget (thinking included).
            effort: Overrides the tier's default effort.
            seed_key: Ignored (only the offline model uses it).

        Returns:
            The parsed instance and the result (its `text` is the raw JSON).

        Raises:
            LLMError: On any SDK failure; bad JSON is `UNKNOWN` and retryable, a refusal is
                `VALIDATION_ERROR` and not retryable.
        """
        del seed_key
        check_prompt_blocks(system, context)
        model = self.model_for(tier)
        kwargs: dict[str, Any] = {
            "model": model,
            "max_tokens": max_tokens,
            "system": system_param(system),
            "messages": [{"role": "user", "content": user_content_param(context, prompt)}],
            "output_format": schema,
        }
        output_config = self._output_config(tier, effort)
        if output_config:
            kwargs["output_config"] = output_config
        async with self._semaphore:
            with _capture() as sink:
                try:
                    message = await self.client.messages.parse(**kwargs)
                except Exception as exc:
                    raise _with_limits(classify_sdk_error(exc), sink) from exc
        # a plain response's headers come with the whole answer: the provider has settled it
        limits = _latest_limits(sink)
        served_by = message.model or model
        usage = usage_from_sdk(message.usage, write_ttl=_write_ttl(system, context))
        request_id = getattr(message, "_request_id", None)
        parsed = message.parsed_output
        if not isinstance(parsed, schema):
            refused = message.stop_reason == "refusal"
            raise LLMError(
                f"{served_by} returned no {schema.__name__} (stop_reason={message.stop_reason})",
                error_type=ErrorType.VALIDATION_ERROR if refused else ErrorType.UNKNOWN,
                retryable=not refused,
                request_id=request_id,
                rate_limits=limits,
            )
        result = LLMResult(
            text=_text_of(message.content),
            model=served_by,
            usage=usage,
            cost_usd=cost_usd(served_by, usage),
            stop_reason=message.stop_reason,
            request_id=request_id,
            rate_limits=limits,
        )
        return parsed, result
