"""What a request costs and what its reply says: token estimates, the prompt cache, seeded
draws (latency, output tokens) and the generated reply.

Everything is deterministic: the same request body (and seed) always gets the same estimate,
latency, output and text.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from typing import Any

from ._config import ProviderConfig
from ._schema import fake_value, sentence

__all__ = [
    "MAX_BREAKPOINTS",
    "CachePlan",
    "PromptCache",
    "Reply",
    "Segment",
    "draw_latency",
    "estimate_input_tokens",
    "make_reply",
    "message_body",
    "request_rng",
    "segments",
]

MAX_BREAKPOINTS = 4
"""The API refuses a request with more `cache_control` blocks than this."""


@dataclass(frozen=True)
class Segment:
    """One piece of a prompt, in the order the API caches them (tools, system, messages).

    Attributes:
        chars: Characters counted for the token estimate.
        key: Canonical text of the piece (without its `cache_control`), for prefix hashing.
        ttl: "5m" or "1h" when a `cache_control` breakpoint closes this piece, else None.
    """

    chars: int
    key: str
    ttl: str | None = None


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _ttl(block: Any) -> str | None:
    if isinstance(block, dict) and isinstance(block.get("cache_control"), dict):
        return "1h" if block["cache_control"].get("ttl") == "1h" else "5m"
    return None


def _block_segment(block: Any, role: str) -> Segment:
    if isinstance(block, str):
        return Segment(len(block), f"{role}:{block}")
    if not isinstance(block, dict):
        text = _canon(block)
        return Segment(len(text), f"{role}:{text}")
    bare = {k: v for k, v in block.items() if k != "cache_control"}
    if bare.get("type") == "text" and isinstance(bare.get("text"), str):
        chars = len(bare["text"])
    else:
        chars = len(_canon(bare))
    return Segment(chars, f"{role}:{_canon(bare)}", _ttl(block))


def segments(body: dict[str, Any]) -> list[Segment]:
    """The request's prompt as cacheable pieces: tools, the output schema, system, messages.

    A top-level `cache_control` marks the last piece, as the API's automatic caching does.

    Args:
        body: The JSON body of a Messages request.

    Returns:
        The pieces in prefix order.
    """
    out: list[Segment] = []
    for tool in body.get("tools") or []:
        out.append(_block_segment(tool, "tool"))
    fmt = (body.get("output_config") or {}).get("format")
    if isinstance(fmt, dict):
        text = _canon(fmt)
        out.append(Segment(len(text), f"format:{text}"))
    system = body.get("system")
    if isinstance(system, str) and system:
        out.append(Segment(len(system), f"system:{system}"))
    elif isinstance(system, list):
        out += [_block_segment(b, "system") for b in system]
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        role = str(message.get("role", "user"))
        content = message.get("content")
        if isinstance(content, list):
            out += [_block_segment(b, role) for b in content]
        elif content is not None:
            out.append(_block_segment(content, role))
    if isinstance(body.get("cache_control"), dict) and out:
        last = out[-1]
        out[-1] = Segment(last.chars, last.key, _ttl(body))
    return out


def _tokens(chars: int, chars_per_token: float) -> int:
    return math.ceil(chars / chars_per_token)


def estimate_input_tokens(body: dict[str, Any], chars_per_token: float = 4.0) -> int:
    """The input tokens of a request: its characters divided by `chars_per_token`, rounded up
    (at least 1). What `count_tokens` answers, and what `usage` splits into input, cache reads
    and cache writes.

    Args:
        body: The JSON body of a Messages (or count_tokens) request.
        chars_per_token: Characters per token.

    Returns:
        The estimate.
    """
    return max(1, _tokens(sum(s.chars for s in segments(body)), chars_per_token))


@dataclass(frozen=True)
class CachePlan:
    """How a request's input splits between the cache and fresh input.

    Attributes:
        total: All input tokens (the `count_tokens` figure).
        read: Tokens of the longest cached prefix (`cache_read_input_tokens`).
        write_5m: Tokens written to the cache with the 5-minute TTL.
        write_1h: Tokens written with the 1-hour TTL.
        entries: (prefix digest, TTL in scaled minutes) of every breakpoint, stored on commit.
    """

    total: int
    read: int
    write_5m: int
    write_1h: int
    entries: tuple[tuple[str, float], ...] = field(default=())

    @property
    def fresh(self) -> int:
        """Input tokens neither read from nor written to the cache (`input_tokens`)."""
        return self.total - self.read - self.write_5m - self.write_1h

    @property
    def charged(self) -> int:
        """What the ITPM bucket is charged: fresh input plus cache writes (reads are free)."""
        return self.total - self.read


class PromptCache:
    """Prompt-cache entries of every API key and model: prefix digest -> expiry time."""

    def __init__(self) -> None:
        self._expires: dict[str, float] = {}

    def plan(
        self, scope: str, pieces: list[Segment], now: float, config: ProviderConfig
    ) -> CachePlan:
        """Split a request's input; nothing is stored until `commit`.

        Args:
            scope: The API key and model (the cache is not shared across either).
            pieces: The request's `segments`.
            now: The clock reading.
            config: Characters per token and the length of a minute.

        Returns:
            The plan.
        """
        cpt = config.chars_per_token
        total = max(1, _tokens(sum(p.chars for p in pieces), cpt))
        digest = hashlib.sha256(scope.encode())
        chars = 0
        marks: list[tuple[int, str, str]] = []  # (prefix tokens, digest, ttl)
        for piece in pieces:
            digest.update(piece.key.encode())
            digest.update(b"\x00")
            chars += piece.chars
            if piece.ttl is not None:
                marks.append((_tokens(chars, cpt), digest.copy().hexdigest(), piece.ttl))
        read = 0
        for tokens, key, _ttl_name in marks:
            if self._expires.get(key, -math.inf) > now:
                read = max(read, tokens)
        write = {"5m": 0, "1h": 0}
        done = read
        for tokens, _key, ttl_name in marks:
            if tokens > done:
                write[ttl_name] += tokens - done
                done = tokens
        minutes = {"5m": config.cache_minutes, "1h": 60.0}
        entries = tuple((key, minutes[ttl_name]) for _t, key, ttl_name in marks)
        return CachePlan(total, read, write["5m"], write["1h"], entries)

    def commit(self, plan: CachePlan, now: float, minute_seconds: float) -> None:
        """Store (or refresh) every breakpoint of an admitted request."""
        for key, minutes in plan.entries:
            self._expires[key] = max(self._expires.get(key, 0.0), now + minutes * minute_seconds)


def request_rng(body: dict[str, Any], seed: int, purpose: str) -> random.Random:
    """A random generator seeded by the request's content, the seed and what it is for.

    Args:
        body: The JSON body.
        seed: The simulator's seed.
        purpose: Keeps draws for different purposes independent.

    Returns:
        The generator.
    """
    digest = hashlib.sha256(f"{seed}\x00{purpose}\x00{_canon(body)}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def draw_latency(rng: random.Random, config: ProviderConfig) -> float:
    """Seconds from admission to the reply: lognormal around the median, within the bounds.

    Args:
        rng: The request's generator.
        config: The latency settings.

    Returns:
        The latency (0 when `latency_median` is 0).
    """
    if config.latency_median <= 0:
        return 0.0
    value = rng.lognormvariate(math.log(config.latency_median), config.latency_sigma)
    return min(max(value, config.latency_min), config.latency_max)


@dataclass(frozen=True)
class Reply:
    """The content and usage of one successful reply (before it is sent)."""

    content: list[dict[str, Any]]
    output_tokens: int
    thinking_tokens: int
    web_searches: int
    stop_reason: str = "end_turn"


def _thinks(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        return True
    return "opus" in str(body.get("model", ""))


def make_reply(body: dict[str, Any], config: ProviderConfig) -> Reply:
    """Generate the reply to a request: a JSON object valid against its schema for structured
    output, else prose; output tokens drawn (lognormal around `output_median`, within
    `max_tokens`); a thinking block first for thinking models.

    Args:
        body: The JSON body.
        config: The simulator's settings.

    Returns:
        The reply.
    """
    rng = request_rng(body, config.seed, "reply")
    cpt = config.chars_per_token
    max_tokens = int(body["max_tokens"])
    drawn = round(rng.lognormvariate(math.log(config.output_median), config.output_sigma))
    drawn = min(max(drawn, 1), max_tokens)
    thinks = _thinks(body)
    fmt = (body.get("output_config") or {}).get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        value = fake_value(fmt.get("schema") or {}, rng, false_share=config.false_share)
        text = json.dumps(value)
        text_tokens = _tokens(len(text), cpt)
        output = max(drawn, text_tokens) if thinks else text_tokens
    else:
        output = drawn
        thinking_part = round(output * config.thinking_share) if thinks else 0
        text_tokens = max(1, output - thinking_part)
        text = sentence(rng, int(text_tokens * cpt) - 1)[: int(text_tokens * cpt)]
    thinking = max(0, output - text_tokens) if thinks else 0
    content: list[dict[str, Any]] = []
    if thinks:
        content.append(
            {"type": "thinking", "thinking": "Weighing the evidence.", "signature": "sim-sig"}
        )
    content.append({"type": "text", "text": text, "citations": None})
    searches = 0
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and str(tool.get("type", "")).startswith("web_search"):
            searches = rng.randint(1, max(1, min(3, int(tool.get("max_uses") or 3))))
    return Reply(content, output, thinking, searches)


def message_body(
    body: dict[str, Any], reply: Reply, plan: CachePlan, request_id: str
) -> dict[str, Any]:
    """The Messages API's `message` object of a reply, with its `usage`.

    Args:
        body: The request's JSON body.
        reply: The generated reply.
        plan: How the input split between the cache and fresh input.
        request_id: The answer's `request-id` (`req_...`); the message id is derived from it.

    Returns:
        The JSON-ready message.
    """
    usage: dict[str, Any] = {
        "input_tokens": plan.fresh,
        "output_tokens": reply.output_tokens,
        "cache_creation_input_tokens": plan.write_5m + plan.write_1h,
        "cache_read_input_tokens": plan.read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": plan.write_5m,
            "ephemeral_1h_input_tokens": plan.write_1h,
        },
        "service_tier": "standard",
    }
    if reply.web_searches:
        usage["server_tool_use"] = {
            "web_search_requests": reply.web_searches,
            "web_fetch_requests": 0,
        }
    if reply.thinking_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": reply.thinking_tokens}
    return {
        "id": "msg_" + request_id.removeprefix("req_"),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": reply.content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }
