"""Unit tests for `jobqueue.retry`: classification, backoff, redaction and `with_retry`."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import math
import random
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, ClassVar

import anthropic
import httpx2
import pydantic
import pytest

from jobqueue import retry
from jobqueue.errors import ConfigError, ErrorType, JobQueueError, RetryAfter, UnrecoverableError
from jobqueue.retry import (
    DEFAULT_RETRY_DELAYS,
    Classification,
    backoff_delay,
    classify_error,
    redact,
    register_error_rule,
    unregister_error_rule,
    with_retry,
)

REQUEST = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")
FAST = {ErrorType.NETWORK_ERROR: 0.001, ErrorType.UNKNOWN: 0.001, ErrorType.RATE_LIMIT: 0.001}


def status_error(
    cls: type[anthropic.APIStatusError],
    status: int,
    *,
    headers: dict[str, str] | None = None,
    body: object = None,
) -> anthropic.APIStatusError:
    """Build an SDK status error the way the SDK does: message, response and decoded body."""
    response = httpx2.Response(status, headers=headers, request=REQUEST)
    return cls(f"Error code: {status} - {body}", response=response, body=body)


def error_body(error_type: str, error_code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": error_type, "message": "something went wrong"}
    if error_code is not None:
        error["details"] = {"error_code": error_code}
    return {"type": "error", "error": error}


@pytest.fixture
def rules() -> Iterator[Callable[..., Callable[[], bool]]]:
    """`register_error_rule`, with every rule it registered removed after the test."""
    handles: list[Callable[[], bool]] = []

    def register(*args: Any, **kwargs: Any) -> Callable[[], bool]:
        handle = register_error_rule(*args, **kwargs)
        handles.append(handle)
        return handle

    yield register
    for handle in handles:
        handle()


# --- module surface --------------------------------------------------------------------------


def test_public_api_is_sorted_and_complete() -> None:
    # isort-style, as ruff's RUF022 wants it: CONSTANTS, then Classes, then functions.
    def key(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2), name

    assert retry.__all__ == sorted(retry.__all__, key=key)
    assert set(retry.__all__) == {
        "Classification",
        "DEFAULT_RETRY_DELAYS",
        "backoff_delay",
        "classify_error",
        "redact",
        "register_error_rule",
        "unregister_error_rule",
        "with_retry",
    }


def test_default_delays_are_the_documented_ones_and_read_only() -> None:
    assert dict(DEFAULT_RETRY_DELAYS) == {
        ErrorType.RATE_LIMIT: 60,
        ErrorType.NETWORK_ERROR: 10,
        ErrorType.JUDGE_REJECTION: 5,
        ErrorType.UNKNOWN: 5,
    }
    with pytest.raises(TypeError):
        DEFAULT_RETRY_DELAYS[ErrorType.UNKNOWN] = 1  # type: ignore[index]


def test_classification_is_frozen_with_slots() -> None:
    c = Classification(ErrorType.UNKNOWN, True, 5.0, "x", False)
    assert not hasattr(c, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.delay = 1.0  # type: ignore[misc]


# --- anthropic SDK exceptions ----------------------------------------------------------------


def test_rate_limit_waits_retry_after_seconds() -> None:
    c = classify_error(status_error(anthropic.RateLimitError, 429, headers={"retry-after": "17"}))
    assert (c.error_type, c.retryable, c.delay, c.exact) == (ErrorType.RATE_LIMIT, True, 17, True)


def test_retry_after_ms_takes_precedence() -> None:
    headers = {"retry-after-ms": "1500", "retry-after": "17"}
    c = classify_error(status_error(anthropic.RateLimitError, 429, headers=headers))
    assert c.delay == pytest.approx(1.5)
    assert c.exact


def test_retry_after_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    c = classify_error(status_error(anthropic.RateLimitError, 429, headers={"retry-after": when}))
    assert 25 <= c.delay <= 30.5
    assert c.exact


def test_retry_after_http_date_in_the_past_means_now() -> None:
    when = format_datetime(datetime.now(UTC) - timedelta(minutes=5), usegmt=True)
    c = classify_error(status_error(anthropic.RateLimitError, 429, headers={"retry-after": when}))
    assert (c.delay, c.exact) == (0, True)


@pytest.mark.parametrize("value", ["soon", "-5", "nan", "inf", ""])
def test_unusable_retry_after_falls_back_to_60s(value: str) -> None:
    c = classify_error(status_error(anthropic.RateLimitError, 429, headers={"retry-after": value}))
    assert (c.error_type, c.delay, c.exact) == (ErrorType.RATE_LIMIT, 60, False)


def test_rate_limit_without_retry_after_uses_the_override() -> None:
    exc = status_error(anthropic.RateLimitError, 429, body=error_body("rate_limit_error"))
    assert classify_error(exc).delay == 60
    c = classify_error(exc, retry_delays={ErrorType.RATE_LIMIT: 0.01})
    assert (c.delay, c.exact) == (0.01, False)


def test_retry_after_beats_the_rate_limit_override() -> None:
    exc = status_error(anthropic.RateLimitError, 429, headers={"retry-after": "3"})
    assert classify_error(exc, retry_delays={"RATE_LIMIT": 0.01}).delay == 3


@pytest.mark.parametrize("code", ["enforced_spend_limit_reached", "contract_spend_limit_reached"])
def test_spend_limit_429_is_a_non_retryable_api_error(code: str) -> None:
    exc = status_error(anthropic.RateLimitError, 429, body=error_body("rate_limit_error", code))
    assert exc.error_code == code
    c = classify_error(exc)
    assert (c.error_type, c.retryable) == (ErrorType.API_ERROR, False)


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (anthropic.EnforcedSpendLimitReachedError, "enforced_spend_limit_reached"),
        (anthropic.ContractSpendLimitReachedError, "contract_spend_limit_reached"),
    ],
)
def test_spend_limit_sdk_classes(cls: type[anthropic.APIStatusError], code: str) -> None:
    exc = status_error(cls, 429, headers={"retry-after": "5"}, body=error_body("x", code))
    c = classify_error(exc)
    assert (c.error_type, c.retryable, c.delay) == (ErrorType.API_ERROR, False, 0)


def test_spend_limit_by_class_name_without_status() -> None:
    class EnforcedSpendLimitReachedError(Exception):
        pass

    c = classify_error(EnforcedSpendLimitReachedError("monthly limit"))
    assert (c.error_type, c.retryable) == (ErrorType.API_ERROR, False)


@pytest.mark.parametrize(
    ("cls", "status"),
    [
        (anthropic.InternalServerError, 500),
        (anthropic.InternalServerError, 502),
        (anthropic.ServiceUnavailableError, 503),
        (anthropic.GatewayTimeoutError, 504),
        (anthropic.OverloadedError, 529),
        (anthropic.RequestTimeoutError, 408),
        (anthropic.ConflictError, 409),
    ],
)
def test_server_errors_are_network_errors(cls: type[anthropic.APIStatusError], status: int) -> None:
    c = classify_error(status_error(cls, status, body=error_body("overloaded_error")))
    assert (c.error_type, c.retryable, c.delay, c.exact) == (
        ErrorType.NETWORK_ERROR,
        True,
        10,
        False,
    )


def test_connection_and_timeout_errors_without_status() -> None:
    for exc in (anthropic.APIConnectionError(request=REQUEST), anthropic.APITimeoutError(REQUEST)):
        c = classify_error(exc)
        assert (c.error_type, c.retryable, c.delay) == (ErrorType.NETWORK_ERROR, True, 10)


@pytest.mark.parametrize(
    ("cls", "status", "error_type"),
    [
        (anthropic.BadRequestError, 400, ErrorType.VALIDATION_ERROR),
        (anthropic.AuthenticationError, 401, ErrorType.API_ERROR),
        (anthropic.PaymentRequiredError, 402, ErrorType.API_ERROR),
        (anthropic.PermissionDeniedError, 403, ErrorType.API_ERROR),
        (anthropic.NotFoundError, 404, ErrorType.VALIDATION_ERROR),
        (anthropic.ContentTooLargeError, 413, ErrorType.VALIDATION_ERROR),
        (anthropic.UnprocessableEntityError, 422, ErrorType.VALIDATION_ERROR),
    ],
)
def test_client_errors_are_not_retried(
    cls: type[anthropic.APIStatusError], status: int, error_type: ErrorType
) -> None:
    c = classify_error(status_error(cls, status, body=error_body("invalid_request_error")))
    assert (c.error_type, c.retryable, c.delay) == (error_type, False, 0)


def test_overloaded_sse_error_after_200_is_a_network_error() -> None:
    body = error_body("overloaded_error")
    exc = status_error(anthropic.APIStatusError, 200, body=body)
    assert exc.status_code == 200
    c = classify_error(exc)
    assert (c.error_type, c.retryable, c.delay) == (ErrorType.NETWORK_ERROR, True, 10)


def test_rate_limit_sse_error_after_200() -> None:
    exc = status_error(anthropic.APIStatusError, 200, body=error_body("rate_limit_error"))
    assert classify_error(exc).error_type is ErrorType.RATE_LIMIT


@pytest.mark.parametrize(
    ("cls", "status", "error_type"),
    [
        (anthropic.OverloadedError, 529, ErrorType.NETWORK_ERROR),
        (anthropic.RateLimitError, 429, ErrorType.RATE_LIMIT),
        (anthropic.InternalServerError, 500, ErrorType.NETWORK_ERROR),
    ],
)
def test_x_should_retry_false_vetoes_but_keeps_the_type(
    cls: type[anthropic.APIStatusError], status: int, error_type: ErrorType
) -> None:
    exc = status_error(cls, status, headers={"x-should-retry": "false", "retry-after": "1"})
    c = classify_error(exc)
    assert (c.error_type, c.retryable) == (error_type, False)
    assert classify_error(status_error(cls, status, headers={"x-should-retry": "true"})).retryable


# --- other exceptions ------------------------------------------------------------------------


def test_pydantic_validation_error() -> None:
    class Model(pydantic.BaseModel):
        n: int

    with pytest.raises(pydantic.ValidationError) as info:
        Model.model_validate({"n": "not a number"})
    c = classify_error(info.value)
    assert (c.error_type, c.retryable) == (ErrorType.VALIDATION_ERROR, False)


@pytest.mark.parametrize(
    "exc",
    [
        TimeoutError("timed out"),
        ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
        ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
        BrokenPipeError(),
        OSError(errno.ENETUNREACH, "Network is unreachable"),
        OSError(errno.EHOSTUNREACH, "No route to host"),
        socket.gaierror(-3, "Temporary failure in name resolution"),
    ],
)
def test_builtin_network_failures(exc: BaseException) -> None:
    c = classify_error(exc)
    assert (c.error_type, c.retryable, c.delay) == (ErrorType.NETWORK_ERROR, True, 10)


def test_network_failures_of_other_libraries_by_class_name() -> None:
    class ReadTimeout(Exception):
        pass

    class ConnectError(Exception):
        pass

    class RemoteProtocolError(Exception):
        pass

    for cls in (ReadTimeout, ConnectError, RemoteProtocolError):
        assert classify_error(cls("boom")).error_type is ErrorType.NETWORK_ERROR


def test_unknown_errors_are_retried_after_5s() -> None:
    for exc in (ValueError("bad"), OSError(errno.ENOENT, "No such file"), KeyError("k")):
        c = classify_error(exc)
        assert (c.error_type, c.retryable, c.delay, c.exact) == (
            ErrorType.UNKNOWN,
            True,
            5,
            False,
        )


def test_rate_limit_in_the_message() -> None:
    c = classify_error(RuntimeError("Upstream said: Rate limit exceeded, slow down"))
    assert (c.error_type, c.retryable, c.delay) == (ErrorType.RATE_LIMIT, True, 60)


def test_duck_typed_http_error_with_plain_dict_headers() -> None:
    class Response:
        status_code = 429
        # A plain dict, so the header must be found case-insensitively.
        headers: ClassVar[dict[str, str]] = {"Retry-After": "7"}

    class HTTPStatusError(Exception):
        response = Response()

    c = classify_error(HTTPStatusError("too many requests"))
    assert (c.error_type, c.delay, c.exact) == (ErrorType.RATE_LIMIT, 7, True)


def test_retry_after_attribute_on_a_429() -> None:
    class Throttled(Exception):
        status_code = 429
        retry_after = 2.5

    c = classify_error(Throttled())
    assert (c.error_type, c.delay, c.exact) == (ErrorType.RATE_LIMIT, 2.5, True)


def test_cancellation_is_not_retried() -> None:
    for exc in (asyncio.CancelledError(), KeyboardInterrupt()):
        c = classify_error(exc)
        assert (c.error_type, c.retryable) == (ErrorType.CANCELLED, False)


def test_cause_is_consulted_when_the_wrapper_says_nothing() -> None:
    class StepFailed(Exception):
        pass

    try:
        try:
            raise status_error(anthropic.OverloadedError, 529)
        except anthropic.APIStatusError as inner:
            raise StepFailed("step 3 failed") from inner
    except StepFailed as exc:
        c = classify_error(exc)
    assert c.error_type is ErrorType.NETWORK_ERROR
    assert c.message.startswith("StepFailed: step 3 failed")


# --- RetryAfter, UnrecoverableError and error_type attributes ---------------------------------


def test_retry_after_exception_has_an_exact_delay() -> None:
    c = classify_error(RetryAfter(2.5))
    assert (c.error_type, c.retryable, c.delay, c.exact) == (ErrorType.UNKNOWN, True, 2.5, True)
    c = classify_error(RetryAfter(30, "quota", error_type=ErrorType.RATE_LIMIT))
    assert (c.error_type, c.delay, c.exact) == (ErrorType.RATE_LIMIT, 30, True)
    assert backoff_delay(c, 3) == 30


@pytest.mark.parametrize("error_type", list(ErrorType))
def test_unrecoverable_error_is_never_retried(error_type: ErrorType) -> None:
    c = classify_error(UnrecoverableError("give up", error_type=error_type))
    assert (c.error_type, c.retryable, c.delay) == (error_type, False, 0)


def test_unrecoverable_default_type() -> None:
    c = classify_error(UnrecoverableError("give up"))
    assert (c.error_type, c.retryable) == (ErrorType.UNKNOWN, False)


def test_error_type_attribute_enum_or_string() -> None:
    class LLMRefusal(Exception):
        error_type = ErrorType.JUDGE_REJECTION

    class LLMQuota(Exception):
        def __init__(self, retry_after: float | None) -> None:
            super().__init__("quota")
            self.error_type = "RATE_LIMIT"
            self.retry_after = retry_after

    c = classify_error(LLMRefusal())
    assert (c.error_type, c.retryable, c.delay, c.exact) == (
        ErrorType.JUDGE_REJECTION,
        True,
        5,
        False,
    )
    c = classify_error(LLMQuota(4.0))
    assert (c.error_type, c.delay, c.exact) == (ErrorType.RATE_LIMIT, 4.0, True)
    c = classify_error(LLMQuota(None))
    assert (c.error_type, c.delay, c.exact) == (ErrorType.RATE_LIMIT, 60, False)


def test_error_type_attribute_that_is_not_an_error_type_is_ignored() -> None:
    class Odd(Exception):
        error_type = "definitely-not-a-type"

    assert classify_error(Odd("x")).error_type is ErrorType.UNKNOWN


def test_non_retryable_types_by_attribute() -> None:
    for error_type in (ErrorType.API_ERROR, ErrorType.VALIDATION_ERROR, ErrorType.CANCELLED):
        exc = JobQueueError("x")
        exc.error_type = error_type  # type: ignore[attr-defined]
        assert not classify_error(exc).retryable


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


# --- backoff_delay ---------------------------------------------------------------------------


def test_backoff_doubles_per_attempt_and_is_capped() -> None:
    c = Classification(ErrorType.NETWORK_ERROR, True, 1.0, "x", False)
    assert [backoff_delay(c, n) for n in range(1, 6)] == [1, 2, 4, 8, 16]
    assert backoff_delay(c, 6, max_delay=20) == 20
    assert backoff_delay(c, 10_000) == 3600  # no float overflow


def test_exact_delays_are_not_multiplied_but_are_capped() -> None:
    c = Classification(ErrorType.RATE_LIMIT, True, 17.0, "x", True)
    assert backoff_delay(c, 1) == backoff_delay(c, 5) == 17
    assert backoff_delay(c, 5, jitter=1.0) == 17
    assert backoff_delay(c, 1, max_delay=10) == 10


def test_jitter_only_adds_within_bounds() -> None:
    c = Classification(ErrorType.UNKNOWN, True, 2.0, "x", False)
    rng = random.Random(1234)
    samples = [backoff_delay(c, 2, jitter=0.5, rng=rng) for _ in range(500)]
    assert all(4.0 <= s <= 6.0 for s in samples)
    assert max(samples) > 5.5
    assert min(samples) < 4.5
    assert backoff_delay(c, 2) == 4.0  # off by default
    assert all(backoff_delay(c, 2, jitter=1.0) <= 8.0 for _ in range(100))
    assert backoff_delay(c, 20, max_delay=100, jitter=1.0) == 100  # never above the cap


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"attempt": 0}, "0"),
        ({"attempt": -1}, "-1"),
        ({"attempt": 1.5}, "1.5"),
        ({"attempt": True}, "True"),
        ({"attempt": 1, "max_delay": -1}, "-1"),
        ({"attempt": 1, "max_delay": math.nan}, "nan"),
        ({"attempt": 1, "jitter": -0.1}, "-0.1"),
        ({"attempt": 1, "jitter": 1.5}, "1.5"),
        ({"attempt": 1, "jitter": math.nan}, "nan"),
    ],
)
def test_backoff_validates_arguments(kwargs: dict[str, Any], bad: str) -> None:
    c = Classification(ErrorType.UNKNOWN, True, 1.0, "x", False)
    with pytest.raises(ConfigError, match=bad):
        backoff_delay(c, **kwargs)


# --- messages and redaction ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:pw@h", "redis://:***@h"),
        ("redis://default:s3cr3t@redis.local:6379/0", "redis://default:***@redis.local:6379/0"),
        ("postgresql://app:p@ss@db/x", "postgresql://app:***@db/x"),
        ("https://ghp_token123@github.com/o/r", "https://***@github.com/o/r"),
        ("key sk-ant-api03-AbC_dEf-123456 used", "key sk-*** used"),
        ("Authorization: Bearer eyJhbGciOi.payload.sig", "Authorization: Bearer ***"),
        ("api_key=abcdef123 and password: hunter2", "api_key=*** and password: ***"),
        ("{'x-api-key': 'abc123'}", "{'x-api-key': '***'}"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected


def test_redact_leaves_ordinary_text_alone() -> None:
    text = "ask-me about sk-learn, https://example.com/p?q=a@b max_tokens=5 input_tokens: 3"
    assert redact(text) == text


def test_message_is_one_redacted_truncated_line() -> None:
    canaries = ["CANARYpw4242", "sk-ant-api03-CANARYkey0000", "CANARYbearer99"]
    exc = RuntimeError(
        f"connect redis://:{canaries[0]}@cache:6379 failed\n"
        f"key={canaries[1]}\r\nheaders: Authorization: Bearer {canaries[2]}\n" + "x" * 5000
    )
    c = classify_error(exc)
    assert c.message.startswith("RuntimeError: connect redis://:***@cache:6379 failed key=")
    assert "\n" not in c.message
    assert "\r" not in c.message
    assert len(c.message) == 1000
    assert not any(canary in c.message for canary in canaries)
    assert "CANARY" not in c.message


def test_message_of_an_sdk_error_hides_the_key() -> None:
    exc = status_error(
        anthropic.AuthenticationError, 401, body={"error": {"message": "bad key sk-ant-CANARY123"}}
    )
    c = classify_error(exc)
    assert "CANARY" not in c.message
    assert c.message.startswith("AuthenticationError: Error code: 401")


def test_message_without_text_is_the_class_name() -> None:
    assert classify_error(TimeoutError()).message == "TimeoutError"


# --- with_retry ------------------------------------------------------------------------------


class Flaky:
    """Fails with the given exceptions, in order, then returns `result`."""

    def __init__(self, *failures: BaseException, result: str = "ok") -> None:
        self.failures = list(failures)
        self.calls = 0
        self.result = result

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.result


async def test_succeeds_after_failures() -> None:
    fn = Flaky(ConnectionResetError(), TimeoutError(), result="done")
    result: str = await with_retry(fn, max_attempts=3, retry_delays=FAST)
    assert result == "done"
    assert fn.calls == 3


async def test_on_retry_gets_each_failed_attempt_and_its_delay() -> None:
    first, second = ConnectionResetError("a"), ValueError("b")
    seen: list[tuple[BaseException, int, float]] = []
    fn = Flaky(first, second)
    await with_retry(fn, max_attempts=5, retry_delays=FAST, on_retry=lambda *a: seen.append(a))
    assert seen == [(first, 1, 0.001), (second, 2, 0.002)]


async def test_async_on_retry_is_awaited() -> None:
    attempts: list[int] = []

    async def on_retry(exc: Exception, attempt: int, delay: float) -> None:
        await asyncio.sleep(0)
        attempts.append(attempt)

    await with_retry(Flaky(TimeoutError(), TimeoutError()), retry_delays=FAST, on_retry=on_retry)
    assert attempts == [1, 2]


async def test_non_retryable_raises_at_once() -> None:
    exc = status_error(anthropic.BadRequestError, 400)
    fn = Flaky(exc)
    calls: list[int] = []
    with pytest.raises(anthropic.BadRequestError) as info:
        await with_retry(fn, max_attempts=5, on_retry=lambda e, n, d: calls.append(n))
    assert info.value is exc
    assert fn.calls == 1
    assert calls == []


async def test_unrecoverable_raises_at_once() -> None:
    fn = Flaky(UnrecoverableError("no", error_type=ErrorType.NETWORK_ERROR))
    with pytest.raises(UnrecoverableError):
        await with_retry(fn, max_attempts=5, retry_delays=FAST)
    assert fn.calls == 1


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    errors = [TimeoutError("1"), TimeoutError("2"), TimeoutError("3"), TimeoutError("4")]
    fn = Flaky(*errors)
    seen: list[int] = []
    with pytest.raises(TimeoutError) as info:
        await with_retry(
            fn, max_attempts=3, retry_delays=FAST, on_retry=lambda e, n, d: seen.append(n)
        )
    assert info.value is errors[2]
    assert fn.calls == 3
    assert seen == [1, 2]


async def test_single_attempt_does_not_retry() -> None:
    fn = Flaky(TimeoutError())
    with pytest.raises(TimeoutError):
        await with_retry(fn, max_attempts=1)
    assert fn.calls == 1


async def test_retry_after_delay_is_honoured_exactly() -> None:
    delays: list[float] = []
    fn = Flaky(RetryAfter(0.01), RetryAfter(0.01))
    await with_retry(fn, on_retry=lambda e, n, d: delays.append(d))
    assert delays == [0.01, 0.01]


async def test_max_delay_caps_the_sleep() -> None:
    delays: list[float] = []
    fn = Flaky(RetryAfter(3600, error_type=ErrorType.RATE_LIMIT))
    await with_retry(fn, max_delay=0.001, on_retry=lambda e, n, d: delays.append(d))
    assert delays == [0.001]


async def test_cancellation_propagates_without_retry() -> None:
    fn = Flaky(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await with_retry(fn, max_attempts=3, retry_delays=FAST)
    assert fn.calls == 1


async def test_logs_the_context_and_a_redacted_message(caplog: pytest.LogCaptureFixture) -> None:
    fn = Flaky(ConnectionError("redis://:CANARYpw@cache refused"))
    with caplog.at_level(logging.WARNING, logger="jobqueue.retry"):
        await with_retry(fn, retry_delays=FAST, context="fetch AAPL quotes")
    [record] = [r for r in caplog.records if r.name == "jobqueue.retry"]
    assert "fetch AAPL quotes" in record.getMessage()
    assert "attempt 1/3" in record.getMessage()
    assert "CANARY" not in record.getMessage()


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"max_attempts": 0}, "0"),
        ({"max_attempts": 2.0}, "2.0"),
        ({"jitter": 2}, "2"),
        ({"max_delay": -5}, "-5"),
        ({"retry_delays": {"NOPE": 1}}, "NOPE"),
    ],
)
async def test_with_retry_validates_before_calling(kwargs: dict[str, Any], bad: str) -> None:
    fn = Flaky()
    with pytest.raises(ConfigError, match=bad):
        await with_retry(fn, **kwargs)
    assert fn.calls == 0
