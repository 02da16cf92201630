"""WorkerHealth: the degraded state of a worker's loops, and their rate-limited error log."""

from __future__ import annotations

import logging

import pytest
from redis.exceptions import BusyLoadingError, ConnectionError

from jobqueue.worker.health import WorkerHealth
from jobqueue.worker.running import WorkerStats


def test_an_outage_is_one_line_per_loop_then_one_on_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stats = WorkerStats("w", "q", 1)
    health = WorkerHealth(stats, log_every=3600.0)
    with caplog.at_level(logging.INFO, logger="jobqueue.worker"):
        for _ in range(500):
            health.failed(
                "take/finish", ConnectionError("Error 111 connecting to redis://:s3cret@h:1")
            )
            health.failed("heartbeat", BusyLoadingError("Redis is loading the dataset in memory"))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "s3cret" not in " ".join(lines) and "s3cret" not in (stats.degraded or "")
    assert stats.degraded is not None and stats.degraded_since > 0
    assert (
        stats.degraded.startswith("heartbeat: BusyLoadingError")
        and "take/finish:" in stats.degraded
    )
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="jobqueue.worker"):
        health.ok("take/finish")
        assert health.degraded and "take/finish" not in (stats.degraded or "")
        health.ok("heartbeat")
        health.ok("heartbeat")  # already fine: nothing more logged
    assert not health.degraded and stats.degraded is None and stats.degraded_since == 0.0
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "take/finish: recovered after 500 error(s) in 0.0s",
        "heartbeat: recovered after 500 error(s) in 0.0s",
    ]


def test_a_loop_that_keeps_failing_logs_again_after_log_every(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = WorkerHealth(WorkerStats("w", "q", 1), log_every=0.0)
    with caplog.at_level(logging.WARNING, logger="jobqueue.worker"):
        for _ in range(3):
            health.failed("stall check", ConnectionError("refused"), retry_in=0.5)
    assert len(caplog.records) == 3
    assert "retrying in 0.50s" in caplog.records[0].getMessage()


def test_a_bug_is_logged_as_an_error_with_its_traceback_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = WorkerHealth(WorkerStats("w", "q", 1), log_every=0.0)
    with caplog.at_level(logging.WARNING, logger="jobqueue.worker"):
        for _ in range(2):
            try:
                raise KeyError("oops")
            except KeyError as exc:
                health.failed("scheduler", exc)
    assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.ERROR]
    assert caplog.records[0].exc_info and not caplog.records[1].exc_info
