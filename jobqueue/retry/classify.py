"""The engine's classification of failures: generic, with no knowledge of any SDK.

First match wins, on the exception and then down its `__cause__` chain:

1. registered rules, newest first (`register_error_rule`: how an application teaches the
   engine its SDK's exceptions);
2. not an `Exception` (cancellation, interrupt): CANCELLED, not retried;
3. `UnrecoverableError`: its `error_type`, not retried;
4. what the exception declares: an `error_type` attribute naming a known type (a `retryable`
   bool and a `retry_after` in seconds are honoured at every step);
5. an HTTP status (`status_code`, `status` or `response.status_code`): 429 RATE_LIMIT;
   401-403 API_ERROR; 408, 409 and 5xx NETWORK_ERROR; other 4xx VALIDATION_ERROR;
6. timeouts and connection failures: builtin classes, errnos, and the class names of httpx,
   aiohttp, redis and the SDKs built on them: NETWORK_ERROR;
7. pydantic `ValidationError`: VALIDATION_ERROR;

else UNKNOWN. A retried failure waits exactly what the exception's `retry_after` or its
response's `retry-after-ms` / `Retry-After` header says (`retry_after_seconds`), else the
base delay of its type (`QueueConfig.retry_delays`, then the type's registered default).
"""

from __future__ import annotations

import errno
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final, TypeAlias

import pydantic

from ..core.redact import redact
from ..errors import ErrorType, UnrecoverableError
from ._values import check_seconds, seconds_or_none
from .rules import rule_verdict
from .types import check_error_type, default_retry_delays, error_type_info

__all__ = [
    "Classification",
    "RetryDelays",
    "classify_error",
    "classify_with",
    "merged_delays",
    "retry_after_seconds",
]

RetryDelays: TypeAlias = (
    Mapping[ErrorType, float] | Mapping[str, float] | Mapping[ErrorType | str, float]
)
"""Base delay in seconds per error type (mapping keys are invariant: each form is listed)."""

_Verdict: TypeAlias = tuple[str, bool, float, bool]  # type, retryable, delay, exact
_E = ErrorType

_STATUS_TYPES: Final[Mapping[int, ErrorType]] = {
    **dict.fromkeys((400, 404, 413, 422), _E.VALIDATION_ERROR),
    **dict.fromkeys((401, 402, 403), _E.API_ERROR),
    **dict.fromkeys((408, 409), _E.NETWORK_ERROR),
    429: _E.RATE_LIMIT,
}
# Connection failures of httpx, aiohttp, redis and the SDKs built on them, matched by name.
_NETWORK_NAME: Final = re.compile(
    r"\w*(Timeout|Connect(ion)?Error|Network|RemoteProtocol|ServerDisconnected)\w*"
    r"|(Read|Write|Close)Error"
)
_NETWORK_ERRNOS: Final = frozenset(
    (errno.ECONNABORTED, errno.ECONNREFUSED, errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT)
) | {errno.EHOSTUNREACH, errno.ENETDOWN, errno.ENETRESET, errno.ENETUNREACH}


@dataclass(frozen=True, slots=True)
class Classification:
    """How a failure is treated.

    Attributes:
        error_type: The kind of failure: a built-in `ErrorType` or a registered type's name.
        retryable: Whether another attempt may succeed.
        delay: Base delay in seconds before the next attempt, before backoff.
        message: One redacted line describing the error, at most 1000 characters.
        exact: The delay came from Retry-After or `RetryAfter` and must not be multiplied.
    """

    error_type: str
    retryable: bool
    delay: float
    message: str
    exact: bool = False


def classify_error(
    exc: BaseException, *, retry_delays: RetryDelays | None = None
) -> Classification:
    """Decide the type of a failure, whether to retry it and the base delay.

    Never raises because of `exc`: a rule that raises is skipped.

    Args:
        exc: The exception that ended an attempt.
        retry_delays: Base delays per type in seconds over the types' defaults (for
            RATE_LIMIT, the delay used when there is no Retry-After).

    Raises:
        ConfigError: `retry_delays` has an unknown type or a bad delay.
    """
    return classify_with(exc, merged_delays(retry_delays))


def merged_delays(overrides: RetryDelays | None) -> dict[str, float]:
    """Every type's default delay with `overrides` applied, checked.

    Raises:
        ConfigError: `overrides` has an unknown type or a bad delay.
    """
    merged = default_retry_delays()
    for key, value in (overrides or {}).items():
        name = check_error_type(key, "retry_delays key")
        merged[name] = check_seconds(value, f"retry_delays[{key!r}]")
    return merged


