"""The decision table of a finished attempt, without Redis."""

from __future__ import annotations

import random
from typing import Any

import pytest

from jobqueue import (
    ErrorType,
    QueueConfig,
    RetryAfter,
    UnrecoverableError,
    register_error_rule,
    register_error_type,
)
from jobqueue.job import Job
from jobqueue.worker.outcomes import (
    completed,
    failed_for_good,
    failure,
    handed_back,
    waiting_for_children,
)


class _Q:
    def __init__(self, config: QueueConfig) -> None:
        self.config = config
        self.name = config.name


def make_job(config: QueueConfig, attempt: int = 1, attempts: int | None = None) -> Job:
    env: dict[str, Any] = {"n": "x", "d": None}
    if attempts is not None:
        env["at"] = attempts
    return Job(_Q(config), "j1", env, token="w:1", attempt=attempt)  # type: ignore[arg-type]


CFG = QueueConfig(
    "q", retry_delays={"UNKNOWN": 1.0, "NETWORK_ERROR": 2.0}, max_backoff=10.0, max_deferrals=7
)


def test_completed_and_handed_back() -> None:
    job = make_job(CFG)
    assert completed(job, '{"ok":1}') == ("j1", "w:1", "c", '{"ok":1}', "", 0, 0)
    assert handed_back(job)[2] == "h"
    # waiting for children is no failure: nothing that a retry table reads
    assert waiting_for_children(job) == ("j1", "w:1", "w", "", "", 0, 0)
    assert failed_for_good(job, ErrorType.CANCELLED, "stop") == (
        "j1",
        "w:1",
        "f",
        "stop",
        "CANCELLED",
        -1,
        1,
    )


@pytest.mark.parametrize(("attempt", "delay_ms"), [(1, 1000), (2, 2000), (3, 4000), (5, 10000)])
def test_exponential_backoff_capped(attempt: int, delay_ms: int) -> None:
    outcome, c = failure(CFG, make_job(CFG, attempt), RuntimeError("boom"))
    assert outcome[2] == "f" and outcome[5] == delay_ms and outcome[6] == 3
    assert c.error_type == ErrorType.UNKNOWN


def test_per_job_attempts_are_the_limit() -> None:
    outcome, _ = failure(CFG, make_job(CFG, 1, attempts=7), ConnectionResetError("reset"))
    assert outcome[4] == "NETWORK_ERROR" and outcome[5] == 2000 and outcome[6] == 7


def test_not_retryable_fails_now() -> None:
    outcome, _ = failure(
        CFG, make_job(CFG), UnrecoverableError("no", error_type=ErrorType.API_ERROR)
    )
    assert outcome[2:] == ("f", "UnrecoverableError: no", "API_ERROR", -1, 1)


def test_rate_limit_defers_and_holds_queue_with_exact_retry_after() -> None:
    exc = RetryAfter(120.0, "429", error_type=ErrorType.RATE_LIMIT)
    outcome, _ = failure(CFG, make_job(CFG, 3), exc)
    # the server's Retry-After is not capped by max_backoff, nor multiplied by the attempt
    assert outcome[2] == "r" and outcome[5] == 120_000 and outcome[6] == 7


def test_outage_defers_without_attempt_and_without_holding_queue() -> None:
    exc = RetryAfter(3.0, "db away", error_type=ErrorType.NETWORK_ERROR, spend_attempt=False)
    outcome, _ = failure(CFG, make_job(CFG, 1), exc)
    assert outcome[2] == "d" and outcome[5] == 3000 and outcome[6] == 7


def test_jitter_only_adds() -> None:
    cfg = QueueConfig("q", retry_delays={"UNKNOWN": 1.0}, jitter=0.5)
    rng = random.Random(7)
    delays = [failure(cfg, make_job(cfg, 1), RuntimeError("x"), rng=rng)[0][5] for _ in range(50)]
    assert all(1000 <= d <= 1500 for d in delays) and len(set(delays)) > 1


def test_secrets_are_redacted_from_messages() -> None:
    exc = RuntimeError("cannot reach redis://:hunter2@db:6379/0 with sk-ant-abcdefghijklmnop")
    outcome, _ = failure(CFG, make_job(CFG), exc)
    assert "hunter2" not in outcome[3] and "sk-ant-abcdefghijklmnop" not in outcome[3]


