"""Unit tests for `jobqueue.retry`: the engine alone on the anthropic SDK's exceptions (by status,
headers and class names, as any HTTP SDK's), and the package's surface."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import anthropic
import pytest
from retry_helpers import REQUEST, error_body, status_error

from jobqueue import retry
from jobqueue.errors import ErrorType
from jobqueue.retry import (
    DEFAULT_RETRY_DELAYS,
    Classification,
    classify_error,
)

# --- module surface --------------------------------------------------------------------------


def test_public_api_is_sorted_and_complete() -> None:
    # isort-style, as ruff's RUF022 wants it: CONSTANTS, then Classes, then functions.
    def key(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2), name

    assert retry.__all__ == sorted(retry.__all__, key=key)
    assert set(retry.__all__) == {
        "Classification",
        "DEFAULT_RETRY_DELAYS",
        "ErrorClassifier",
        "ErrorMatch",
        "ErrorTypeInfo",
        "ErrorVerdict",
        "RetryDelays",
        "backoff_delay",
        "check_error_type",
        "classify_error",
        "default_retry_delays",
        "error_type_info",
        "error_types",
        "register_error_rule",
        "register_error_type",
        "retry_after_seconds",
        "unregister_error_rule",
        "unregister_error_type",
        "with_retry",
    }


def test_each_module_of_the_package_stays_small() -> None:
    for path in Path(retry.__file__).parent.glob("*.py"):
        assert len(path.read_text().splitlines()) < 300, path.name


def test_default_delays_are_the_documented_ones_and_read_only() -> None:
    assert dict(DEFAULT_RETRY_DELAYS) == {
        ErrorType.RATE_LIMIT: 60,
        ErrorType.NETWORK_ERROR: 10,
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


# --- what the engine does not know (the pipeline's table, registered by `pipeline.ai`, does) ---


def test_the_engine_alone_knows_no_provider_specifics() -> None:
    # a spend limit is an HTTP 429 like any other to the engine
    code = "enforced_spend_limit_reached"
    exc = status_error(anthropic.RateLimitError, 429, body=error_body("rate_limit_error", code))
    assert classify_error(exc).error_type is ErrorType.RATE_LIMIT
    # nor is an SDK class special by its name
    spend = status_error(anthropic.EnforcedSpendLimitReachedError, 429)
    assert classify_error(spend).error_type is ErrorType.RATE_LIMIT
    # 499 is an unusual 4xx: the request is taken to be wrong
    c = classify_error(status_error(anthropic.APIStatusError, 499))
    assert (c.error_type, c.retryable) == (ErrorType.VALIDATION_ERROR, False)
    # an SSE error event after a 200 says what went wrong only in its body
    sse = status_error(anthropic.APIStatusError, 200, body=error_body("overloaded_error"))
    assert classify_error(sse).error_type is ErrorType.UNKNOWN
    # `x-should-retry` is not a standard header
    headers = {"x-should-retry": "false"}
    assert classify_error(status_error(anthropic.OverloadedError, 529, headers=headers)).retryable


def test_retry_after_is_honoured_on_any_retried_status() -> None:
    exc = status_error(anthropic.OverloadedError, 529, headers={"retry-after": "3"})
    c = classify_error(exc)
    assert (c.error_type, c.retryable, c.delay, c.exact) == (ErrorType.NETWORK_ERROR, True, 3, True)
    # a status that is not retried ignores it
    exc = status_error(anthropic.BadRequestError, 400, headers={"retry-after": "3"})
    assert (classify_error(exc).retryable, classify_error(exc).delay) == (False, 0)
