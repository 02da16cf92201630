"""Unit tests for `jobqueue.retry`: application rules (`register_error_rule`) and `retry_delays` overrides."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import anthropic
import pytest
from retry_helpers import status_error

from jobqueue.errors import ConfigError, ErrorType, UnrecoverableError
from jobqueue.retry import (
    classify_error,
    register_error_rule,
    unregister_error_rule,
)

# --- registered rules ------------------------------------------------------------------------


class JudgeRejection(Exception):
    pass


def test_rule_by_class_matches_subclasses(rules: Callable[..., Callable[[], bool]]) -> None:
    class StrictRejection(JudgeRejection):
        pass

    rules(JudgeRejection, ErrorType.JUDGE_REJECTION)
    c = classify_error(StrictRejection("score 2/10"))
    assert (c.error_type, c.retryable, c.delay) == (ErrorType.JUDGE_REJECTION, True, 5)


def test_rule_by_predicate(rules: Callable[..., Callable[[], bool]]) -> None:
    rules(lambda e: "judge" in str(e), "JUDGE_REJECTION", delay=0.5)
    c = classify_error(RuntimeError("the judge said no"))
    assert (c.error_type, c.delay, c.exact) == (ErrorType.JUDGE_REJECTION, 0.5, False)
    assert classify_error(RuntimeError("other")).error_type is ErrorType.UNKNOWN


def test_later_rules_win(rules: Callable[..., Callable[[], bool]]) -> None:
    rules(JudgeRejection, ErrorType.UNKNOWN)
    rules(JudgeRejection, ErrorType.JUDGE_REJECTION)
    assert classify_error(JudgeRejection()).error_type is ErrorType.JUDGE_REJECTION


def test_rules_win_over_the_builtin_table(rules: Callable[..., Callable[[], bool]]) -> None:
    rules(anthropic.NotFoundError, ErrorType.NETWORK_ERROR)
    rules(TimeoutError, ErrorType.VALIDATION_ERROR)
    c = classify_error(status_error(anthropic.NotFoundError, 404))
    assert (c.error_type, c.retryable, c.delay) == (ErrorType.NETWORK_ERROR, True, 10)
    assert not classify_error(TimeoutError()).retryable


def test_rule_retryable_and_delay_overrides(rules: Callable[..., Callable[[], bool]]) -> None:
    rules(JudgeRejection, ErrorType.JUDGE_REJECTION, retryable=False)
    assert not classify_error(JudgeRejection()).retryable
    rules(KeyError, ErrorType.VALIDATION_ERROR, retryable=True, delay=2)
    c = classify_error(KeyError("k"))
    assert (c.error_type, c.retryable, c.delay) == (ErrorType.VALIDATION_ERROR, True, 2)


def test_rule_cannot_make_unrecoverable_retryable(
    rules: Callable[..., Callable[[], bool]],
) -> None:
    rules(UnrecoverableError, ErrorType.NETWORK_ERROR, retryable=True, delay=1)
    c = classify_error(UnrecoverableError("stop"))
    assert (c.error_type, c.retryable) == (ErrorType.NETWORK_ERROR, False)


def test_rule_removal_by_handle_and_by_match() -> None:
    handle = register_error_rule(JudgeRejection, ErrorType.JUDGE_REJECTION)
    try:
        assert classify_error(JudgeRejection()).error_type is ErrorType.JUDGE_REJECTION
    finally:
        assert handle() is True
    assert handle() is False
    assert classify_error(JudgeRejection()).error_type is ErrorType.UNKNOWN

    def predicate(e: BaseException) -> bool:
        return isinstance(e, JudgeRejection)

    register_error_rule(predicate, ErrorType.JUDGE_REJECTION)
    register_error_rule(predicate, ErrorType.API_ERROR)
    assert unregister_error_rule(predicate) is True
    assert unregister_error_rule(predicate) is False
    assert classify_error(JudgeRejection()).error_type is ErrorType.UNKNOWN


def test_a_predicate_that_raises_is_skipped(rules: Callable[..., Callable[[], bool]]) -> None:
    def broken(e: BaseException) -> bool:
        raise RuntimeError("bug in predicate")

    rules(broken, ErrorType.API_ERROR)
    assert classify_error(TimeoutError()).error_type is ErrorType.NETWORK_ERROR


@pytest.mark.parametrize(
    ("args", "kwargs", "bad"),
    [
        ((int, ErrorType.UNKNOWN), {}, "int"),
        (("not callable", ErrorType.UNKNOWN), {}, "not callable"),
        ((KeyError, "NOPE"), {}, "NOPE"),
        ((KeyError, ErrorType.UNKNOWN), {"delay": -1}, "-1"),
        ((KeyError, ErrorType.UNKNOWN), {"retryable": "yes"}, "yes"),
    ],
)
def test_bad_rules_are_refused(args: tuple[Any, ...], kwargs: dict[str, Any], bad: str) -> None:
    with pytest.raises(ConfigError, match=bad):
        register_error_rule(*args, **kwargs)


# --- retry_delays ----------------------------------------------------------------------------


def test_retry_delays_override_per_type() -> None:
    delays = {ErrorType.NETWORK_ERROR: 0.01, "UNKNOWN": 0.02, "JUDGE_REJECTION": 0.03}
    assert classify_error(ConnectionResetError(), retry_delays=delays).delay == 0.01
    assert classify_error(ValueError(), retry_delays=delays).delay == 0.02
    assert classify_error(TimeoutError()).delay == 10  # the defaults are untouched


@pytest.mark.parametrize(
    ("delays", "bad"),
    [({"SOMETHING": 1}, "SOMETHING"), ({"UNKNOWN": -1}, "-1"), ({"UNKNOWN": math.inf}, "inf")],
)
def test_bad_retry_delays_are_refused(delays: dict[str, float], bad: str) -> None:
    with pytest.raises(ConfigError, match=bad):
        classify_error(ValueError(), retry_delays=delays)
