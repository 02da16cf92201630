"""Unit tests for `jobqueue.retry.types`: the built-in error types and the application's own,
and how a registered type's delay and retryability reach `QueueConfig` and classification."""

from __future__ import annotations

import math
from typing import Any

import pytest

from jobqueue import (
    ConfigError,
    ErrorType,
    QueueConfig,
    RetryAfter,
    UnrecoverableError,
    classify_error,
    error_type_info,
    register_error_rule,
    register_error_type,
    unregister_error_type,
)
from jobqueue.retry import check_error_type, default_retry_delays, error_types


class QuotaExceeded(Exception):
    pass


def test_builtins_and_their_defaults() -> None:
    assert list(error_types()) == list(ErrorType)
    assert "JUDGE_REJECTION" not in ErrorType.__members__  # an application's type, not the engine's
    retried = {name for name, info in error_types().items() if info.retryable}
    assert retried == {"RATE_LIMIT", "NETWORK_ERROR", "UNKNOWN", "STALLED", "CRASHED"}
    assert default_retry_delays() == {"RATE_LIMIT": 60, "NETWORK_ERROR": 10, "UNKNOWN": 5}


def test_register_and_look_up() -> None:
    assert register_error_type("QUOTA_EXCEEDED", delay=2.0, retryable=True) == "QUOTA_EXCEEDED"
    info = error_type_info("quota_exceeded")
    assert info is not None
    assert (info.name, info.delay, info.retryable, info.builtin) == (
        "QUOTA_EXCEEDED",
        2,
        True,
        False,
    )
    assert check_error_type("Quota_Exceeded") == "QUOTA_EXCEEDED"
    assert check_error_type("network_error") is ErrorType.NETWORK_ERROR
    assert list(error_types())[-1] == "QUOTA_EXCEEDED"
    assert default_retry_delays()["QUOTA_EXCEEDED"] == 2.0
    assert error_type_info("NOT_REGISTERED") is None
    assert error_type_info(42) is None


def test_re_registering_the_same_is_a_no_op_and_other_values_are_refused() -> None:
    register_error_type("QUOTA_EXCEEDED", delay=2.0)
    assert register_error_type("QUOTA_EXCEEDED", delay=2.0) == "QUOTA_EXCEEDED"
    with pytest.raises(ConfigError, match=r"already registered with delay=2\.0.*delay=3\.0"):
        register_error_type("QUOTA_EXCEEDED", delay=3.0)
    with pytest.raises(ConfigError, match="retryable=False"):
        register_error_type("QUOTA_EXCEEDED", delay=2.0, retryable=False)
    assert error_type_info("QUOTA_EXCEEDED").delay == 2.0  # type: ignore[union-attr]


def test_unregister() -> None:
    register_error_type("QUOTA_EXCEEDED")
    assert unregister_error_type("QUOTA_EXCEEDED") is True
    assert unregister_error_type("QUOTA_EXCEEDED") is False
    assert error_type_info("QUOTA_EXCEEDED") is None
    with pytest.raises(ConfigError, match="UNKNOWN"):
        unregister_error_type("UNKNOWN")


@pytest.mark.parametrize(
    ("args", "kwargs", "bad"),
    [
        (("judge_rejection",), {}, "judge_rejection"),
        (("9LIVES",), {}, "9LIVES"),
        (("A" * 65,), {}, "A" * 65),
        (("",), {}, "''"),
        ((None,), {}, "None"),
        (("RATE_LIMIT",), {}, "built-in"),
        (("QUOTA",), {"delay": -1}, "-1"),
        (("QUOTA",), {"delay": math.inf}, "inf"),
        (("QUOTA",), {"delay": True}, "True"),
        (("QUOTA",), {"retryable": "yes"}, "yes"),
    ],
)
def test_bad_registrations_name_the_value(
    args: tuple[Any, ...], kwargs: dict[str, Any], bad: str
) -> None:
    with pytest.raises(ConfigError, match=bad):
        register_error_type(*args, **kwargs)
    assert error_type_info("QUOTA") is None


