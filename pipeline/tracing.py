"""OpenTelemetry tracing of the pipeline (optional: `pip install jobqueue[otel]`).

The engine traces every job (`send <queue>` when added, `process <queue>` for each run, see
`jobqueue._otel`); the stages add jobs from inside their handlers, so a run's jobs chain into
one trace. Here the pipeline adds:

- `run <sector>`, the root of one run driven by `python -m pipeline run` (its start and the
  auto-approval of its sub-sector are in it, so the whole run is one trace);
- `chat <model>`, kind CLIENT, around each model call, after the GenAI semantic conventions:
  the model, the token counts, the stop reason; never a prompt, an answer or a key.

`setup()` configures the SDK in a worker or CLI process, from the standard `OTEL_*` variables,
only when they ask for an exporter and the SDK is installed. Library code uses the API only:
with no provider set, nothing is recorded.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pipeline.ai.base import LLMResult

__all__ = [
    "LLMCallLike",
    "enabled",
    "end_run_span",
    "llm_span",
    "record_llm_result",
    "run_span",
    "setup",
    "shutdown",
    "start_run_span",
]

log = logging.getLogger(__name__)


class LLMCallLike(Protocol):
    """What a span reads of a model call (`pipeline.ai.guard.LLMCall`; the guard imports
    this module, so it is named by shape here)."""

    @property
    def model(self) -> str: ...
    @property
    def max_tokens(self) -> int: ...
    @property
    def tier(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def stage(self) -> str | None: ...


SERVICE = "jobqueue-pipeline"


def enabled() -> bool:
    """Whether spans are recorded: the OpenTelemetry API is installed and a real tracer
    provider is set (the engine makes the same check for its job spans)."""
    try:
        from opentelemetry import trace
    except ImportError:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def _tracer() -> Any:
    from opentelemetry import trace

    return trace.get_tracer("pipeline")


@contextlib.contextmanager
def llm_span(call: LLMCallLike) -> Iterator[Any]:
    """A `chat <model>` span around one model call (None when tracing is off).

    Raises whatever the call raised, the span then marked ERROR with the error's type."""
    if not enabled():
        yield None
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    attributes: dict[str, str | int] = {
        "gen_ai.system": "anthropic",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": call.model,
        "gen_ai.request.max_tokens": call.max_tokens,
        "pipeline.llm.tier": str(call.tier),
        "pipeline.llm.kind": call.kind,
    }
    if call.stage:
        attributes["pipeline.stage"] = call.stage
    with _tracer().start_as_current_span(
        f"chat {call.model}",
        kind=SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,  # a provider's message may quote the prompt
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            etype = str(getattr(exc, "error_type", "") or type(exc).__qualname__)
            span.set_attribute("error.type", etype)
            span.set_status(Status(StatusCode.ERROR, etype))
            raise


def record_llm_result(span: Any, result: LLMResult) -> None:
    """Put a finished call's model, token counts and stop reason on its `chat` span."""
    if span is None:
        return
    usage = result.usage
    span.set_attribute("gen_ai.response.model", result.model)
    span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
    span.set_attribute("gen_ai.usage.cache_read.input_tokens", usage.cache_read_tokens)
    span.set_attribute("gen_ai.usage.cache_creation.input_tokens", usage.cache_write_tokens)
    if result.stop_reason:
        span.set_attribute("gen_ai.response.finish_reasons", [result.stop_reason])
    span.set_attribute("pipeline.llm.cost_usd", float(result.cost_usd))


def start_run_span(sector: str) -> Any:
    """The root span of one run (not made current: see `run_span`), or None when off."""
    if not enabled():
        return None
    return _tracer().start_span(f"run {sector}", attributes={"pipeline.sector": sector})


@contextlib.contextmanager
def run_span(span: Any) -> Iterator[None]:
    """Make a run's span current in the block (nothing when None): jobs added in it join it."""
    if span is None:
        yield
        return
    from opentelemetry import trace

    with trace.use_span(span, end_on_exit=False, record_exception=False):
        yield


def end_run_span(span: Any, run_id: object, error: str | None) -> None:
    """End a run's span with how the run ended (None: it completed)."""
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    if run_id is not None:
        span.set_attribute("pipeline.run_id", str(run_id))
    if error is not None:
        span.set_attribute("pipeline.run.error", error.split(":")[0][:100])
        if error != "cancelled":
            span.set_status(Status(StatusCode.ERROR, error.split(":")[0][:100]))
    span.end()


def _wants_export() -> bool:
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none" or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return bool(
        exporter
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def setup() -> Any:
    """Set the SDK's tracer provider for this process when the `OTEL_*` variables ask for
    export (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
    `OTEL_TRACES_EXPORTER` = `otlp` or `console`) and the SDK is installed.

    The SDK reads the other variables itself (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
    `OTEL_TRACES_SAMPLER`, `OTEL_EXPORTER_OTLP_HEADERS`...); the service name defaults to
    `jobqueue-pipeline`. A provider set already (by the application) is kept.

    Returns:
        The provider made (call its `shutdown()` at exit to flush), or None.
    """
    if not _wants_export() or enabled():
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning("OTEL_* asks for traces but opentelemetry-sdk is not installed: no tracing")
        return None
    name = os.environ.get("OTEL_SERVICE_NAME") or SERVICE
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    kinds = [k.strip() for k in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    for kind in kinds:
        if kind == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif kind in ("otlp", ""):
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
            except ImportError:
                log.warning("the OTLP exporter is not installed (jobqueue[otel]): no export")
                continue
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            log.warning("OTEL_TRACES_EXPORTER %r is not supported here: ignored", kind)
    trace.set_tracer_provider(provider)
    log.info("tracing: spans of service %r exported (%s)", name, ", ".join(kinds))
    return provider


def shutdown(provider: Any) -> None:
    """Flush and stop the provider `setup()` made (nothing when it made none)."""
    if provider is not None:
        provider.shutdown()
