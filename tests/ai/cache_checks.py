"""Checks of the prompt-cache layout of recorded Messages API requests, and the fake server's
answers to the pipeline's structured-output schemas (shared by the AI and pipeline tests)."""

from __future__ import annotations

from typing import Any

from pipeline.ai.base import MAX_CACHE_BREAKPOINTS

__all__ = ["REPLIES", "TTL_ORDER", "breakpoints", "check_cache_layout", "reply_by_schema"]

TTL_ORDER = {"1h": 0, "5m": 1}

REPLIES = {
    "sub_sectors": '{"sub_sectors": ['
    + ",".join(
        f'{{"name": "Sub {i}", "thesis": "A thesis of ten+ chars", "why_now": "Because now."}}'
        for i in range(3)
    )
    + "]}",
    "stocks": '{"stocks": ['
    + ",".join(
        f'{{"ticker": "T{i}", "name": "Co {i}", "rank": {i}, "rationale": "A good reason."}}'
        for i in range(1, 11)
    )
    + "]}",
    "approved": '{"approved": true, "score": 8, "reasons": ["Specific."]}',
    "thesis": '{"thesis": "Strong data-centre demand.", "catalysts": ["launch"], '
    '"risks": ["export rules"], "valuation": "Premium.", "verdict": "buy", "confidence": 0.7}',
}


def reply_by_schema(body: dict[str, Any]) -> str:
    """The fake's structured answer for whichever pipeline schema the request asks for."""
    properties = body["output_config"]["format"]["schema"]["properties"]
    return next(text for key, text in REPLIES.items() if key in properties)


def breakpoints(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, ttl) of every `cache_control` in a request body, in prefix order."""
    found: list[tuple[str, str]] = []
    system = body["system"]
    for block in system if isinstance(system, list) else []:
        if "cache_control" in block:
            found.append(("system", block["cache_control"]["ttl"]))
    for message in body["messages"]:
        content = message["content"]
        for block in content if isinstance(content, list) else []:
            if "cache_control" in block:
                found.append((message["role"], block["cache_control"]["ttl"]))
    return found


def check_cache_layout(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The rules every request of the pipeline keeps; returns the user message's blocks."""
    marks = breakpoints(body)
    assert 1 <= len(marks) <= MAX_CACHE_BREAKPOINTS
    ttls = [ttl for _, ttl in marks]
    assert set(ttls) <= set(TTL_ORDER)
    assert ttls == sorted(ttls, key=TTL_ORDER.__getitem__)  # 1h entries before 5m ones
    (system,) = body["system"]  # the system prompt is one cached text block
    assert system["type"] == "text" and system["cache_control"]["type"] == "ephemeral"
    content = body["messages"][0]["content"]
    blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
    assert "cache_control" not in blocks[-1]  # the per-call part comes last, uncached
    assert all("cache_control" in b for b in blocks[:-1])  # stable blocks first
    return blocks
