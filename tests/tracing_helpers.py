"""OpenTelemetry in tests: the SDK's in-memory exporter as the process's tracer provider.

The API lets a process set its global provider once; a test turns tracing on and off again
here by resetting the API's globals, as the OpenTelemetry project's own test utilities do.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once


def _reset() -> None:
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


@contextmanager
def tracing() -> Iterator[InMemorySpanExporter]:
    """Record every span of the block (the SDK, in memory); tracing is off again after it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _reset()
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        provider.shutdown()
        _reset()


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    """The spans of this name, in the order they ended."""
    return [s for s in spans if s.name == name]


def parent_id(span: ReadableSpan) -> int | None:
    """The span id of its parent, None for a root."""
    return span.parent.span_id if span.parent is not None else None
