"""The pipeline's one table of Anthropic SDK failures, and the error types it adds to the engine.

    429 rate_limit_error                       RATE_LIMIT        retry-after-ms / retry-after
    spend limit (3 error codes, SDK classes)   API_ERROR         not retryable (a monthly cap)
    401, 402, 403                              API_ERROR         not retryable
    400, 404, 413, 422, 431                    VALIDATION_ERROR  not retryable
    408, 409, 499, 5xx, 529                    NETWORK_ERROR     retry-after if sent
    other status, SSE `event: error` after 200 by `error.type` (overloaded_error → NETWORK_ERROR)
    connection error, read timeout             NETWORK_ERROR
    pydantic ValidationError from parse()      UNKNOWN           retryable (bad JSON from the model)
    missing credentials                        API_ERROR         not retryable
    "streaming is required"                    VALIDATION_ERROR  not retryable
    anything else                              the engine's classification (UNKNOWN, retryable)

A response carrying `x-should-retry: false` is never retryable: a kind that would otherwise be
retried becomes API_ERROR, so a queue that only reads `error_type` also stops.

The table serves twice. `classify_sdk_error` turns what a model call raised into an `LLMError`
(the normal path: `AnthropicLLM` raises nothing else). And, registered with the engine when
`pipeline.ai` is imported, `sdk_verdict` classifies a raw SDK exception that escaped a handler
unwrapped by the same rows. Exceptions of other libraries (a pydantic `ValidationError`, a
`TypeError`, a `ValueError`) follow the SDK's rows only when raised inside the SDK, so a job
payload that fails validation stays VALIDATION_ERROR and is not retried.

`JUDGE_REJECTION` (the judge sent an analysis back; retried after 5 s) is registered here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import anthropic
import pydantic

from jobqueue import (
    ErrorType,
    ErrorVerdict,
    classify_error,
    register_error_rule,
    register_error_type,
    retry_after_seconds,
)
from pipeline.ai.base import LLMError

__all__ = [
    "BODY_TYPE_KINDS",
    "JUDGE_REJECTION",
    "SPEND_LIMIT_CLASSES",
    "SPEND_LIMIT_CODES",
    "STATUS_KINDS",
    "classify_sdk_error",
    "sdk_verdict",
]

_E = ErrorType

JUDGE_REJECTION: Final = register_error_type("JUDGE_REJECTION", delay=5.0, retryable=True)
"""The judge rejected an analysis: retried after 5 s (scaled by `PIPELINE_RETRY_SCALE`)."""

SPEND_LIMIT_CODES: Final = frozenset(
    {
        "enforced_spend_limit_reached",
        "contract_spend_limit_reached",
        "linked_organization_spend_limit_reached",
    }
)
"""`error.details.error_code` values that waiting will not clear."""

SPEND_LIMIT_CLASSES: Final[tuple[type[anthropic.APIStatusError], ...]] = tuple(
    cls
    for name in (
        "EnforcedSpendLimitReachedError",
        "ContractSpendLimitReachedError",
        "LinkedOrganizationSpendLimitReachedError",
    )
    # Older 2.x SDKs lack some of them; their error codes are matched all the same.
    if isinstance(cls := getattr(anthropic, name, None), type)
)
"""The SDK's classes for those codes."""

STATUS_KINDS: Final[Mapping[int, str]] = {
    429: _E.RATE_LIMIT,
    **dict.fromkeys((401, 402, 403), _E.API_ERROR),
    **dict.fromkeys((400, 404, 413, 422, 431), _E.VALIDATION_ERROR),
    **dict.fromkeys((408, 409, 499), _E.NETWORK_ERROR),
}
"""Error type per HTTP status; any other 5xx is NETWORK_ERROR, anything else goes by body."""

BODY_TYPE_KINDS: Final[Mapping[str, str]] = {
    "rate_limit_error": _E.RATE_LIMIT,
    **dict.fromkeys(
        ("overloaded_error", "api_error", "timeout_error", "conflict_error"), _E.NETWORK_ERROR
    ),
    **dict.fromkeys(("authentication_error", "permission_error", "billing_error"), _E.API_ERROR),
    **dict.fromkeys(("invalid_request_error", "not_found_error"), _E.VALIDATION_ERROR),
}
"""Error type per body `error.type`, for a 200 (an SSE error event) or an unusual status."""

_WAITS_FOR_RETRY_AFTER: Final = frozenset({_E.RATE_LIMIT, _E.NETWORK_ERROR})
_VETOED_BY_SHOULD_RETRY: Final = frozenset({_E.RATE_LIMIT, _E.NETWORK_ERROR, _E.UNKNOWN})


