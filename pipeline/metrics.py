"""The pipeline's Prometheus metrics: model tokens, cost and calls by model (`MetricsGuard`, the
last guard of every model call), plus, in `python -m pipeline.workers --metrics-port P`, the
workers' own counters and histograms (`jobqueue.metrics.instrument`) and the state of the
shared limiters and their breakers (`LimiterMetricsCollector`), served by
`prometheus_client.start_http_server` from the process's default registry.

The model label is the model a call is priced as (`LLMCall.model`, the tier's configured
model); the cost is what the budget charges for it (`actual_cost`: offline calls are priced as
the configured model would be). Labels carry no prompt, key or run: only model names,
token kinds and outcomes.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from threading import Thread
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, Counter, start_http_server

from jobqueue import Queue, Worker
from jobqueue.metrics import LimiterMetricsCollector, instrument
from pipeline.ai.base import LLMError, LLMResult
from pipeline.ai.estimate import actual_cost
from pipeline.ai.guard import LLMCall

__all__ = ["MetricsGuard", "MetricsServer", "PipelineMetrics", "pipeline_metrics", "serve_metrics"]

log = logging.getLogger(__name__)


class PipelineMetrics:
    """The model-call metrics of a process, registered once per registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.tokens = Counter(
            "pipeline_llm_tokens",
            "Model tokens by kind: input (fresh), output (thinking included), cache_read, "
            "cache_write.",
            ["model", "kind"],
            registry=registry,
        )
        self.cost = Counter(
            "pipeline_llm_cost_usd",
            "What the model calls cost, in USD, as the budget charges them.",
            ["model"],
            registry=registry,
        )
        self.calls = Counter(
            "pipeline_llm_calls",
            "Model calls sent, by outcome: ok, or the error type they failed with.",
            ["model", "outcome"],
            registry=registry,
        )

    def record(self, call: LLMCall, outcome: LLMResult | BaseException) -> None:
        """Count one finished call."""
        model = call.model
        if isinstance(outcome, LLMResult):
            u = outcome.usage
            for kind, n in (
                ("input", u.input_tokens),
                ("output", u.output_tokens),
                ("cache_read", u.cache_read_tokens),
                ("cache_write", u.cache_write_tokens),
            ):
                if n:
                    self.tokens.labels(model, kind).inc(n)
            self.cost.labels(model).inc(max(0.0, actual_cost(call, outcome)))
            self.calls.labels(model, "ok").inc()
        elif isinstance(outcome, LLMError):
            self.calls.labels(model, str(outcome.error_type)).inc()
        elif isinstance(outcome, asyncio.CancelledError):
            self.calls.labels(model, "CANCELLED").inc()
        else:
            self.calls.labels(model, "UNKNOWN").inc()


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, PipelineMetrics] = (
    weakref.WeakKeyDictionary()
)


def pipeline_metrics(registry: CollectorRegistry | None = None) -> PipelineMetrics:
    """The `PipelineMetrics` of `registry` (default: the process's), made on first use."""
    registry = REGISTRY if registry is None else registry
    metrics = _BY_REGISTRY.get(registry)
    if metrics is None:
        metrics = _BY_REGISTRY[registry] = PipelineMetrics(registry)
    return metrics


class MetricsGuard:
    """A `Guard` that admits every call and counts how it ended (tokens, cost, outcome).

    It comes last in the chain, so it sees the calls actually sent to the model.

    Args:
        registry: where the metrics live (default: the process's registry).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.metrics = pipeline_metrics(registry)

    def __repr__(self) -> str:
        return "MetricsGuard()"

    async def before(self, call: LLMCall) -> None:
        """Admit the call."""

    async def after(self, call: LLMCall, reservation: None, outcome: Any) -> None:
        """Count the call's tokens, cost and outcome."""
        self.metrics.record(call, outcome)


@dataclass
class MetricsServer:
    """The HTTP server of `serve_metrics` (a thread); `close()` stops it."""

    server: WSGIServer
    thread: Thread

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.server.server_port)

    async def close(self) -> None:
        """Stop serving (a scrape in progress may wait on the event loop: not blocked here)."""
        await asyncio.to_thread(self.server.shutdown)
        self.server.server_close()


def serve_metrics(
    workers: Iterable[Worker],
    queues: Iterable[Queue],
    *,
    port: int,
    host: str = "127.0.0.1",
    registry: CollectorRegistry | None = None,
) -> MetricsServer:
    """Instrument the workers, add the gauges of the queues' shared limiters, and serve the
    registry at `http://host:port/metrics` (port 0: any free port, see `MetricsServer.port`).
    Call it from the event loop the workers run on (the limiters are read on it).

    Args:
        workers: the process's workers (instrumented before they run).
        queues: the queues whose shared limiters are shown.
        port: the port.
        host: the address to bind.
        registry: the registry (default: the process's).
    """
    registry = REGISTRY if registry is None else registry
    for worker in workers:
        instrument(worker, registry)
    pipeline_metrics(registry)  # listed from the first scrape, before any call
    limiters = LimiterMetricsCollector(queues)
    limiters.attach(asyncio.get_running_loop())
    registry.register(limiters)
    server, thread = start_http_server(port, addr=host, registry=registry)
    served = MetricsServer(server, thread)
    log.info("metrics at http://%s:%d/metrics", host, served.port)
    return served