# --- a registered type in classification and in QueueConfig -----------------------------------


def test_a_registered_type_is_accepted_wherever_a_type_is() -> None:
    quota = register_error_type("QUOTA_EXCEEDED", delay=2.0)
    register_error_rule(QuotaExceeded, quota)
    c = classify_error(QuotaExceeded())
    assert (c.error_type, c.retryable, c.delay, c.exact) == (quota, True, 2.0, False)
    c = classify_error(QuotaExceeded(), retry_delays={quota: 0.5})
    assert c.delay == 0.5
    c = classify_error(RetryAfter(1.5, error_type=quota))
    assert (c.error_type, c.delay, c.exact) == (quota, 1.5, True)
    c = classify_error(UnrecoverableError("x", error_type=quota))
    assert (c.error_type, c.retryable) == (quota, False)


def test_a_type_without_a_delay_waits_like_unknown() -> None:
    register_error_type("QUOTA_EXCEEDED")
    register_error_rule(QuotaExceeded, "QUOTA_EXCEEDED")
    assert classify_error(QuotaExceeded()).delay == 5
    assert classify_error(QuotaExceeded(), retry_delays={"UNKNOWN": 0.25}).delay == 0.25
    assert "QUOTA_EXCEEDED" not in QueueConfig("q", backoff=0.5).effective_retry_delays


def test_a_non_retryable_type() -> None:
    register_error_type("ACCOUNT_CLOSED", retryable=False)
    register_error_rule(QuotaExceeded, "ACCOUNT_CLOSED")
    c = classify_error(QuotaExceeded())
    assert (c.error_type, c.retryable, c.delay) == ("ACCOUNT_CLOSED", False, 0)


def test_queue_config_starts_from_each_types_default() -> None:
    register_error_type("QUOTA_EXCEEDED", delay=2.0)
    cfg = QueueConfig("q", backoff=0.5)
    assert cfg.effective_retry_delays == {
        "RATE_LIMIT": 60,
        "NETWORK_ERROR": 10,
        "UNKNOWN": 0.5,
        "QUOTA_EXCEEDED": 2.0,
    }
    cfg = QueueConfig("q", retry_delays={"quota_exceeded": 0.1, ErrorType.RATE_LIMIT: 1})
    assert cfg.retry_delays == {"QUOTA_EXCEEDED": 0.1, "RATE_LIMIT": 1}
    assert cfg.effective_retry_delays["QUOTA_EXCEEDED"] == 0.1


def test_queue_config_refuses_an_unregistered_type() -> None:
    with pytest.raises(ConfigError, match="JUDGE_REJECTION"):
        QueueConfig("q", retry_delays={"JUDGE_REJECTION": 5.0})
    register_error_type("JUDGE_REJECTION", delay=5.0)
    assert QueueConfig("q", retry_delays={"JUDGE_REJECTION": 5.0}).retry_delays


def test_a_type_registered_after_the_delays_were_merged_has_its_default() -> None:
    delays = QueueConfig("q").effective_retry_delays  # what a running worker holds
    register_error_type("QUOTA_EXCEEDED", delay=2.0)
    register_error_rule(QuotaExceeded, "QUOTA_EXCEEDED")
    assert classify_error(QuotaExceeded(), retry_delays=delays).delay == 2.0


def test_a_type_unregistered_while_still_named_by_a_rule() -> None:
    register_error_type("QUOTA_EXCEEDED", delay=2.0, retryable=False)
    register_error_rule(QuotaExceeded, "QUOTA_EXCEEDED")
    unregister_error_type("QUOTA_EXCEEDED")
    c = classify_error(QuotaExceeded())  # classification never raises because of it
    assert (c.error_type, c.retryable, c.delay) == ("QUOTA_EXCEEDED", True, 5)
