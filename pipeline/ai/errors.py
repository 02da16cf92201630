"""Map Anthropic SDK exceptions onto `LLMError` and the job queue's `ErrorType`s.

    429 rate_limit_error                       RATE_LIMIT        retry-after-ms / retry-after
    429 spend limit (enforced / contract)      API_ERROR         not retryable (a monthly cap)
    401, 402, 403                              API_ERROR         not retryable
    400, 404, 413, 422, 431                    VALIDATION_ERROR  not retryable
    408, 409, 499, 5xx, 529                    NETWORK_ERROR     retry-after if sent
    connection error, read timeout             NETWORK_ERROR
    SSE `event: error` after HTTP 200          by `error.type` (overloaded_error → NETWORK_ERROR)
    pydantic ValidationError from parse()      UNKNOWN           retryable (bad JSON from the model)
    anything else                              UNKNOWN           retryable

A response carrying `x-should-retry: false` is never retryable: a kind that would otherwise be
retried becomes API_ERROR, so a queue that only reads `error_type` also stops.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import anthropic
import pydantic

from jobqueue.errors import ErrorType
from pipeline.ai.base import LLMError

__all__ = ["SPEND_LIMIT_CODES", "classify_sdk_error", "parse_retry_after"]

SPEND_LIMIT_CODES = frozenset(
    {
        "enforced_spend_limit_reached",
        "contract_spend_limit_reached",
        "linked_organization_spend_limit_reached",
    }
)
"""`error.details.error_code` values that waiting will not clear."""

_SPEND_LIMIT_CLASSES: tuple[type[BaseException], ...] = (
    anthropic.EnforcedSpendLimitReachedError,
    anthropic.ContractSpendLimitReachedError,
)

_TYPE_KINDS: dict[str, ErrorType] = {
    "rate_limit_error": ErrorType.RATE_LIMIT,
    "overloaded_error": ErrorType.NETWORK_ERROR,
    "api_error": ErrorType.NETWORK_ERROR,
    "timeout_error": ErrorType.NETWORK_ERROR,
    "conflict_error": ErrorType.NETWORK_ERROR,
    "authentication_error": ErrorType.API_ERROR,
    "permission_error": ErrorType.API_ERROR,
    "billing_error": ErrorType.API_ERROR,
    "invalid_request_error": ErrorType.VALIDATION_ERROR,
    "not_found_error": ErrorType.VALIDATION_ERROR,
}


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Read the server's requested delay the way the SDK does.

    `retry-after-ms` (milliseconds) wins, then `retry-after` as seconds, then as an HTTP date.

    Args:
        headers: Response headers (case-insensitive mapping), or None.

    Returns:
        Seconds to wait (never negative), or None when the server did not say.
    """
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, float(email.utils.mktime_tz(parsed) - time.time()))


def _status_kind(status: int, err_type: str | None) -> ErrorType:
    if status == 429:
        return ErrorType.RATE_LIMIT
    if status in (401, 402, 403):
        return ErrorType.API_ERROR
    if status in (400, 404, 413, 422, 431):
        return ErrorType.VALIDATION_ERROR
    if status in (408, 409, 499) or status >= 500:
        return ErrorType.NETWORK_ERROR
    # Status 200 (an SSE `event: error` mid-stream) or an unusual 4xx: go by the body's type.
    return _TYPE_KINDS.get(err_type or "", ErrorType.UNKNOWN)


def _classify_status(exc: anthropic.APIStatusError) -> LLMError:
    status = exc.status_code
    headers = exc.response.headers if exc.response is not None else None
    err_type = exc.type
    code = exc.error_code
    kind = _status_kind(status, err_type)
    retry_after = parse_retry_after(headers)
    retryable: bool | None = None
    if code in SPEND_LIMIT_CODES or isinstance(exc, _SPEND_LIMIT_CLASSES):
        kind, retryable, retry_after = ErrorType.API_ERROR, False, None
    if kind not in (ErrorType.RATE_LIMIT, ErrorType.NETWORK_ERROR):
        retry_after = None
    should_retry = headers.get("x-should-retry") if headers is not None else None
    if should_retry == "false" and kind in (
        ErrorType.RATE_LIMIT,
        ErrorType.NETWORK_ERROR,
        ErrorType.UNKNOWN,
    ):
        kind, retryable, retry_after = ErrorType.API_ERROR, False, None
    detail = exc.api_message or exc.message
    parts = [f"HTTP {status}"] + [p for p in (err_type, code) if p]
    return LLMError(
        f"{type(exc).__name__} ({', '.join(parts)}): {detail}",
        error_type=kind,
        retry_after=retry_after,
        retryable=retryable,
        status_code=status,
        request_id=exc.request_id,
    )


def classify_sdk_error(exc: BaseException) -> LLMError:
    """Turn any exception raised by a model call into an `LLMError`.

    Args:
        exc: What the SDK (or response parsing) raised.

    Returns:
        An `LLMError` with `error_type`, `retry_after`, `retryable` and `status_code` set; its
        message never contains an API key. The caller should `raise err from exc`.
    """
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, anthropic.APIStatusError):
        return _classify_status(exc)
    if isinstance(exc, anthropic.APITimeoutError):
        return LLMError(f"request timed out: {exc.message}", error_type=ErrorType.NETWORK_ERROR)
    if isinstance(exc, anthropic.APIConnectionError):
        cause = exc.__cause__
        detail = f"{exc.message} ({type(cause).__name__}: {cause})" if cause else exc.message
        return LLMError(f"connection error: {detail}", error_type=ErrorType.NETWORK_ERROR)
    if isinstance(exc, pydantic.ValidationError):
        return LLMError(
            f"model output did not match {exc.title}: {exc.error_count()} validation error(s): "
            f"{exc.errors(include_url=False, include_input=False)[:3]}",
            error_type=ErrorType.UNKNOWN,
            retryable=True,
        )
    if isinstance(exc, anthropic.APIResponseValidationError):
        return LLMError(
            f"unexpected response shape (HTTP {exc.status_code}): {exc.message}",
            error_type=ErrorType.UNKNOWN,
            status_code=exc.status_code,
        )
    if isinstance(exc, anthropic.CredentialsError) or (
        isinstance(exc, TypeError) and "auth" in str(exc).lower()
    ):
        return LLMError(
            f"credentials problem: {exc}", error_type=ErrorType.API_ERROR, retryable=False
        )
    if isinstance(exc, TimeoutError):
        return LLMError(f"timed out: {exc}", error_type=ErrorType.NETWORK_ERROR)
    if isinstance(exc, ValueError) and "streaming is required" in str(exc).lower():
        return LLMError(str(exc), error_type=ErrorType.VALIDATION_ERROR, retryable=False)
    return LLMError(f"{type(exc).__name__}: {exc}", error_type=ErrorType.UNKNOWN)
