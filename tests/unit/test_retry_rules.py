"""Unit tests for `jobqueue.retry`: application rules (`register_error_rule`), fixed and computed,
and `retry_delays` overrides."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import anthropic
import pytest
from retry_helpers import status_error

from jobqueue.errors import ConfigError, ErrorType, UnrecoverableError
from jobqueue.retry import (
    ErrorVerdict,
    classify_error,
    register_error_rule,
    unregister_error_rule,
)

Rules = Callable[..., Callable[[], bool]]

# Every test here uses the application's own JUDGE_REJECTION type.
pytestmark = pytest.mark.usefixtures("judge_rejection")

# --- registered rules ------------------------------------------------------------------------


class JudgeRejection(Exception):
    pass


def test_rule_by_class_matches_subclasses(rules: Callable[..., Callable[[], bool]]) -> None:
    class StrictRejection(JudgeRejection):
        pass

    rules(JudgeRejection, "JUDGE_REJECTION")
    c = classify_error(StrictRejection("score 2/10"))
    assert (c.error_type, c.retryable, c.delay) == ("JUDGE_REJECTION", True, 5)
    assert type(c.error_type) is str  # an application's type is a plain str


def test_rule_by_predicate(rules: Callable[..., Callable[[], bool]]) -> None:
    rules(lambda e: "judge" in str(e), "JUDGE_REJECTION", delay=0.5)
    c = classify_error(RuntimeError("the judge said no"))
    assert (c.error_type, c.delay, c.exact) == ("JUDGE_REJECTION", 0.5, False)
    assert classify_error(RuntimeError("other")).error_type is ErrorType.UNKNOWN


def test_later_rules_win(rules: Callable[..., Callable[[], bool]]) -> None:
    rules(JudgeRejection, ErrorType.UNKNOWN)
    rules(JudgeRejection, "JUDGE_REJECTION")
    assert classify_error(JudgeRejection()).error_type == "JUDGE_REJECTION"


def test_rules_win_over_the_builtin_table(rules: Callable[..., Callable[[], bool]]) -> None:
    rules(anthropic.NotFoundError, ErrorType.NETWORK_ERROR)
    rules(TimeoutError, ErrorType.VALIDATION_ERROR)
    c = classify_error(status_error(anthropic.NotFoundError, 404))
    assert (c.error_type, c.retryable, c.delay) == (ErrorType.NETWORK_ERROR, True, 10)
    assert not classify_error(TimeoutError()).retryable


def test_rule_retryable_and_delay_overrides(rules: Callable[..., Callable[[], bool]]) -> None:
    rules(JudgeRejection, "JUDGE_REJECTION", retryable=False)
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
    handle = register_error_rule(JudgeRejection, "JUDGE_REJECTION")
    try:
        assert classify_error(JudgeRejection()).error_type == "JUDGE_REJECTION"
    finally:
        assert handle() is True
    assert handle() is False
    assert classify_error(JudgeRejection()).error_type is ErrorType.UNKNOWN

    def predicate(e: BaseException) -> bool:
        return isinstance(e, JudgeRejection)

    register_error_rule(predicate, "JUDGE_REJECTION")
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
        ((KeyError,), {}, "neither"),
        ((KeyError, ErrorType.UNKNOWN), {"classify": lambda e: None}, "UNKNOWN"),
        ((KeyError,), {"classify": lambda e: None, "delay": 1}, "delay=1"),
        ((KeyError,), {"classify": "fn"}, "fn"),
    ],
)
def test_bad_rules_are_refused(args: tuple[Any, ...], kwargs: dict[str, Any], bad: str) -> None:
    with pytest.raises(ConfigError, match=bad):
        register_error_rule(*args, **kwargs)


# --- computed rules ---------------------------------------------------------------------------


class SDKError(Exception):
    def __init__(self, code: str, wait: float | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.wait = wait


def sdk_verdict(exc: BaseException) -> ErrorVerdict | None:
    assert isinstance(exc, SDKError)
    if exc.code == "busy":
        return ErrorVerdict(ErrorType.NETWORK_ERROR, retry_after=exc.wait)
    if exc.code == "quota":
        return ErrorVerdict("rate_limit", delay=exc.wait)
    if exc.code == "judge":
        return ErrorVerdict("JUDGE_REJECTION", retryable=False)
    return None


def test_a_computed_rule_decides_type_retryability_and_delay(rules: Rules) -> None:
    rules(SDKError, classify=sdk_verdict)
    c = classify_error(SDKError("busy", 2.5))
    assert (c.error_type, c.retryable, c.delay, c.exact) == (
        ErrorType.NETWORK_ERROR,
        True,
        2.5,
        True,
    )
    c = classify_error(SDKError("busy"))  # no retry_after: the queue's delay for the type
    assert (c.error_type, c.delay, c.exact) == (ErrorType.NETWORK_ERROR, 10, False)
    c = classify_error(SDKError("quota", 0.5), retry_delays={"RATE_LIMIT": 9})
    assert (c.error_type, c.delay, c.exact) == (ErrorType.RATE_LIMIT, 0.5, False)
    c = classify_error(SDKError("judge"))
    assert (c.error_type, c.retryable, c.delay) == ("JUDGE_REJECTION", False, 0)


def test_a_computed_rule_without_an_opinion_falls_through(rules: Rules) -> None:
    rules(SDKError, ErrorType.API_ERROR)
    rules(SDKError, classify=sdk_verdict)
    assert classify_error(SDKError("other")).error_type is ErrorType.API_ERROR
    assert classify_error(SDKError("busy")).error_type is ErrorType.NETWORK_ERROR


def test_a_computed_verdict_ignores_retry_after_hints(rules: Rules) -> None:
    class Hinted(Exception):
        retry_after = 42.0

    rules(Hinted, classify=lambda e: ErrorVerdict(ErrorType.NETWORK_ERROR))
    c = classify_error(Hinted())
    assert (c.delay, c.exact) == (10, False)
    # whereas a fixed rule without a delay takes the hint
    rules(Hinted, ErrorType.NETWORK_ERROR)
    assert (classify_error(Hinted()).delay, classify_error(Hinted()).exact) == (42, True)


def test_a_computed_rule_on_the_cause_of_a_wrapper(rules: Rules) -> None:
    rules(SDKError, classify=sdk_verdict)
    try:
        try:
            raise SDKError("busy", 1.0)
        except SDKError as inner:
            raise RuntimeError("step failed") from inner
    except RuntimeError as exc:
        c = classify_error(exc)
    assert (c.error_type, c.delay, c.exact) == (ErrorType.NETWORK_ERROR, 1.0, True)


def test_a_computed_rule_cannot_make_unrecoverable_retryable(rules: Rules) -> None:
    rules(UnrecoverableError, classify=lambda e: ErrorVerdict("NETWORK_ERROR", retryable=True))
    c = classify_error(UnrecoverableError("stop"))
    assert (c.error_type, c.retryable) == (ErrorType.NETWORK_ERROR, False)


@pytest.mark.parametrize(
    "classify",
    [
        lambda e: 1 / 0,  # raises
        lambda e: ErrorVerdict("NOPE"),  # raises ConfigError: an unknown type
        lambda e: ("NETWORK_ERROR", True),  # not a verdict
    ],
    ids=["raises", "bad-verdict", "not-a-verdict"],
)
def test_a_broken_classifier_has_no_opinion(rules: Rules, classify: Any) -> None:
    rules(TimeoutError, classify=classify)
    assert classify_error(TimeoutError()).error_type is ErrorType.NETWORK_ERROR


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"error_type": "NOPE"}, "NOPE"),
        ({"error_type": "UNKNOWN", "retryable": 1}, "retryable"),
        ({"error_type": "UNKNOWN", "delay": -1}, "-1"),
        ({"error_type": "UNKNOWN", "retry_after": math.nan}, "nan"),
        ({"error_type": "UNKNOWN", "delay": 1, "retry_after": 2}, "not both"),
    ],
)
def test_bad_verdicts_are_refused(kwargs: dict[str, Any], bad: str) -> None:
    with pytest.raises(ConfigError, match=bad):
        ErrorVerdict(**kwargs)


def test_a_verdict_keeps_the_canonical_type() -> None:
    assert ErrorVerdict("network_error").error_type is ErrorType.NETWORK_ERROR
    assert ErrorVerdict("judge_rejection").error_type == "JUDGE_REJECTION"


# --- retry_delays ----------------------------------------------------------------------------


def test_retry_delays_override_per_type() -> None:  # JUDGE_REJECTION is registered
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
