"""`classify_sdk_error` and `parse_retry_after` on hand-built SDK exceptions (no sockets)."""

from __future__ import annotations

import email.utils
import pickle
import time
from typing import Any

import anthropic
import httpx2
import pydantic
import pytest

from jobqueue.errors import ErrorType
from pipeline.ai import LLMError, classify_sdk_error, parse_retry_after

E = ErrorType
REQUEST = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")


def status_error(
    cls: type[anthropic.APIStatusError],
    status: int,
    err_type: str,
    *,
    headers: dict[str, str] | None = None,
    error_code: str | None = None,
    message: str = "boom",
) -> anthropic.APIStatusError:
    error: dict[str, Any] = {"type": err_type, "message": message}
    if error_code:
        error["details"] = {"error_code": error_code}
    body = {"type": "error", "error": error}
    response = httpx2.Response(
        status, headers={"request-id": "req_1", **(headers or {})}, json=body, request=REQUEST
    )
    return cls(f"Error code: {status} - {body}", response=response, body=body)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "17"}, 17.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "17"}, 0.25),
        ({"retry-after-ms": "junk", "retry-after": "17"}, 17.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-5"}, 0.0),
        ({"retry-after": email.utils.formatdate(time.time() - 60, usegmt=True)}, 0.0),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(httpx2.Headers(headers)) == expected


def test_parse_retry_after_http_date_in_future() -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    value = parse_retry_after(httpx2.Headers({"Retry-After": when}))
    assert value is not None and 115 < value <= 121
    assert parse_retry_after(None) is None


def test_rate_limit_keeps_retry_after() -> None:
    err = classify_sdk_error(
        status_error(
            anthropic.RateLimitError, 429, "rate_limit_error", headers={"retry-after": "30"}
        )
    )
    assert (err.error_type, err.retry_after, err.retryable) == (E.RATE_LIMIT, 30.0, True)
    assert err.request_id == "req_1"


@pytest.mark.parametrize("code", ["enforced_spend_limit_reached", "contract_spend_limit_reached"])
def test_spend_limit_by_error_code_on_plain_rate_limit_error(code: str) -> None:
    err = classify_sdk_error(
        status_error(
            anthropic.RateLimitError,
            429,
            "rate_limit_error",
            error_code=code,
            headers={"retry-after": "60"},
        )
    )
    assert (err.error_type, err.retry_after, err.retryable) == (E.API_ERROR, None, False)
    assert code in str(err)


def test_linked_organization_spend_limit_402() -> None:
    err = classify_sdk_error(
        status_error(
            anthropic.PaymentRequiredError,
            402,
            "billing_error",
            error_code="linked_organization_spend_limit_reached",
        )
    )
    assert (err.error_type, err.retryable) == (E.API_ERROR, False)


@pytest.mark.parametrize(
    ("status", "header", "expected_type", "retryable"),
    [
        (500, "false", E.API_ERROR, False),
        (429, "false", E.API_ERROR, False),
        (500, "true", E.NETWORK_ERROR, True),
        (400, "true", E.VALIDATION_ERROR, False),
    ],
)
def test_x_should_retry(
    status: int, header: str, expected_type: ErrorType, retryable: bool
) -> None:
    err = classify_sdk_error(
        status_error(
            anthropic.APIStatusError,
            status,
            "api_error",
            headers={"x-should-retry": header, "retry-after": "4"},
        )
    )
    assert (err.error_type, err.retryable) == (expected_type, retryable)
    if not retryable:
        assert err.retry_after is None


@pytest.mark.parametrize(
    ("err_type", "expected"),
    [
        ("overloaded_error", E.NETWORK_ERROR),
        ("api_error", E.NETWORK_ERROR),
        ("rate_limit_error", E.RATE_LIMIT),
        ("invalid_request_error", E.VALIDATION_ERROR),
        ("something_new", E.UNKNOWN),
    ],
)
def test_stream_error_after_200_uses_body_type(err_type: str, expected: ErrorType) -> None:
    err = classify_sdk_error(status_error(anthropic.APIStatusError, 200, err_type))
    assert err.error_type is expected
    assert err.status_code == 200


def test_unusual_statuses() -> None:
    assert classify_sdk_error(status_error(anthropic.APIStatusError, 504, "x")).error_type is (
        E.NETWORK_ERROR
    )
    err = classify_sdk_error(status_error(anthropic.APIStatusError, 431, "invalid_request_error"))
    assert (err.error_type, err.retryable) == (E.VALIDATION_ERROR, False)


def test_connection_and_timeout_errors() -> None:
    timeout = classify_sdk_error(anthropic.APITimeoutError(request=REQUEST))
    assert (timeout.error_type, timeout.retryable, timeout.retry_after) == (
        E.NETWORK_ERROR,
        True,
        None,
    )
    try:
        raise anthropic.APIConnectionError(request=REQUEST) from ConnectionResetError("reset")
    except anthropic.APIConnectionError as exc:
        conn = classify_sdk_error(exc)
    assert conn.error_type is E.NETWORK_ERROR
    assert "ConnectionResetError" in str(conn)


def test_pydantic_validation_error_is_retryable_unknown() -> None:
    class M(pydantic.BaseModel):
        a: int

    with pytest.raises(pydantic.ValidationError) as info:
        M.model_validate_json('{"a": "x"}')
    err = classify_sdk_error(info.value)
    assert (err.error_type, err.retryable) == (E.UNKNOWN, True)


def test_other_exceptions() -> None:
    missing_key = classify_sdk_error(
        TypeError('"Could not resolve authentication method. Expected api_key to be set"')
    )
    assert (missing_key.error_type, missing_key.retryable) == (E.API_ERROR, False)
    creds = classify_sdk_error(anthropic.CredentialsError("no profile"))
    assert creds.error_type is E.API_ERROR
    assert classify_sdk_error(TimeoutError()).error_type is E.NETWORK_ERROR
    streaming = classify_sdk_error(ValueError("Streaming is required for operations that ..."))
    assert (streaming.error_type, streaming.retryable) == (E.VALIDATION_ERROR, False)
    other = classify_sdk_error(RuntimeError("weird"))
    assert (other.error_type, other.retryable) == (E.UNKNOWN, True)
    same = LLMError("x", error_type=E.RATE_LIMIT)
    assert classify_sdk_error(same) is same


def test_messages_never_carry_keys() -> None:
    err = classify_sdk_error(
        status_error(
            anthropic.AuthenticationError,
            401,
            "authentication_error",
            message="bad key sk-ant-api03-AbCdEf_123-xyz",
        )
    )
    assert "AbCdEf" not in str(err) and "sk-***" in str(err)
    assert "AbCdEf" not in str(classify_sdk_error(RuntimeError("sk-ant-api03-AbCdEf_123")))


def test_llm_error_attributes_and_pickling() -> None:
    err = LLMError(
        "rate limited sk-secret-key-123",
        error_type=E.RATE_LIMIT,
        retry_after=-3,
        status_code=429,
        request_id="req_9",
    )
    assert err.retry_after == 0.0
    assert err.retryable is True
    assert "secret" not in str(err)
    copy = pickle.loads(pickle.dumps(err))
    assert isinstance(copy, LLMError)
    assert (copy.error_type, copy.retry_after, copy.retryable, copy.status_code) == (
        E.RATE_LIMIT,
        0.0,
        True,
        429,
    )
    assert str(copy) == str(err)
    assert LLMError("x", error_type=E.API_ERROR).retryable is False
    assert LLMError("x", error_type=E.VALIDATION_ERROR).retryable is False
    assert LLMError("x", error_type=E.NETWORK_ERROR).retryable is True
    assert LLMError("x", error_type=E.NETWORK_ERROR, retryable=False).retryable is False
