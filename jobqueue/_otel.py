"""The spans of jobs, after the OpenTelemetry messaging semantic conventions.

Imported by `_tracing` only once a tracer provider is set. Uses the API only: the application
chooses the SDK, the exporter and the sampler (the standard `OTEL_*` variables).

- `send <queue>`, kind PRODUCER, around the script call that adds jobs (one span per call and
  queue: `add` is one job, `add_bulk` a batch, `messaging.batch.message_count`; a flow's jobs,
  added by `add_flow` or `Job.add_children`, one span per queue they are on). Its context is
  injected with the global propagator (W3C `traceparent`/`tracestate` by default)
  into each job's envelope as `"tp": {carrier}`.
- `process <queue>`, kind CONSUMER, around each run of a job in a worker, the child of the
  context extracted from the envelope (a job without one starts a trace of its own). It is the
  current span while the handler runs, so a job added by a handler is its child: a chain of
  jobs is one trace, across processes.

`messaging.system` is `jobqueue`: the system is this library's protocol, Redis only its store.
Error messages are not recorded (job errors may quote user data); `error.type` is the job's
error type.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from contextvars import Token
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .core.replies import Outcome
from .job import Job

__all__ = ["process_end", "process_start", "send"]

R = TypeVar("R")

SYSTEM = "jobqueue"
_cached: tuple[trace.TracerProvider, trace.Tracer] | None = None


def _tracer() -> trace.Tracer:
    # the tracer of the provider set now (a test may swap providers); not one per span
    global _cached
    provider = trace.get_tracer_provider()
    if _cached is None or _cached[0] is not provider:
        _cached = (provider, trace.get_tracer("jobqueue", tracer_provider=provider))
    return _cached[1]


def _inject(envelope: str, tp: str) -> str:
    # the envelope is a JSON object made by `_encode.encode_job`: its last character closes it
    return envelope[:-1] + ',"tp":' + tp + "}"


def _send_attributes(queue: str, count: int) -> dict[str, str | int]:
    attributes: dict[str, str | int] = {
        "messaging.system": SYSTEM,
        "messaging.destination.name": queue,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
    }
    if count > 1:
        attributes["messaging.batch.message_count"] = count
    return attributes


async def send(
    queue: str,
    items: Sequence[Any],
    call: Callable[[list[Any]], Awaitable[R]],
    message_id: Callable[[R], str | None],
) -> R:
    """See `_tracing.send`. Items on several queues (a flow's nodes) get one `send <queue>`
    span per queue, siblings around the one call, each job carrying its own queue's span."""
    queues = list(dict.fromkeys(getattr(item, "queue", queue) for item in items)) or [queue]
    parent = otel_context.get_current()
    spans = {
        q: _tracer().start_span(
            f"send {q}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes=_send_attributes(
                q, sum(1 for i in items if getattr(i, "queue", queue) == q)
            ),
            record_exception=False,
            set_status_on_exception=False,
        )
        for q in queues
    }
    try:
        carriers: dict[str, str] = {}
        for q, span in spans.items():
            carrier: dict[str, str] = {}
            propagate.inject(carrier, context=trace.set_span_in_context(span, parent))
            if span.get_span_context().is_valid and carrier:
                carriers[q] = json.dumps(carrier, separators=(",", ":"))
        items = [
            item._replace(envelope=_inject(item.envelope, carriers[q]))
            if (q := getattr(item, "queue", queue)) in carriers
            else item
            for item in items
        ]
        try:
            reply = await call(list(items))
        except Exception as exc:
            for span in spans.values():
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
            raise
        added = message_id(reply)
        if added:
            spans[queues[0]].set_attribute("messaging.message.id", added)
        return reply
    finally:
        for span in spans.values():
            span.end()


def process_start(job: Job) -> tuple[trace.Span, Token[otel_context.Context]]:
    """See `_tracing.process_start`: (the span, the context token to detach)."""
    carrier = job._trace
    # an empty base context: a job added without tracing starts a trace, it does not join
    # whatever the worker's own context holds
    parent = otel_context.Context()
    if isinstance(carrier, dict):
        parent = propagate.extract(carrier, context=parent)
    queue = job.queue.name
    span = _tracer().start_span(
        f"process {queue}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": SYSTEM,
            "messaging.destination.name": queue,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.message.id": job.id,
            "jobqueue.job.name": job.name,
            "jobqueue.job.attempt": job.attempt,
        },
    )
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    return span, token


_OUTCOMES = {"c": "completed", "r": "rate_limited", "d": "deferred", "b": "deferred",
             "h": "handed_back"}  # fmt: skip


def process_end(handle: Any, job: Job, outcome: Outcome | None, value: object) -> None:
    """See `_tracing.process_end`."""
    span, token = handle
    error = value if isinstance(value, BaseException) else None
    try:
        if outcome is None:
            name = "lease_lost"  # another worker owns the job now: its run reports it
        elif outcome.kind == "f":
            final = outcome.delay_ms < 0 or job.attempt >= outcome.limit
            name = "failed" if final else "retried"
        else:
            name = _OUTCOMES.get(outcome.kind, outcome.kind)
        span.set_attribute("jobqueue.job.outcome", name)
        if outcome is not None and outcome.kind == "f":
            etype = outcome.error_type or (type(error).__qualname__ if error else "error")
            span.set_attribute("error.type", etype)
            if error is not None:
                span.set_attribute("jobqueue.job.exception", type(error).__qualname__)
            span.set_status(Status(StatusCode.ERROR, etype))
        span.end()
    finally:
        otel_context.detach(token)
