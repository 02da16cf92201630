"""The exception tree of `jobqueue` and the error types that failures are classified into.

    JobQueueError
     ├─ ConfigError (also ValueError)          a bad option; the message names the value
     ├─ InvalidJobError (also ValueError)      bad job id, name, data, delay or priority
     │   └─ PayloadTooLargeError               data or result over the size limit
     ├─ JobNotFoundError (also KeyError)       no such job
     ├─ LeaseLostError                         the worker no longer holds the job (fencing)
     ├─ QueueStateError                        an operation the queue's state refuses
     ├─ UnsafeRedisError                       a replica, or an eviction policy that loses jobs
     ├─ NotDurableError                        durable mode: fewer replicas acknowledged an add
     ├─ QueueFullError                         Redis is out of memory: the write was refused
     ├─ JobFailedError                         raised by waiting on a job that failed
     ├─ UnrecoverableError                     raised by a handler: fail now, no retry
     ├─ RetryAfter                             raised by a handler: retry after N seconds
     └─ WaitForChildren                        raised by a handler: wait for the children it added

Errors raised by the scripts are small integer codes; `jobqueue.core.scripts` maps each to one of
these classes, so nothing parses error strings.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ConfigError",
    "CrossSlotFlowError",
    "ErrorType",
    "InvalidJobError",
    "JobFailedError",
    "JobNotFoundError",
    "JobQueueError",
    "LeaseLostError",
    "NotDurableError",
    "PayloadTooLargeError",
    "QueueFullError",
    "QueueStateError",
    "RetryAfter",
    "UnrecoverableError",
    "UnsafeRedisError",
    "WaitForChildren",
]


class ErrorType(StrEnum):
    """The engine's built-in kinds of failure; each decides whether and when it is retried.

    Error types are plain `str` everywhere: these members are `str`, and an application adds
    its own types with `jobqueue.register_error_type` (see `jobqueue.retry.types`).
    """

    RATE_LIMIT = "RATE_LIMIT"
    NETWORK_ERROR = "NETWORK_ERROR"
    API_ERROR = "API_ERROR"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    UNKNOWN = "UNKNOWN"
    CANCELLED = "CANCELLED"
    STALLED = "STALLED"
    CRASHED = "CRASHED"


class JobQueueError(Exception):
    """Root of every error raised by `jobqueue`."""


_MAX_MESSAGE = 1000
"""Longest message of a bad-input error: the bad value is named, never echoed whole (a 10 KB
string given by mistake would flood logs and pages)."""


def _bounded(message: object) -> object:
    text = str(message)
    return text if len(text) <= _MAX_MESSAGE else f"{text[:_MAX_MESSAGE]}... ({len(text)} chars)"


class ConfigError(JobQueueError, ValueError):
    """An option has a bad value; the message names the option and the value."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(_bounded(message), *args)


class CrossSlotFlowError(ConfigError):
    """A flow names a child queue outside its parent queue's Redis Cluster hash slot (a flow
    lives in one slot: one queue, queues on one shared limiter, or queues given one
    `QueueConfig.slot`); nothing was written."""


class InvalidJobError(JobQueueError, ValueError):
    """A job's id, name, data, delay or priority is not acceptable; nothing was written."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(_bounded(message), *args)


class PayloadTooLargeError(InvalidJobError):
    """The job's data (or a handler's result) is larger than the configured limit."""


class JobNotFoundError(JobQueueError, KeyError):
    """No job with this id exists in the queue."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "job not found"


class LeaseLostError(JobQueueError):
    """The worker's lease on the job expired or was taken over; its write was refused."""


class QueueStateError(JobQueueError):
    """The queue's current state refuses this operation (e.g. obliterate with active jobs)."""


class UnsafeRedisError(JobQueueError):
    """The Redis server is configured in a way that can lose jobs (replica, eviction)."""


class NotDurableError(JobQueueError):
    """Durable mode (`QueueConfig.durable_replicas`): the master stored the new jobs, but
    fewer replicas than asked acknowledged them within `durable_timeout`, so a failover now
    could lose them. Adding them again with the same `job_id`s is safe.

    Attributes:
        acked: how many replicas acknowledged.
        wanted: how many were asked for.
    """

    def __init__(self, message: str, *, acked: int, wanted: int) -> None:
        super().__init__(message)
        self.acked = acked
        self.wanted = wanted


class QueueFullError(JobQueueError):
    """Redis refused the write because it is out of memory (`maxmemory` reached under the
    `noeviction` policy); nothing was written.

    Adding jobs (`Queue.add`, `add_bulk`, flows, tasks' `enqueue`) raises it while the server
    is full: retry later, or give Redis more memory. Workers keep finishing and taking jobs
    meanwhile (those scripts run under OOM: see docs/reliability.md), which is what frees
    memory again, as completed jobs leave by the queue's retention.
    """


class JobFailedError(JobQueueError):
    """Raised when waiting on a job that ended in `failed`."""

    def __init__(self, job_id: str, message: str, error_type: str | None) -> None:
        super().__init__(f"job {job_id} failed ({error_type or 'UNKNOWN'}): {message}")
        self.job_id = job_id
        self.error_message = message
        self.error_type = error_type


class UnrecoverableError(JobQueueError):
    """Raised by a handler to fail the job at once, whatever attempts remain.

    Args:
        message: What went wrong.
        error_type: A built-in or registered error type recorded with the failure (an unknown
            name is recorded as UNKNOWN).
    """

    def __init__(self, message: str = "", *, error_type: str = ErrorType.UNKNOWN) -> None:
        super().__init__(message)
        self.error_type = error_type


class RetryAfter(JobQueueError):
    """Raised by a handler to retry the job after exactly `seconds` (no exponential backoff).

    It spends an attempt like any failure, unless `error_type` is `RATE_LIMIT`, which defers
    the job without spending one and holds the whole queue for `seconds`, or
    `spend_attempt=False`, which defers only this job without spending one (for outages of
    something the job depends on, such as its database). Deferrals are capped per job by
    `QueueConfig.max_deferrals`.

    Args:
        seconds: Exact delay before the retry (>= 0).
        message: What went wrong (default "retry after N s").
        error_type: A built-in or registered error type recorded with the failure.
        spend_attempt: False defers the job without spending an attempt.

    Raises:
        ConfigError: `seconds` is negative.
    """

    def __init__(
        self,
        seconds: float,
        message: str = "",
        *,
        error_type: str = ErrorType.UNKNOWN,
        spend_attempt: bool = True,
    ) -> None:
        if seconds < 0:
            raise ConfigError(f"RetryAfter seconds must be >= 0, got {seconds!r}")
        super().__init__(message or f"retry after {seconds:g}s")
        self.retry_after = float(seconds)
        self.error_type = error_type
        self.spend_attempt = spend_attempt


class WaitForChildren(JobQueueError):
    """Raised by a handler (or `await job.wait_for_children()`) to end its attempt by waiting
    for the children it added with `Job.add_children`.

    No attempt is spent: the job waits in state `waiting-children` until every child has
    ended, then runs again with `job.step` one higher and its children's results in
    `job.children_results()`. When every child has ended already (or it added none), it is
    ready to run again at once.
    """

    def __init__(self, message: str = "waiting for children") -> None:
        super().__init__(message)