def sdk_verdict(exc: BaseException, *, raised_by_call: bool = False) -> ErrorVerdict | None:
    """Classify an exception by the table, or None when no row of it applies.

    Args:
        exc: An exception.
        raised_by_call: `exc` is known to come out of a model call; otherwise the rows for other
            libraries' exceptions apply only when it was raised inside the SDK.

    Returns:
        The verdict for the engine (type, retryability, exact Retry-After), or None.
    """
    if isinstance(exc, anthropic.APIStatusError):
        return _status_verdict(exc)
    if isinstance(exc, anthropic.APIConnectionError):  # APITimeoutError too
        return ErrorVerdict(_E.NETWORK_ERROR)
    if isinstance(exc, anthropic.APIResponseValidationError):
        return ErrorVerdict(_E.UNKNOWN)
    if isinstance(exc, anthropic.CredentialsError):
        return ErrorVerdict(_E.API_ERROR, retryable=False)
    if not (raised_by_call or _raised_in_sdk(exc)):
        return None
    if isinstance(exc, pydantic.ValidationError):
        return ErrorVerdict(_E.UNKNOWN, retryable=True)
    if isinstance(exc, TypeError) and "auth" in str(exc).lower():
        return ErrorVerdict(_E.API_ERROR, retryable=False)
    if isinstance(exc, ValueError) and "streaming is required" in str(exc).lower():
        return ErrorVerdict(_E.VALIDATION_ERROR, retryable=False)
    return None


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
    verdict = sdk_verdict(exc, raised_by_call=True)
    if verdict is None:
        c = classify_error(exc)
        retry_after = c.delay if c.exact else None
        return LLMError(
            c.message, error_type=c.error_type, retry_after=retry_after, retryable=c.retryable
        )
    status = getattr(exc, "status_code", None)  # the SDK's status and response-shape errors
    return LLMError(
        _message(exc),
        error_type=verdict.error_type,
        retry_after=verdict.retry_after,
        retryable=verdict.retryable,
        status_code=status if isinstance(status, int) else None,
        request_id=getattr(exc, "request_id", None),
    )


def _status_verdict(exc: anthropic.APIStatusError) -> ErrorVerdict:
    status = exc.status_code
    headers = exc.response.headers if exc.response is not None else None
    kind = STATUS_KINDS.get(status) or (
        _E.NETWORK_ERROR if status >= 500 else BODY_TYPE_KINDS.get(exc.type or "", _E.UNKNOWN)
    )
    if exc.error_code in SPEND_LIMIT_CODES or isinstance(exc, SPEND_LIMIT_CLASSES):
        return ErrorVerdict(_E.API_ERROR, retryable=False)
    should_retry = headers.get("x-should-retry") if headers is not None else None
    if should_retry == "false" and kind in _VETOED_BY_SHOULD_RETRY:
        return ErrorVerdict(_E.API_ERROR, retryable=False)
    retry_after = retry_after_seconds(headers) if kind in _WAITS_FOR_RETRY_AFTER else None
    return ErrorVerdict(kind, retry_after=retry_after)


def _message(exc: BaseException) -> str:
    if isinstance(exc, anthropic.APIStatusError):
        parts = [f"HTTP {exc.status_code}"] + [p for p in (exc.type, exc.error_code) if p]
        detail = exc.api_message or exc.message
        return f"{type(exc).__name__} ({', '.join(parts)}): {detail}"
    if isinstance(exc, anthropic.APITimeoutError):
        return f"request timed out: {exc.message}"
    if isinstance(exc, anthropic.APIConnectionError):
        cause = exc.__cause__
        detail = f"{exc.message} ({type(cause).__name__}: {cause})" if cause else exc.message
        return f"connection error: {detail}"
    if isinstance(exc, anthropic.APIResponseValidationError):
        return f"unexpected response shape (HTTP {exc.status_code}): {exc.message}"
    if isinstance(exc, pydantic.ValidationError):
        return (
            f"model output did not match {exc.title}: {exc.error_count()} validation error(s): "
            f"{exc.errors(include_url=False, include_input=False)[:3]}"
        )
    if isinstance(exc, anthropic.CredentialsError | TypeError):
        return f"credentials problem: {exc}"
    return str(exc)


def _raised_in_sdk(exc: BaseException) -> bool:
    # The traceback runs from where the exception was caught down to where it was raised.
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__")
        if isinstance(module, str) and (module == "anthropic" or module.startswith("anthropic.")):
            return True
        tb = tb.tb_next
    return False


# Once, at import: a raw SDK exception that escapes a handler is classified by the same table.
register_error_rule(Exception, classify=sdk_verdict)
