"""Prometheus metrics of the queues and of worker processes, with `prometheus_client`.

Two kinds, served at two places:

- queue-level gauges read from Redis (`jobqueue_jobs{queue,state}`, paused, shared limiters'
  tokens, circuit breakers): `metrics_app(redis=..., prefix=...)` is an ASGI app answering
  `GET /metrics` (the dashboard mounts it; `python -m jobqueue.metrics --redis URL --port P`
  serves it alone); `QueueMetricsCollector` is the collector behind it.
- a worker process's counters and histograms (completed, failed by error type, retries,
  deferrals, run and wait time, limiter waits): `instrument(worker)` feeds them from the
  worker's lifecycle hooks into the process's registry, which
  `prometheus_client.start_http_server(port)` serves.

Every metric is listed in the README's "Metrics" section.
"""

from ._asgi import MetricsApp, metrics_app
from ._bridge import BridgedCollector
from ._queues import JOB_STATES, LimiterMetricsCollector, QueueMetricsCollector
from ._snapshot import QueueSnapshot, Snapshot, read_snapshot
from ._worker import WorkerMetrics, instrument, worker_metrics

__all__ = [
    "JOB_STATES",
    "BridgedCollector",
    "LimiterMetricsCollector",
    "MetricsApp",
    "QueueMetricsCollector",
    "QueueSnapshot",
    "Snapshot",
    "WorkerMetrics",
    "instrument",
    "metrics_app",
    "read_snapshot",
    "worker_metrics",
]
