"""A worker process's own metrics: counters and histograms fed by its workers' lifecycle hooks
(`instrument`), in a `prometheus_client` registry (the process's default one unless given).

Run time is measured in this process, from the handler's start (`on_active`) to the moment
its outcome is recorded in Redis (`on_completed` / `on_failed`). Wait time is from the job's
`add` (its `created_at`, on the Redis clock) to the first start of its first attempt: a delay
asked for at `add` is part of it; later attempts are left out (their wait is the retry
backoff), and so is a restart after a deferral (which spends no attempt) in this process.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import OrderedDict
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from ..job import Job
from ..worker import Worker, WorkerHooks
from ..worker.outcomes import failure

__all__ = ["WorkerMetrics", "instrument", "worker_metrics"]

RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
"""Histogram buckets of run time, in seconds (jobs of milliseconds up to model calls of
minutes)."""
WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400)
"""Histogram buckets of wait and limiter-wait time, in seconds."""

_RECENT = 10_000

# what `failure` decided for an attempt that will run again without spending an attempt
DEFERRAL_REASONS = {"r": "rate_limited", "b": "breaker", "d": "deferred"}


class WorkerMetrics:
    """The metrics of a process's workers, registered once per registry (see
    `worker_metrics`): every instrumented worker of the process counts into them, labelled by
    its queue."""

    def __init__(self, registry: CollectorRegistry) -> None:
        reg = registry
        self._workers: weakref.WeakSet[Worker] = weakref.WeakSet()
        self.started = Counter(
            "jobqueue_jobs_started", "Attempts started by this process.", ["queue"], registry=reg
        )
        self.completed = Counter(
            "jobqueue_jobs_completed", "Jobs completed by this process.", ["queue"], registry=reg
        )
        self.failed = Counter(
            "jobqueue_jobs_failed",
            "Jobs failed for good by this process, by the error type of their last attempt.",
            ["queue", "error_type"],
            registry=reg,
        )
        self.retries = Counter(
            "jobqueue_job_retries",
            "Failed attempts that will run again (an attempt spent), by error type.",
            ["queue", "error_type"],
            registry=reg,
        )
        self.deferrals = Counter(
            "jobqueue_job_deferrals",
            "Attempts put back without spending an attempt: rate_limited (a 429 or "
            "Retry-After), breaker (a server-side failure behind a circuit breaker), deferred "
            "(an error that does not spend attempts).",
            ["queue", "reason"],
            registry=reg,
        )
        self.stalled = Counter(
            "jobqueue_jobs_stalled",
            "Jobs of dead workers this process's stall check brought back (outcome waiting) "
            "or failed after too many stalls (outcome failed).",
            ["queue", "outcome"],
            registry=reg,
        )
        self.errors = Counter(
            "jobqueue_worker_errors",
            "Errors a worker met of its own (Redis unreachable...), by exception class.",
            ["queue", "error"],
            registry=reg,
        )
        self.run_seconds = Histogram(
            "jobqueue_job_run_seconds",
            "Seconds from a handler's start to its outcome recorded in Redis.",
            ["queue"],
            buckets=RUN_BUCKETS,
            registry=reg,
        )
        self.wait_seconds = Histogram(
            "jobqueue_job_wait_seconds",
            "Seconds from a job's add to the start of its first attempt.",
            ["queue"],
            buckets=WAIT_BUCKETS,
            registry=reg,
        )
        self.limiter_wait_seconds = Histogram(
            "jobqueue_limiter_wait_seconds",
            "Seconds a running job waited for its shared limiter's buckets (Job.reserve).",
            ["queue"],
            buckets=WAIT_BUCKETS,
            registry=reg,
        )

    def observe_limiter_wait(self, queue: str, seconds: float) -> None:
        """Count a wait for a shared limiter's tokens (what `Job.reserve` said to wait)."""
        self.limiter_wait_seconds.labels(queue).observe(max(0.0, seconds))

    def hooks(self, worker: Worker) -> WorkerHooks:
        """The hooks that feed these metrics from `worker`."""
        queue, config = worker.queue.name, worker.config
        started: dict[str, float] = {}
        # jobs whose wait was counted: a deferral spends no attempt, so a deferred job starts
        # attempt 1 again; recent ids are enough to count it once
        waited: OrderedDict[str, None] = OrderedDict()

        def on_active(job: Job) -> None:
            started[job.id] = time.monotonic()
            self.started.labels(queue).inc()
            if job.attempt == 1 and job.created_at is not None and job.id not in waited:
                waited[job.id] = None
                if len(waited) > _RECENT:
                    waited.popitem(last=False)
                wait = time.time() - job.created_at.timestamp()
                self.wait_seconds.labels(queue).observe(max(0.0, wait))

        def ran(job: Job) -> None:
            began = started.pop(job.id, None)
            if began is not None:
                self.run_seconds.labels(queue).observe(time.monotonic() - began)

        def on_completed(job: Job, result: Any) -> None:
            ran(job)
            self.completed.labels(queue).inc()

        def on_failed(job: Job, error: BaseException) -> None:
            ran(job)
            etype = job.error_type or "unknown"
            if str(job.state) == "failed":
                self.failed.labels(queue, etype).inc()
                return
            kind = "f"
            if isinstance(error, Exception) and not isinstance(error, asyncio.CancelledError):
                kind = failure(config, job, error)[0].kind
            reason = DEFERRAL_REASONS.get(kind)
            if reason is None:
                self.retries.labels(queue, etype).inc()
            else:
                self.deferrals.labels(queue, reason).inc()

        def on_stalled(job_id: str, state: str) -> None:
            self.stalled.labels(queue, str(state)).inc()

        def on_error(error: BaseException) -> None:
            self.errors.labels(queue, type(error).__name__).inc()

        return WorkerHooks(
            on_active=on_active,
            on_completed=on_completed,
            on_failed=on_failed,
            on_stalled=on_stalled,
            on_error=on_error,
        )


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, WorkerMetrics] = (
    weakref.WeakKeyDictionary()
)


def worker_metrics(registry: CollectorRegistry | None = None) -> WorkerMetrics:
    """The `WorkerMetrics` of `registry` (the process's default registry when None), made
    and registered on first use."""
    registry = REGISTRY if registry is None else registry
    metrics = _BY_REGISTRY.get(registry)
    if metrics is None:
        metrics = _BY_REGISTRY[registry] = WorkerMetrics(registry)
    return metrics


def instrument(worker: Worker, registry: CollectorRegistry | None = None) -> WorkerMetrics:
    """Feed the process's worker metrics from `worker`'s lifecycle hooks (added beside the
    hooks it has; call before `worker.run()`).

    Args:
        worker: the worker.
        registry: where the metrics live (default: `prometheus_client.REGISTRY`, what
            `prometheus_client.start_http_server` serves).

    Returns:
        The metrics (shared by every worker instrumented into the same registry); a worker
        instrumented again into the same registry is left as it is.
    """
    metrics = worker_metrics(registry)
    if worker not in metrics._workers:  # instrumenting twice would count everything twice
        worker.add_hooks(metrics.hooks(worker))
        metrics._workers.add(worker)
    return metrics
