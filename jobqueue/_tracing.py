"""OpenTelemetry tracing of jobs, optional: the gate every traced path goes through.

Tracing is on when the application configured a tracer provider of the OpenTelemetry API
(e.g. the SDK's `TracerProvider`, set with `trace.set_tracer_provider`): `Queue.add`,
`add_bulk` and `add_flow` then make a PRODUCER span `send <queue>` whose context travels in
the job's envelope (field `tp`), and the worker makes a CONSUMER span `process <queue>` for
each run, a child of it. The spans themselves are made in `_otel`, imported only then.

Off (the API not installed, never imported, or no provider set: the API's no-op) the cost is
this module's check, about 0.1 µs per add and per run; the envelope carries no `tp`, and
`jobqueue` itself imports nothing of `opentelemetry`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .core.replies import Outcome
    from .job import Job

__all__ = ["enabled", "process_end", "process_start", "send"]

R = TypeVar("R")
log = logging.getLogger("jobqueue.worker")
_UNKNOWN = object()


# a provider named by this variable is made by the API's first `get_tracer_provider()` call
_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def enabled() -> bool:
    """Whether spans would be recorded: a real tracer provider is set.

    Nobody can have set a provider without importing `opentelemetry.trace` (redis-py may import
    it for its own metrics), so while it is not in `sys.modules` tracing is off. Then the
    API's global is read as it is: `get_tracer_provider()` reads `os.environ` each time, which
    is the most of a microsecond per job more.
    """
    api: Any = sys.modules.get("opentelemetry.trace")
    if api is None:
        return False
    provider = getattr(api, "_TRACER_PROVIDER", _UNKNOWN)
    if provider is None and not _PROVIDER_FROM_ENV:
        return False  # none set: the API's no-op
    if provider is _UNKNOWN or provider is None:  # an API that keeps it elsewhere
        provider = api.get_tracer_provider()
    return not isinstance(provider, api.ProxyTracerProvider | api.NoOpTracerProvider)


async def send(
    queue: str,
    items: Sequence[Any],
    call: Callable[[list[Any]], Awaitable[R]],
    message_id: Callable[[R], str | None],
) -> R:
    """`call(items)` under a `send <queue>` span, each item (a `NewJob` or `FlowNodeArgs`)
    given the span's context in its envelope. Called only when `enabled()`: off, the caller
    makes its call as it is.

    `message_id(reply)` names the job the span is about (`messaging.message.id`): the job
    added, a flow's root; None for a batch."""
    from . import _otel

    return await _otel.send(queue, items, call, message_id)


def process_start(job: Job) -> Any:
    """The `process <queue>` span of this run made current, or None when tracing is off.

    The caller (the worker, in the job's own task) passes it to `process_end`."""
    if not enabled():
        return None
    try:
        from . import _otel

        return _otel.process_start(job)
    except Exception:  # tracing never stops a job from running
        log.exception("job %s: its process span could not start", job.id)
        return None


def process_end(handle: Any, job: Job, outcome: Outcome | None, value: object) -> None:
    """End the span `process_start` returned, with the run's outcome (`value`: the result,
    or the exception that failed the run)."""
    try:
        from . import _otel

        _otel.process_end(handle, job, outcome, value)
    except Exception:  # nor from recording its outcome
        log.exception("job %s: its process span could not end", job.id)
