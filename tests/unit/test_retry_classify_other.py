"""Unit tests for `jobqueue.retry`: classification of other exceptions, and of `RetryAfter`, `UnrecoverableError` and `error_type` attributes."""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import ClassVar

import anthropic
import pydantic
import pytest
from retry_helpers import status_error

from jobqueue.errors import ErrorType, JobQueueError, RetryAfter, UnrecoverableError
from jobqueue.retry import (
    backoff_delay,
    classify_error,
)

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


def test_the_message_is_not_parsed_for_a_type() -> None:
    # Wording is no contract (and a RATE_LIMIT holds the whole queue): a rule can match it.
    c = classify_error(RuntimeError("Upstream said: Rate limit exceeded, slow down"))
    assert (c.error_type, c.retryable, c.delay) == (ErrorType.UNKNOWN, True, 5)


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


def test_error_type_attribute_enum_or_string(judge_rejection: str) -> None:
    class LLMRefusal(Exception):
        error_type = "judge_rejection"  # case-insensitive

    class LLMQuota(Exception):
        def __init__(self, retry_after: float | None) -> None:
            super().__init__("quota")
            self.error_type = "RATE_LIMIT"
            self.retry_after = retry_after

    c = classify_error(LLMRefusal())
    assert (c.error_type, c.retryable, c.delay, c.exact) == ("JUDGE_REJECTION", True, 5, False)
    c = classify_error(LLMQuota(4.0))
    assert (c.error_type, c.delay, c.exact) == (ErrorType.RATE_LIMIT, 4.0, True)
    c = classify_error(LLMQuota(None))
    assert (c.error_type, c.delay, c.exact) == (ErrorType.RATE_LIMIT, 60, False)


def test_error_type_attribute_that_is_not_an_error_type_is_ignored() -> None:
    class Odd(Exception):
        error_type = "definitely-not-a-type"

    assert classify_error(Odd("x")).error_type is ErrorType.UNKNOWN


def test_retryable_attribute_overrides_the_type_default() -> None:
    class Declared(Exception):
        def __init__(self, error_type: str, retryable: object) -> None:
            super().__init__("x")
            self.error_type = error_type
            self.retryable = retryable

    assert not classify_error(Declared("NETWORK_ERROR", False)).retryable
    c = classify_error(Declared("VALIDATION_ERROR", True))
    assert (c.error_type, c.retryable, c.delay) == (ErrorType.VALIDATION_ERROR, True, 5)
    assert classify_error(Declared("UNKNOWN", "no")).retryable  # only a bool counts


def test_an_unrecoverable_error_with_an_unknown_type_is_unknown() -> None:
    c = classify_error(UnrecoverableError("x", error_type="NO_SUCH_TYPE"))
    assert (c.error_type, c.retryable) == (ErrorType.UNKNOWN, False)


def test_non_retryable_types_by_attribute() -> None:
    for error_type in (ErrorType.API_ERROR, ErrorType.VALIDATION_ERROR, ErrorType.CANCELLED):
        exc = JobQueueError("x")
        exc.error_type = error_type  # type: ignore[attr-defined]
        assert not classify_error(exc).retryable
