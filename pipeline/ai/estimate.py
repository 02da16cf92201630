"""What a model call may cost, estimated locally before it is made, and what it did cost.

Input tokens are estimated from the prompt text (`CHARS_PER_TOKEN` characters a token, rounded
up: English prose runs near 4, code and JSON lower, so 3.5 leans high); the prompt up to a
cache breakpoint is counted as written to the cache with the breakpoint's TTL (a miss, the
dearest case: a write costs more than plain input, a read less); output is `max_tokens`, the
most the call can be billed for; a call offering web search may run the tool's `max_uses`
searches. Priced with `pipeline.ai.base.price_for` / `cost_usd`, the estimate is an upper bound
for one request (a `pause_turn` continuation sends more than one; settling with the real usage
corrects the difference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.ai.anthropic_client import WEB_SEARCH_TOOL
from pipeline.ai.base import LLMResult, Usage, cost_usd, price_for
from pipeline.ai.guard import LLMCall

__all__ = [
    "CHARS_PER_TOKEN",
    "WEB_SEARCHES_PER_CALL",
    "CallEstimate",
    "actual_cost",
    "estimate_call",
    "estimate_tokens",
]

CHARS_PER_TOKEN = 3.5
"""Characters per token assumed by the local estimate."""

WEB_SEARCHES_PER_CALL = int(WEB_SEARCH_TOOL.get("max_uses", 5))
"""Searches a call offering the web search tool may make (the tool's `max_uses`)."""


def estimate_tokens(text: str) -> int:
    """Estimate the tokens of a text, rounding up.

    Args:
        text: Any text.

    Returns:
        `ceil(len(text) / CHARS_PER_TOKEN)`; 0 for an empty text.
    """
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class CallEstimate:
    """The worst case of one call.

    Attributes:
        input_tokens: Estimated from the whole prompt (system, context blocks, prompt).
        output_tokens: The call's `max_tokens`.
        web_searches: The searches it may make.
        cost_usd: Their price for the call's model (0.0 for a model without a price).
    """

    input_tokens: int
    output_tokens: int
    web_searches: int
    cost_usd: float


def estimate_call(call: LLMCall) -> CallEstimate:
    """Estimate what a call may cost at most.

    Args:
        call: The call about to be made.

    Returns:
        Its token counts and cost, priced as `call.model`.
    """
    pending = written = written_1h = 0
    for block in call.blocks:
        pending += estimate_tokens(block.text)
        if block.cache is not None:  # the prefix up to here may be written with this TTL
            written += pending
            written_1h += pending if block.cache == "1h" else 0
            pending = 0
    usage = Usage(
        input_tokens=pending + estimate_tokens(call.prompt),
        cache_write_tokens=written,
        cache_write_1h_tokens=written_1h,
        output_tokens=call.max_tokens,
        web_searches=WEB_SEARCHES_PER_CALL if call.web_search else 0,
    )
    return CallEstimate(
        input_tokens=usage.input_tokens + written,
        output_tokens=usage.output_tokens,
        web_searches=usage.web_searches,
        cost_usd=cost_usd(call.model, usage),
    )


def actual_cost(call: LLMCall, result: LLMResult) -> float:
    """What a finished call cost.

    Args:
        call: The call as it was guarded.
        result: Its result.

    Returns:
        `result.cost_usd` when the model that served it has a price; otherwise (the offline
        model) its usage priced as `call.model`, so budgets work the same offline.
    """
    if price_for(result.model) is not None:
        return result.cost_usd
    return cost_usd(call.model, result.usage)
