"""What a finished attempt becomes: the outcome tuples that `finish.lua` records.

Pure functions (no I/O), so the whole decision table (completed, retried with backoff,
deferred by a rate limit or an outage, failed for good) is unit-tested without Redis.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping

from ..config import QueueConfig
from ..core.redact import redact
from ..core.replies import Outcome
from ..errors import ErrorType
from ..job import Job
from ..retry import Classification, backoff_delay, classify_error

__all__ = [
    "Outcome",
    "completed",
    "failed_for_good",
    "failure",
    "handed_back",
    "is_final_failure",
    "logged_failure",
    "waiting_for_children",
]

# the worker's own logger: these lines are the worker's
_log = logging.getLogger("jobqueue.worker.worker")

# the server's Retry-After is honoured as sent (max_backoff caps our own guesses; retrying
# earlier than told only earns another 429), within a day
MAX_RETRY_AFTER = 86400.0


_new = tuple.__new__


def completed(job: Job, result_json: str) -> Outcome:
    """The attempt succeeded with this JSON result."""
    # tuple.__new__ directly: the NamedTuple's own __new__ is a Python call more per job
    return _new(Outcome, (job.id, job.token or "", "c", result_json, "", 0, 0))


def handed_back(job: Job) -> Outcome:
    """The worker is stopping: the job goes back to the front of the queue, no attempt spent."""
    return Outcome(job.id, job.token or "", "h", "", "", 0, 0)


def waiting_for_children(job: Job) -> Outcome:
    """The handler raised `WaitForChildren`: the job waits for the children it added, no
    attempt spent (or runs again at once when they all ended already)."""
    return Outcome(job.id, job.token or "", "w", "", "", 0, 0)


def failed_for_good(job: Job, error_type: str, message: str) -> Outcome:
    """The job fails now, whatever attempts remain (cancelled, invalid, no handler...)."""
    return Outcome(job.id, job.token or "", "f", redact(message)[:2000], str(error_type), -1, 1)


def failure(
    config: QueueConfig,
    job: Job,
    exc: BaseException,
    *,
    delays: Mapping[str, float] | None = None,
    rng: random.Random | None = None,
) -> tuple[Outcome, Classification]:
    """Classify a failed attempt and decide what becomes of the job.

    Args:
        config: The queue's configuration (attempts, delays, backoff cap, jitter).
        job: The job whose attempt failed.
        exc: What the attempt raised.
        delays: Base delay per error type; `config.effective_retry_delays` when None.
        rng: Source of randomness for the jitter.

    Returns:
        The outcome, and the classification it came from (for logging).
    """
    c = classify_error(exc, retry_delays=delays or config.effective_retry_delays)
    msg = c.message or type(exc).__name__
    token = job.token or ""
    etype = str(c.error_type)
    if not c.retryable:
        return Outcome(job.id, token, "f", msg, etype, -1, 1), c
    if c.error_type == ErrorType.RATE_LIMIT:
        delay = backoff_delay(c, 1, max_delay=MAX_RETRY_AFTER)
        return Outcome(
            job.id, token, "r", msg, etype, max(1, int(delay * 1000)), config.max_deferrals
        ), c
    if getattr(exc, "spend_attempt", True) is False:
        delay = backoff_delay(c, 1, max_delay=config.max_backoff)
        return Outcome(
            job.id, token, "d", msg, etype, max(1, int(delay * 1000)), config.max_deferrals
        ), c
    limiter = config.limiter
    if limiter is not None and limiter.breaker is not None and etype == ErrorType.NETWORK_ERROR:
        # the provider failed server-side: the job waits without spending an attempt (the
        # breaker counts the failure and, open, holds every job of its limiter)
        delay = backoff_delay(c, 1, max_delay=config.max_backoff)
        return Outcome(job.id, token, "b", msg, etype, max(1, int(delay * 1000)), 0), c
    delay = backoff_delay(
        c, max(1, job.attempt), max_delay=config.max_backoff, jitter=config.jitter, rng=rng
    )
    return Outcome(job.id, token, "f", msg, etype, int(delay * 1000), job.max_attempts), c


def logged_failure(
    config: QueueConfig,
    job: Job,
    exc: BaseException | None,
    *,
    final_type: ErrorType | None,
    message: str,
    delays: Mapping[str, float],
    rng: random.Random,
) -> Outcome:
    """The outcome of a failed attempt, logged on the worker's logger: a final failure the
    worker decided itself (`exc` None: `final_type`, `message`), or the classification of what
    the handler raised."""
    if exc is None:
        etype = final_type or ErrorType.UNKNOWN
        _log.info("job %s:%s failed (%s): %s", config.name, job.id, etype, message)
        return failed_for_good(job, etype, message)
    outcome, c = failure(config, job, exc, delays=delays, rng=rng)
    _log.info(
        "job %s:%s attempt %d failed (%s%s): %s",
        config.name,
        job.id,
        job.attempt,
        c.error_type,
        "" if c.retryable else ", not retried",
        outcome.payload,
    )
    return outcome


def is_final_failure(config: QueueConfig, job: Job, exc: BaseException) -> bool:
    """Whether this failure ends the job (no retry), by the same table as `failure`.

    A deferral (rate limit, outage) is never final here: its cap is counted in Redis.
    """
    outcome, _ = failure(config, job, exc)
    kind, delay, limit = outcome[2], outcome[5], outcome[6]
    return kind == "f" and (delay < 0 or job.attempt >= limit)
