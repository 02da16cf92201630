"""A local fake of the Anthropic Messages API (`POST /v1/messages`) for testing `AnthropicLLM`.

It replies like the real API: a JSON `message`, or the SSE event sequence when the body has
`"stream": true`, and structured output when the body has `output_config.format`. A scenario
picks the behaviour: the request header `x-fake-scenario`, else the next one queued with
`FakeAnthropic.enqueue(...)`, else "ok". Every request is recorded (headers and JSON body).

Scenarios:
    ok, pause (stop_reason pause_turn), bad-json (structured reply that fails validation),
    429 (retry-after: 7), 429-ms (retry-after-ms: 1500), 429-date (HTTP date), 429-bare,
    spend-enforced, spend-contract, ramp, 529, 529-no-retry (x-should-retry: false),
    500, 503, 401, 402, 403, 400, 404, 413, 422, 408, 409,
    sse-overloaded (HTTP 200 then `event: error`), drop (socket closed, no reply),
    slow (waits `slow_seconds`, by default until the server closes, before replying).
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API_KEY = "sk-ant-test-0123456789abcdef"
#: Seconds a test waits before it fails: a bound on a hang, never a speed requirement.
HANG = 120.0

# scenario -> (status, error type, message, error_code, extra headers)
ERRORS: dict[str, tuple[int, str, str, str | None, dict[str, str]]] = {
    "429": (429, "rate_limit_error", "Rate limited", None, {"retry-after": "7"}),
    "429-ms": (429, "rate_limit_error", "Rate limited", None, {"retry-after-ms": "1500"}),
    "429-bare": (429, "rate_limit_error", "Rate limited", None, {}),
    "spend-enforced": (
        429,
        "rate_limit_error",
        "You have reached your monthly spend limit",
        "enforced_spend_limit_reached",
        {"retry-after": "3600"},
    ),
    "spend-contract": (
        429,
        "rate_limit_error",
        "Contract spend limit reached",
        "contract_spend_limit_reached",
        {},
    ),
    "ramp": (429, "rate_limit_error", "Ramp limit", "ramp_limit_exceeded", {"retry-after": "2"}),
    "529": (529, "overloaded_error", "Overloaded", None, {"retry-after": "3"}),
    "529-no-retry": (529, "overloaded_error", "Overloaded", None, {"x-should-retry": "false"}),
    "500": (500, "api_error", "Internal server error", None, {}),
    "503": (503, "api_error", "Service unavailable", None, {}),
    "401": (401, "authentication_error", f"invalid x-api-key {API_KEY}", None, {}),
    "402": (402, "billing_error", "Payment required", None, {}),
    "403": (403, "permission_error", "Not allowed", None, {}),
    "400": (400, "invalid_request_error", "messages: field required", None, {}),
    "404": (404, "not_found_error", "model: not found", None, {}),
    "413": (413, "request_too_large", "Request too large", None, {}),
    "422": (422, "invalid_request_error", "Unprocessable", None, {}),
    "408": (408, "timeout_error", "Request timeout", None, {}),
    "409": (409, "conflict_error", "Conflict", None, {}),
}


@dataclass
class RecordedRequest:
    """One request the fake received."""

    scenario: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeAnthropic:
    """The fake server; `await start()`, point `base_url` at it, `await close()` afterwards.

    Attributes:
        text_blocks: Text blocks of a normal reply (a thinking block always comes first).
        structured_json: Reply text for structured-output requests.
        structured_reply: When set, computes that reply text from the request body instead
            (e.g. by the properties of `output_config.format.schema`).
        usage: The `usage` object of every reply.
        slow_seconds: How long the "slow" scenario waits (it is woken by `close()`).
        pair_delayed: Successful replies wait for each other two by two (`asyncio.Barrier(2)`):
            a reply comes only once two requests are in flight (for concurrency tests).
        max_in_flight: The most requests seen waiting at once (slow or paired).
    """

    text_blocks: list[str] = field(default_factory=lambda: ["Hello, ", "world."])
    structured_json: str = "{}"
    structured_reply: Callable[[dict[str, Any]], str] | None = None
    usage: dict[str, Any] = field(
        default_factory=lambda: {
            "input_tokens": 1000,
            "output_tokens": 500,
            "cache_read_input_tokens": 200,
            "cache_creation_input_tokens": 100,
            "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0},
            "output_tokens_details": {"thinking_tokens": 120},
        }
    )
    slow_seconds: float = 3600.0
    ratelimit_headers: dict[str, str] = field(default_factory=dict)
    """Sent on every answer (errors too), e.g. `anthropic-ratelimit-requests-remaining`."""
    ratelimit_for: Callable[[dict[str, Any]], dict[str, str]] | None = None
    """When set, the rate-limit headers of each answer, from its request body."""
    pair_delayed: bool = False
    in_flight: int = 0
    max_in_flight: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)
    _queue: deque[str] = field(default_factory=deque)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    _closing: asyncio.Event = field(default_factory=asyncio.Event)
    _pairs: asyncio.Barrier = field(default_factory=lambda: asyncio.Barrier(2))
    base_url: str = ""
    _limits: dict[str, dict[str, str]] = field(default_factory=dict)  # per request id

    def enqueue(self, *scenarios: str) -> None:
        """Use these scenarios, in order, for requests without an `x-fake-scenario` header."""
        self._queue.extend(scenarios)

    async def start(self) -> FakeAnthropic:
        """Listen on 127.0.0.1 on a free port and set `base_url`."""
        app = web.Application()
        app.router.add_post("/v1/messages", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        """Wake any slow handler and stop the server."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- request handling ------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        scenario = request.headers.get("x-fake-scenario") or (
            self._queue.popleft() if self._queue else "ok"
        )
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(RecordedRequest(scenario, headers, body))
        request_id = f"req_fake_{next(self._ids)}"
        self._limits[request_id] = (
            self.ratelimit_for(body) if self.ratelimit_for else dict(self.ratelimit_headers)
        )
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if API_KEY not in (bearer, request.headers.get("x-api-key")):
            return self._error(
                401, "authentication_error", "invalid x-api-key", None, {}, request_id
            )
        if "temperature" in body or "top_p" in body:
            return self._error(
                400, "invalid_request_error", "temperature unsupported", None, {}, request_id
            )
        if scenario in ERRORS:
            return self._error(*ERRORS[scenario], request_id)
        if scenario == "429-date":
            when = email.utils.formatdate(time.time() + 30, usegmt=True)
            return self._error(
                429, "rate_limit_error", "Rate limited", None, {"retry-after": when}, request_id
            )
        if scenario == "drop":
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if scenario == "slow" or self.pair_delayed:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if scenario == "slow":
                    await asyncio.wait_for(self._closing.wait(), self.slow_seconds)
                else:
                    await asyncio.wait_for(self._pairs.wait(), HANG)
            except TimeoutError:
                pass
            finally:
                self.in_flight -= 1
            if request.transport is None or request.transport.is_closing():
                return web.Response()  # the client gave up; nothing to send
        message = self._message(body, scenario, request_id)
        if body.get("stream"):
            return await self._stream(request, message, request_id, scenario == "sse-overloaded")
        return web.json_response(
            message, headers={"request-id": request_id, **self._limits.get(request_id, {})}
        )

    def _message(self, body: dict[str, Any], scenario: str, request_id: str) -> dict[str, Any]:
        fmt = (body.get("output_config") or {}).get("format")
        if fmt and fmt.get("type") == "json_schema":
            reply = self.structured_reply(body) if self.structured_reply else self.structured_json
            texts = ['{"not": "valid"}' if scenario == "bad-json" else reply]
        else:
            texts = list(self.text_blocks)
        turn = sum(  # earlier (paused) turns, sent back as one assistant message
            1
            for m in body["messages"]
            if m["role"] == "assistant"
            for block in m["content"]
            if block["type"] == "text"
        )
        if scenario == "pause":
            texts = [f"part {turn + 1}; "]
        elif turn:
            texts = [f"final after {turn} pause(s)."]
        content = [{"type": "thinking", "thinking": "Let me think.", "signature": "sig"}]
        content += [{"type": "text", "text": t, "citations": None} for t in texts]
        return {
            "id": f"msg_{request_id}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": "pause_turn" if scenario == "pause" else "end_turn",
            "stop_sequence": None,
            "usage": dict(self.usage),
        }

    def _error(
        self,
        status: int,
        err_type: str,
        message: str,
        error_code: str | None,
        headers: dict[str, str],
        request_id: str,
    ) -> web.Response:
        error: dict[str, Any] = {"type": err_type, "message": message}
        if error_code:
            error["details"] = {"error_code": error_code}
        payload = {"type": "error", "error": error, "request_id": request_id}
        return web.json_response(
            payload,
            status=status,
            headers={"request-id": request_id, **self._limits.get(request_id, {}), **headers},
        )

    async def _stream(
        self, request: web.Request, message: dict[str, Any], request_id: str, fail: bool
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "content-type": "text/event-stream",
                "request-id": request_id,
                **self._limits.get(request_id, {}),
            }
        )
        await response.prepare(request)

        async def send(event: str, data: dict[str, Any]) -> None:
            await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())

        usage = message["usage"]
        start = {**message, "content": [], "stop_reason": None}
        start["usage"] = {**usage, "output_tokens": 1}
        await send("message_start", {"type": "message_start", "message": start})
        if fail:
            error = {"type": "overloaded_error", "message": "Overloaded"}
            await send("error", {"type": "error", "error": error})
            await response.write_eof()
            return response
        for index, block in enumerate(message["content"]):
            if block["type"] == "thinking":
                empty = {"type": "thinking", "thinking": "", "signature": ""}
                deltas = [
                    {"type": "thinking_delta", "thinking": block["thinking"]},
                    {"type": "signature_delta", "signature": block["signature"]},
                ]
            else:
                empty = {"type": "text", "text": ""}
                half = len(block["text"]) // 2
                deltas = [
                    {"type": "text_delta", "text": block["text"][:half]},
                    {"type": "text_delta", "text": block["text"][half:]},
                ]
            await send(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": empty},
            )
            for delta in deltas:
                await send(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            await send("content_block_stop", {"type": "content_block_stop", "index": index})
        await send(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": usage,
            },
        )
        await send("message_stop", {"type": "message_stop"})
        await response.write_eof()
        return response