def classify_with(exc: BaseException, delays: Mapping[str, float]) -> Classification:
    """`classify_error` with delays already merged by `merged_delays`."""
    verdict: _Verdict | None = None
    link: BaseException | None = exc
    seen: set[int] = set()
    # A wrapper raised `from` an SDK error often says nothing itself; its cause does.
    while verdict is None and link is not None and id(link) not in seen:
        seen.add(id(link))
        verdict = _classify_link(link, delays)
        link = link.__cause__
    error_type, retryable, delay, exact = verdict or _settle(exc, _E.UNKNOWN, None, delays)
    # Secrets are masked before truncating, which could cut one beyond recognition.
    text = " ".join(f"{type(exc).__name__}: {_text(exc)}".split()).removesuffix(":")
    return Classification(error_type, retryable, delay, redact(text)[:1000], exact)


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a response asks the client to wait before trying again.

    `retry-after-ms` (milliseconds) wins, then `Retry-After` as seconds, then as an HTTP date
    (a date already past means 0). Names are matched case-insensitively, even in a plain dict.

    Args:
        headers: Response headers, or None.

    Returns:
        Seconds (finite, >= 0), or None when no usable value was sent.
    """
    millis = seconds_or_none(_header(headers, "retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = _header(headers, "retry-after")
    seconds = seconds_or_none(value)
    if value is None or seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _classify_link(exc: BaseException, delays: Mapping[str, float]) -> _Verdict | None:
    found = rule_verdict(exc)
    if found is not None:
        v, hints = found
        return _settle(exc, v.error_type, v.retryable, delays, v.delay, v.retry_after, hints)
    if not isinstance(exc, Exception):
        return _E.CANCELLED, False, 0.0, False
    declared = error_type_info(_attr(exc, "error_type"))
    if isinstance(exc, UnrecoverableError):
        return (declared.name if declared else _E.UNKNOWN), False, 0.0, False
    error_type = declared.name if declared else _generic_type(exc)
    return None if error_type is None else _settle(exc, error_type, None, delays)


def _generic_type(exc: Exception) -> ErrorType | None:
    status = _status(exc)
    if status is not None and status >= 400:
        # Other 4xx say the request itself is wrong, so sending it again cannot help.
        return _STATUS_TYPES.get(status, _E.NETWORK_ERROR if status >= 500 else _E.VALIDATION_ERROR)
    if isinstance(exc, TimeoutError | ConnectionError | socket.gaierror) or (
        isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS
    ):
        return _E.NETWORK_ERROR
    if any(_NETWORK_NAME.fullmatch(cls.__name__) for cls in type(exc).__mro__):
        return _E.NETWORK_ERROR
    if isinstance(exc, pydantic.ValidationError):
        return _E.VALIDATION_ERROR
    return None


def _settle(
    exc: BaseException,
    error_type: str,
    retryable: bool | None,
    delays: Mapping[str, float],
    delay: float | None = None,
    retry_after: float | None = None,
    hints: bool = True,
) -> _Verdict:
    info = error_type_info(error_type)
    if retryable is None:
        declared = _attr(exc, "retryable")
        retryable = declared if isinstance(declared, bool) else (info is None or info.retryable)
    if not retryable or isinstance(exc, UnrecoverableError):
        return error_type, False, 0.0, False
    if hints and retry_after is None and delay is None:
        retry_after = seconds_or_none(_attr(exc, "retry_after"))
        if retry_after is None:
            retry_after = retry_after_seconds(_headers(exc))
    if retry_after is not None:
        return error_type, True, retry_after, True
    if delay is None:
        # A type registered after the delays were merged (a running worker's) has its default.
        default = info.delay if info is not None else None
        delay = delays.get(error_type, default if default is not None else delays[_E.UNKNOWN])
    return error_type, True, delay, False


def _attr(obj: object, name: str) -> object:
    # Some SDK properties raise when their value was never set.
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _text(obj: object) -> str:
    try:
        return str(obj)
    except Exception:
        return ""


def _status(exc: BaseException) -> int | None:
    response = _attr(exc, "response")
    for value in (_attr(exc, "status_code"), _attr(exc, "status"), _attr(response, "status_code")):
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
    return None


def _headers(exc: BaseException) -> Mapping[str, str] | None:
    headers = _attr(_attr(exc, "response"), "headers") or _attr(exc, "headers")
    return headers if isinstance(headers, Mapping) else None


def _header(headers: object, name: str) -> str | None:
    if not isinstance(headers, Mapping):
        return None
    try:
        value = headers.get(name)
        if value is None:
            # A plain dict is case-sensitive; HTTP header names are not.
            value = next((v for k, v in headers.items() if _key(k) == name), None)
    except Exception:
        return None
    value = value.decode("latin-1") if isinstance(value, bytes) else value
    return value.strip() if isinstance(value, str) else None


def _key(key: object) -> str:
    return (key.decode("latin-1") if isinstance(key, bytes) else _text(key)).lower()