def test_is_final_failure_follows_the_same_table() -> None:
    from jobqueue import is_final_failure

    assert not is_final_failure(CFG, make_job(CFG, 1), RuntimeError("x"))
    assert is_final_failure(CFG, make_job(CFG, 3), RuntimeError("x"))  # attempts=3 spent
    assert is_final_failure(CFG, make_job(CFG, 1), UnrecoverableError("no"))
    rate = RetryAfter(5.0, error_type=ErrorType.RATE_LIMIT)
    assert not is_final_failure(CFG, make_job(CFG, 3), rate)  # a deferral spends nothing
    outage = RetryAfter(1.0, error_type=ErrorType.NETWORK_ERROR, spend_attempt=False)
    assert not is_final_failure(CFG, make_job(CFG, 3), outage)


class QuotaExceeded(Exception):
    pass


def test_a_registered_types_delay_and_backoff_reach_the_outcome() -> None:
    quota = register_error_type("QUOTA_EXCEEDED", delay=0.5)
    register_error_rule(QuotaExceeded, quota)
    cfg = QueueConfig("q", max_backoff=10.0)
    outcomes = [failure(cfg, make_job(cfg, n), QuotaExceeded())[0] for n in (1, 2, 3)]
    assert [(o[2], o[4], o[5]) for o in outcomes] == [
        ("f", "QUOTA_EXCEEDED", 500),
        ("f", "QUOTA_EXCEEDED", 1000),
        ("f", "QUOTA_EXCEEDED", 2000),
    ]
    # a queue's retry_delays beat the registered default
    cfg = QueueConfig("q", retry_delays={quota: 3.0})
    assert failure(cfg, make_job(cfg, 2), QuotaExceeded())[0][5] == 6000


def test_a_registered_non_retryable_type_fails_at_once() -> None:
    register_error_type("ACCOUNT_CLOSED", retryable=False)
    register_error_rule(QuotaExceeded, "ACCOUNT_CLOSED")
    outcome, c = failure(CFG, make_job(CFG, 1), QuotaExceeded("closed"))
    assert outcome[2:] == ("f", "QuotaExceeded: closed", "ACCOUNT_CLOSED", -1, 1)
    assert not c.retryable
    assert failed_for_good(make_job(CFG), "ACCOUNT_CLOSED", "x")[4] == "ACCOUNT_CLOSED"


def test_a_registered_type_with_delays_held_by_a_running_worker() -> None:
    cfg = QueueConfig("q")
    delays = cfg.effective_retry_delays  # a worker computes them once, when it is made
    register_error_type("QUOTA_EXCEEDED", delay=0.5)
    register_error_rule(QuotaExceeded, "QUOTA_EXCEEDED")
    outcome, _ = failure(cfg, make_job(cfg, 1), QuotaExceeded(), delays=delays)
    assert outcome[4:6] == ("QUOTA_EXCEEDED", 500)


def test_a_provider_failure_under_a_breaker_waits_without_an_attempt() -> None:
    from jobqueue import Breaker, Limiter

    guarded = QueueConfig("g", limiter=Limiter("llm", {}, Breaker()), attempts=1)
    outcome, _ = failure(guarded, make_job(guarded), ConnectionError("reset by peer"))
    assert (outcome.kind, outcome.error_type) == ("b", "NETWORK_ERROR")
    assert outcome.delay_ms > 0
    # not a provider failure: the usual table
    outcome, _ = failure(guarded, make_job(guarded), ValueError("bad"))
    assert outcome.kind == "f"
    # an outage of something else the job needs stays a plain deferral
    outage = RetryAfter(1, "db down", error_type=ErrorType.NETWORK_ERROR, spend_attempt=False)
    outcome, _ = failure(guarded, make_job(guarded), outage)
    assert outcome.kind == "d"
    # a limiter without a breaker: a network error spends an attempt as before
    plain = QueueConfig("p", limiter=Limiter("llm", {}), attempts=1)
    outcome, _ = failure(plain, make_job(plain), ConnectionError("reset"))
    assert outcome.kind == "f"
