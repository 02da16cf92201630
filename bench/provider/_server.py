"""The simulator: a local Messages API (aiohttp) with per-key, per-model RPM/ITPM/OTPM buckets
in scaled time, a latency spread, outages, and counters per scaled window."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import hashlib
import itertools
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ._buckets import KeyModelLimits
from ._config import ProviderConfig
from ._content import (
    MAX_BREAKPOINTS,
    PromptCache,
    Reply,
    draw_latency,
    estimate_input_tokens,
    make_reply,
    message_body,
    request_rng,
    segments,
)
from ._schema import SchemaError
from ._stats import ModelStats, Stats, WindowStats

__all__ = ["ProviderSimulator", "rfc3339"]

_CHUNK = 400  # characters per SSE text delta


def rfc3339(timestamp: float) -> str:
    """A Unix time as RFC 3339 UTC with milliseconds (rounded up), e.g.
    `2026-01-15T12:00:05.250Z`: the format of the `-reset` headers."""
    ms = math.ceil(timestamp * 1000)
    when = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _api_key(request: web.Request) -> str:
    key = request.headers.get("x-api-key", "").strip()
    if not key:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            key = auth[7:].strip()
    return key


def _bad_body(body: Any, *, counting: bool) -> str | None:
    if not isinstance(body, dict):
        return "body: expected a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    if counting:
        return None
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return "max_tokens: must be an integer >= 1"
    return None


class ProviderSimulator:
    """A local Anthropic Messages API that enforces rate limits the way the API does.

    `POST /v1/messages` (JSON or SSE with `"stream": true`; structured output for
    `output_config.format`), `POST /v1/messages/count_tokens`, `GET /_sim/stats` (the counters
    as JSON) and `POST /_sim/outage` (`{"start": s, "duration": d}` in simulator seconds).

    Args:
        config: The settings (default `ProviderConfig()`).
        clock: Seconds as a float, monotonic (default `time.monotonic`); a `ManualClock` makes
            the bucket arithmetic exact in tests. Latency always sleeps in real time.
    """

    def __init__(
        self, config: ProviderConfig | None = None, *, clock: Callable[[], float] | None = None
    ) -> None:
        self.config = config or ProviderConfig()
        self._clock = clock or time.monotonic
        self._t0 = self._clock()
        self._wall0 = time.time()
        self._outage = self.config.outage
        self._limits: dict[tuple[str, str], KeyModelLimits] = {}
        self._cache = PromptCache()
        self._models: dict[str, ModelStats] = {}
        self._stats = Stats(minute_seconds=self.config.minute_seconds, elapsed=0.0)
        self._ids = itertools.count(1)
        self._gate = asyncio.Event()
        self._gate.set()
        self._start_pending = False
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.port = 0

    # -- life cycle --------------------------------------------------------------------------

    async def start(self) -> ProviderSimulator:
        """Listen (on `config.host`/`config.port`; port 0 picks a free one) and set `base_url`.
        Simulator time, and window 0, start now."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        app.router.add_get("/_sim/stats", self._stats_route)
        app.router.add_post("/_sim/outage", self._outage_route)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.base_url = f"http://{self.config.host}:{self.port}"
        self._t0 = self._clock()
        self._wall0 = time.time()
        return self

    async def close(self) -> None:
        """Let held replies go and stop the server."""
        self._gate.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ProviderSimulator:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- controls ----------------------------------------------------------------------------

    def reset(self, *, at_first_request: bool = False) -> None:
        """Start over: simulator time (window 0) starts now, every bucket is full, the prompt
        cache and the counters are empty. A configured outage keeps its times, relative to
        the new start. For a harness that starts its clients before the timed part.

        Args:
            at_first_request: Start simulator time at the next `POST /v1/messages` instead of
                now, so the clients' start-up leaves no idle windows.
        """
        self._start_pending = at_first_request
        self._t0 = self._clock()
        self._wall0 = time.time()
        self._limits.clear()
        self._cache = PromptCache()
        self._models.clear()
        self._stats = Stats(minute_seconds=self.config.minute_seconds, elapsed=0.0)

    def now(self) -> float:
        """Seconds of simulator time since `start()`."""
        return self._clock() - self._t0

    def wall_time(self, sim_seconds: float) -> float:
        """The Unix time of a simulator time (what the `-reset` headers are based on)."""
        return self._wall0 + sim_seconds

    def set_outage(self, start: float, duration: float) -> None:
        """Answer 529 from `start` for `duration` seconds of simulator time.

        Args:
            start: Simulator seconds (see `now()`).
            duration: Seconds (> 0).
        """
        ProviderConfig(outage=(start, duration))  # validates: ConfigError on a bad value
        self._outage = (start, duration)

    def clear_outage(self) -> None:
        """No outage any more."""
        self._outage = None

    def hold(self) -> None:
        """Admitted requests wait before replying until `release()` (tests of in-flight
        reservations)."""
        self._gate.clear()

    def release(self) -> None:
        """Let held replies go."""
        self._gate.set()

    def stats(self) -> Stats:
        """A snapshot of the counters."""
        snap = copy.deepcopy(self._stats)
        snap.elapsed = self.now()
        snap.models = copy.deepcopy(self._models)
        return snap

    # -- helpers -----------------------------------------------------------------------------

    def _window(self, model: str, now: float) -> WindowStats:
        stats = self._models.get(model)
        if stats is None:
            stats = self._models[model] = ModelStats(self.config.limits_for(model))
        return stats.window(max(0, int((now - self._t0) // self.config.minute_seconds)))

    def _buckets(self, key: str, model: str, now: float) -> KeyModelLimits:
        limits = self._limits.get((key, model))
        if limits is None:
            limits = KeyModelLimits(self.config.limits_for(model), self.config.minute_seconds, now)
            self._limits[(key, model)] = limits
        limits.refill(now)
        return limits

    def _ratelimit_headers(self, limits: KeyModelLimits) -> dict[str, str]:
        now = self._clock()
        limits.refill(now)
        wall = self.wall_time(now - self._t0)
        headers: dict[str, str] = {}
        for name, bucket in limits.buckets.items():
            headers[f"anthropic-ratelimit-{name}-limit"] = str(bucket.capacity)
            headers[f"anthropic-ratelimit-{name}-remaining"] = str(bucket.remaining)
            headers[f"anthropic-ratelimit-{name}-reset"] = rfc3339(wall + bucket.full_in())
        return headers

    def _error(
        self,
        status: int,
        kind: str,
        message: str,
        request_id: str,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        payload = {
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": request_id,
        }
        return web.json_response(
            payload, status=status, headers={"request-id": request_id, **(headers or {})}
        )

    def _in_outage(self, now: float) -> float:
        """Seconds left of the outage at `now` (0 when there is none)."""
        if self._outage is None:
            return 0.0
        start, duration = self._outage
        t = now - self._t0
        return start + duration - t if start <= t < start + duration else 0.0

    # -- routes ------------------------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        if self._start_pending:
            self._start_pending = False
            self._t0 = self._clock()
            self._wall0 = time.time()
        stats = self._stats
        stats.calls += 1
        request_id = f"req_sim_{next(self._ids):010d}"
        try:
            body = await request.json()
        except ValueError:
            stats.invalid += 1
            return self._error(400, "invalid_request_error", "body: invalid JSON", request_id)
        key = _api_key(request)
        if not key:
            stats.invalid += 1
            return self._error(
                401, "authentication_error", "x-api-key header is required", request_id
            )
        problem = _bad_body(body, counting=False)
        pieces = segments(body) if problem is None else []
        marks = sum(1 for p in pieces if p.ttl is not None)
        if problem is None and marks > MAX_BREAKPOINTS:
            problem = (
                f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
                f"Found {marks}."
            )
        reply: Reply | None = None
        if problem is None:
            try:
                reply = make_reply(body, self.config)
            except SchemaError as exc:
                problem = f"output_config.format.schema: {exc}"
        if problem is not None or reply is None:
            stats.invalid += 1
            return self._error(400, "invalid_request_error", str(problem), request_id)
        answer: Reply = reply
        model, max_tokens = str(body["model"]), int(body["max_tokens"])
        now = self._clock()
        window = self._window(model, now)
        scope = hashlib.sha256(f"{key}\x00{model}".encode()).hexdigest()
        limits = self._buckets(scope, model, now)

        left = self._in_outage(now)
        if left > 0:
            rng = request_rng(body, self.config.seed, f"outage:{request_id}")
            if rng.random() < self.config.outage_drop_share:
                stats.dropped += 1
                window.dropped += 1
                if request.transport is not None:
                    request.transport.abort()
                return web.Response()
            stats.overloaded += 1
            window.overloaded += 1
            wait = max(1, math.ceil(min(left, self.config.outage_retry_after)))
            headers = {"retry-after": str(wait), "x-should-retry": "true"}
            return self._error(
                529,
                "overloaded_error",
                "Overloaded",
                request_id,
                {**self._ratelimit_headers(limits), **headers},
            )

        plan = self._cache.plan(scope, pieces, now, self.config)
        verdict = limits.check(plan.charged, max_tokens)
        if not verdict.fits:
            stats.rate_limited += 1
            window.rate_limited += 1
            lim = limits.limits
            if math.isinf(verdict.wait):
                stats.never_fit += 1
                wait = max(1, math.ceil(self.config.minute_seconds))
                text = (
                    f"This request would need {plan.charged} input and {max_tokens} output "
                    f"tokens, more than a minute's limit ({lim.itpm} input, {lim.otpm} output "
                    f"tokens per minute): it can never fit. Reduce the prompt or max_tokens."
                )
            else:
                wait = max(1, math.ceil(verdict.wait - 1e-9))
                text = (
                    f"This request would exceed your organization's rate limit of {lim.rpm} "
                    f"requests, {lim.itpm} input tokens and {lim.otpm} output tokens per "
                    f"minute for {model} (short: {', '.join(verdict.short)})."
                )
            headers = {
                **self._ratelimit_headers(limits),
                "retry-after": str(wait),
                "x-should-retry": "true",
            }
            return self._error(429, "rate_limit_error", text, request_id, headers)

        limits.take(plan.charged, max_tokens)
        self._cache.commit(plan, now, self.config.minute_seconds)
        stats.admitted += 1
        window.requests += 1
        window.input_tokens += plan.charged
        window.cache_read_tokens += plan.read
        latency = draw_latency(request_rng(body, self.config.seed, "latency"), self.config)
        stats.in_flight += 1
        settled = False

        def settle() -> None:
            nonlocal settled
            if not settled:
                settled = True
                limits.settle_output(max_tokens, answer.output_tokens)
                window.output_tokens += answer.output_tokens

        try:
            message = message_body(body, answer, plan, request_id)
            if body.get("stream"):
                return await self._stream(request, message, limits, latency, settle, request_id)
            await asyncio.sleep(latency)
            await self._gate.wait()
            settle()
            headers = {**self._ratelimit_headers(limits), "request-id": request_id}
            return web.json_response(message, headers=headers)
        finally:
            settle()
            stats.in_flight -= 1

    async def _stream(
        self,
        request: web.Request,
        message: dict[str, Any],
        limits: KeyModelLimits,
        latency: float,
        settle: Callable[[], None],
        request_id: str,
    ) -> web.StreamResponse:
        # the first token comes after a quarter of the latency, the end after all of it
        await asyncio.sleep(latency * 0.25)
        await self._gate.wait()
        response = web.StreamResponse(
            headers={
                "content-type": "text/event-stream",
                "cache-control": "no-cache",
                "request-id": request_id,
                **self._ratelimit_headers(limits),
            }
        )
        await response.prepare(request)

        async def send(event: str, data: dict[str, Any]) -> None:
            await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())

        try:
            await self._events(send, message, latency, settle)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away; the output is settled by the caller
        return response

    @staticmethod
    async def _events(
        send: Callable[[str, dict[str, Any]], Awaitable[None]],
        message: dict[str, Any],
        latency: float,
        settle: Callable[[], None],
    ) -> None:
        """The SSE events of a reply: start, each block's deltas, the usage, stop."""
        usage = message["usage"]
        start = {**message, "content": [], "stop_reason": None}
        start["usage"] = {**usage, "output_tokens": 1}
        await send("message_start", {"type": "message_start", "message": start})
        await asyncio.sleep(latency * 0.75)
        for index, block in enumerate(message["content"]):
            if block["type"] == "thinking":
                empty: dict[str, Any] = {"type": "thinking", "thinking": "", "signature": ""}
                deltas = [
                    {"type": "thinking_delta", "thinking": block["thinking"]},
                    {"type": "signature_delta", "signature": block["signature"]},
                ]
            else:
                empty = {"type": "text", "text": ""}
                text = block["text"]
                deltas = [
                    {"type": "text_delta", "text": text[i : i + _CHUNK]}
                    for i in range(0, max(len(text), 1), _CHUNK)
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
        settle()
        await send(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": usage,
            },
        )
        await send("message_stop", {"type": "message_stop"})

    async def _count_tokens(self, request: web.Request) -> web.Response:
        self._stats.count_tokens_calls += 1
        request_id = f"req_sim_{next(self._ids):010d}"
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, "invalid_request_error", "body: invalid JSON", request_id)
        if not _api_key(request):
            return self._error(
                401, "authentication_error", "x-api-key header is required", request_id
            )
        problem = _bad_body(body, counting=True)
        if problem is not None:
            return self._error(400, "invalid_request_error", problem, request_id)
        tokens = estimate_input_tokens(body, self.config.chars_per_token)
        return web.json_response({"input_tokens": tokens}, headers={"request-id": request_id})

    async def _stats_route(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats().to_dict())

    async def _outage_route(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            start = float(body["start"]) if "start" in body else self.now() + float(body["in"])
            self.set_outage(start, float(body["duration"]))
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"outage": list(self._outage or ())})
