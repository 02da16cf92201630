"""Error classification, exponential backoff and an in-process retry helper.

`classify_error` duck-types on `status_code`, `response.headers`, `type`, `body` and class
names, so SDK errors (`anthropic`'s in particular) are understood without importing any SDK.
First match wins, on the exception and then down its `__cause__` chain: registered rules
(newest first); non-`Exception` → CANCELLED; an `error_type` attribute; pydantic validation
and spend limits; the HTTP status, or the body's error type when the status is 2xx (an SSE
error event); "rate limit" in the message; timeouts and connection failures; else UNKNOWN.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import math
import random
import re
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Final, TypeAlias, TypeGuard, TypeVar

import pydantic

from jobqueue.errors import ConfigError, ErrorType, UnrecoverableError

__all__ = [
    "DEFAULT_RETRY_DELAYS",
    "Classification",
    "backoff_delay",
    "classify_error",
    "redact",
    "register_error_rule",
    "unregister_error_rule",
    "with_retry",
]

T = TypeVar("T")
_Match: TypeAlias = type[BaseException] | Callable[[BaseException], bool]
# Mapping keys are invariant: each form is listed so that a dict[ErrorType, float] is accepted.
_RetryDelays: TypeAlias = (
    Mapping[ErrorType, float] | Mapping[str, float] | Mapping[ErrorType | str, float]
)
_Verdict: TypeAlias = tuple[ErrorType, bool, float, bool]  # type, retryable, delay, exact
_E = ErrorType

logger = logging.getLogger(__name__)

DEFAULT_RETRY_DELAYS: Final[Mapping[ErrorType, float]] = MappingProxyType(
    {_E.RATE_LIMIT: 60.0, _E.NETWORK_ERROR: 10.0, _E.JUDGE_REJECTION: 5.0, _E.UNKNOWN: 5.0}
)

_RETRYABLE: Final = frozenset(_E) - {_E.API_ERROR, _E.VALIDATION_ERROR, _E.CANCELLED}
_STATUS_TYPES: Final[Mapping[int, ErrorType]] = {
    **dict.fromkeys((400, 404, 413, 422), _E.VALIDATION_ERROR),
    **dict.fromkeys((401, 402, 403), _E.API_ERROR),
    **dict.fromkeys((408, 409), _E.NETWORK_ERROR),
    429: _E.RATE_LIMIT,
}
# An error event inside a stream arrives after a 200, so only the body says what went wrong.
_BODY_TYPES: Final[Mapping[str, ErrorType]] = {
    "rate_limit_error": _E.RATE_LIMIT,
    **dict.fromkeys(("overloaded_error", "api_error", "timeout_error"), _E.NETWORK_ERROR),
    **dict.fromkeys(("authentication_error", "permission_error", "billing_error"), _E.API_ERROR),
    **dict.fromkeys(("invalid_request_error", "not_found_error"), _E.VALIDATION_ERROR),
}
_SPEND_LIMIT_CODES: Final = ("enforced_spend_limit_reached", "contract_spend_limit_reached")
_SPEND_LIMIT_NAME: Final = re.compile(r"(Enforced|Contract)SpendLimitReachedError")
# Connection failures of httpx, aiohttp, redis and the SDKs built on them, matched by name.
_NETWORK_NAME: Final = re.compile(
    r"\w*(Timeout|Connect(ion)?Error|Network|RemoteProtocol|ServerDisconnected)\w*"
    r"|(Read|Write|Close)Error"
)
_NETWORK_ERRNOS: Final = frozenset(
    (errno.ECONNABORTED, errno.ECONNREFUSED, errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT)
) | {errno.EHOSTUNREACH, errno.ENETDOWN, errno.ENETRESET, errno.ENETUNREACH}
_FINITE: Final = sys.float_info.max
_SECONDS: Final = "a finite number of seconds >= 0"
_RATE_LIMIT_TEXT: Final = re.compile(r"rate[ _-]?limit", re.IGNORECASE)

_URL_USERINFO: Final = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<info>[^\s/?#]*)@")
_API_KEY: Final = re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}")
_BEARER: Final = re.compile(r"\b(bearer)\s+[^\s,;\"']+", re.IGNORECASE)
_KEY_VALUE: Final = re.compile(
    r"\b(api[_-]?key|password|passwd|secret|token|access[_-]?token|auth[_-]?token)"
    r"(['\"]?\s*[:=]\s*['\"]?)[^\s'\",;&}]+",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Classification:
    """How a failure is treated.

    Attributes:
        error_type: The kind of failure.
        retryable: Whether another attempt may succeed.
        delay: Base delay in seconds before the next attempt, before backoff.
        message: One redacted line describing the error, at most 1000 characters.
        exact: The delay came from Retry-After or `RetryAfter` and must not be multiplied.
    """

    error_type: ErrorType
    retryable: bool
    delay: float
    message: str
    exact: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class _Rule:
    match: _Match
    error_type: ErrorType
    retryable: bool | None
    delay: float | None

    def matches(self, exc: BaseException) -> bool:
        if isinstance(self.match, type):
            return isinstance(exc, self.match)
        try:
            return bool(self.match(exc))
        except Exception:
            # Classifying runs inside error handling: a broken predicate must not mask the error.
            logger.debug("error rule %r raised; treated as no match", self.match, exc_info=True)
            return False


# Replaced, never mutated, so a classification running concurrently sees a consistent set.
_rules: tuple[_Rule, ...] = ()


def redact(text: str) -> str:
    """Mask URL passwords, `sk-...` API keys, Bearer tokens and `api_key=...`-style values.

    Args:
        text: Any text, e.g. an exception message or a URL.

    Returns:
        The text with each secret replaced by `***` (idempotent).
    """

    def userinfo(m: re.Match[str]) -> str:
        user, colon, _ = m["info"].partition(":")
        return f"{m['scheme']}{user}:***@" if colon else f"{m['scheme']}***@"

    text = _API_KEY.sub("sk-***", _URL_USERINFO.sub(userinfo, text))
    return _KEY_VALUE.sub(r"\1\2***", _BEARER.sub(r"\1 ***", text))


def register_error_rule(
    match: _Match,
    error_type: ErrorType | str,
    *,
    retryable: bool | None = None,
    delay: float | None = None,
) -> Callable[[], bool]:
    """Classify matching exceptions as `error_type`, ahead of earlier rules and built-ins.

    Args:
        match: An exception class (subclasses match too) or a predicate on the exception.
        error_type: The type to classify as.
        retryable: Overrides the type's default retryability when not None.
        delay: Base delay in seconds; None uses the type's (or a Retry-After hint).

    Returns:
        A handle: calling it removes this rule and says whether it was still registered.

    Raises:
        ConfigError: An argument is not acceptable.
    """
    global _rules
    if not (issubclass(match, BaseException) if isinstance(match, type) else callable(match)):
        raise ConfigError(f"match must be an exception class or a predicate, got {match!r}")
    if retryable is not None and not isinstance(retryable, bool):
        raise ConfigError(f"retryable must be a bool or None, got {retryable!r}")
    checked = None if delay is None else _check(delay, "delay", _SECONDS)
    rule = _Rule(match, _error_type(error_type, "error_type"), retryable, checked)
    _rules = (*_rules, rule)
    return lambda: _remove(lambda r: r is rule)


def unregister_error_rule(match: _Match) -> bool:
    """Remove every rule registered with `match`; returns whether any was removed."""
    return _remove(lambda r: r.match == match)


def classify_error(
    exc: BaseException, *, retry_delays: _RetryDelays | None = None
) -> Classification:
    """Decide the type of a failure, whether to retry it and the base delay.

    Never raises because of `exc`: a predicate rule that raises is skipped.

    Args:
        exc: The exception that ended an attempt.
        retry_delays: Base delays per type in seconds over `DEFAULT_RETRY_DELAYS` (for
            RATE_LIMIT, the delay used when there is no Retry-After).

    Raises:
        ConfigError: `retry_delays` has an unknown type or a bad delay.
    """
    return _classify(exc, _delays(retry_delays))


def backoff_delay(
    classification: Classification,
    attempt: int,
    *,
    max_delay: float = 3600.0,
    jitter: float = 0.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after failed attempt number `attempt` (from 1).

    Args:
        classification: The failure's classification.
        attempt: The number of the attempt that failed, from 1.
        max_delay: Cap on the result in seconds.
        jitter: A fraction in [0, 1]; adds a random amount up to `jitter * delay`, never less.
        rng: Source of randomness for the jitter; the `random` module when None.

    Returns:
        `delay * 2 ** (attempt - 1)` plus jitter, or an exact delay as is; at most `max_delay`.

    Raises:
        ConfigError: An argument is out of range.
    """
    _check(attempt, "attempt", "an int >= 1", count=True)
    _check_backoff(max_delay, jitter)
    base = max(classification.delay, 0.0)
    if classification.exact:
        return min(base, max_delay)
    # The exponent is bounded so that a huge attempt count cannot overflow a float.
    delay = min(base * 2.0 ** min(attempt - 1, 64), max_delay)
    if jitter and delay > 0:
        uniform = rng.uniform if rng is not None else random.uniform
        delay = min(delay + uniform(0.0, jitter * delay), max_delay)
    return delay


async def with_retry(
    fn: Callable[[], Awaitable[T]],
    *,
    max_attempts: int = 3,
    on_retry: Callable[[Exception, int, float], object] | None = None,
    context: str = "",
    retry_delays: _RetryDelays | None = None,
    max_delay: float = 3600.0,
    jitter: float = 0.0,
) -> T:
    """Await `fn()` until it succeeds, fails in a way not worth retrying, or attempts run out.

    Args:
        fn: Makes one attempt.
        max_attempts: Total attempts, at least 1.
        on_retry: Called (and awaited if it returns an awaitable) with the exception, the
            failed attempt's number and the delay, before sleeping.
        context: Names the operation in the log line.
        retry_delays, max_delay, jitter: As for `classify_error` and `backoff_delay`.

    Returns:
        What `fn()` returned.

    Raises:
        ConfigError: An argument is out of range.
        Exception: The last failure, unchanged.
    """
    _check(max_attempts, "max_attempts", "an int >= 1", count=True)
    _check_backoff(max_delay, jitter)
    delays = _delays(retry_delays)
    label = context or getattr(fn, "__qualname__", repr(fn))
    attempt = 1
    while True:
        try:
            return await fn()
        except Exception as exc:
            verdict = _classify(exc, delays)
            if not verdict.retryable or attempt >= max_attempts:
                raise
            delay = backoff_delay(verdict, attempt, max_delay=max_delay, jitter=jitter)
            logger.warning(
                "%s: attempt %d/%d failed (%s: %s); retrying in %.3fs",
                *(label, attempt, max_attempts, verdict.error_type, verdict.message, delay),
            )
            if on_retry is not None and inspect.isawaitable(r := on_retry(exc, attempt, delay)):
                await r
        # Slept outside `except`, so a cancellation while waiting is not chained to the failure.
        await asyncio.sleep(delay)
        attempt += 1


def _remove(predicate: Callable[[_Rule], bool]) -> bool:
    global _rules
    kept = tuple(r for r in _rules if not predicate(r))
    removed, _rules = len(kept) != len(_rules), kept
    return removed


def _error_type(value: object, what: str) -> ErrorType:
    if isinstance(value, str) and value.upper() in ErrorType.__members__:
        return ErrorType(value.upper())
    raise ConfigError(f"{what} must be an ErrorType, got {value!r}")


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check(
    value: object, what: str, expected: str, high: float = _FINITE, *, count: bool = False
) -> float:
    low = 1 if count else 0
    if not (_number(value) and low <= value <= high) or (count and not isinstance(value, int)):
        raise ConfigError(f"{what} must be {expected}, got {value!r}")
    return float(value)


def _check_backoff(max_delay: float, jitter: float) -> None:
    _check(max_delay, "max_delay", "a number of seconds >= 0", math.inf)
    _check(jitter, "jitter", "a fraction in [0, 1]", 1)


def _delays(overrides: _RetryDelays | None) -> dict[ErrorType, float]:
    merged = dict(DEFAULT_RETRY_DELAYS)
    for key, value in (overrides or {}).items():
        merged[_error_type(key, "retry_delays key")] = _check(
            value, f"retry_delays[{key!r}]", _SECONDS
        )
    return merged


def _classify(exc: BaseException, delays: Mapping[ErrorType, float]) -> Classification:
    verdict: _Verdict | None = None
    link: BaseException | None = exc
    seen: set[int] = set()
    # A wrapper raised `from` an SDK error often says nothing itself; its cause does.
    while verdict is None and link is not None and id(link) not in seen:
        seen.add(id(link))
        verdict = _classify_link(link, delays)
        link = link.__cause__
    error_type, retryable, delay, exact = verdict or _verdict(exc, _E.UNKNOWN, None, delays)
    # Secrets are masked before truncating, which could cut one beyond recognition.
    text = " ".join(f"{type(exc).__name__}: {_text(exc)}".split()).removesuffix(":")
    return Classification(error_type, retryable, delay, redact(text)[:1000], exact)


def _classify_link(exc: BaseException, delays: Mapping[ErrorType, float]) -> _Verdict | None:
    for rule in reversed(_rules):
        if rule.matches(exc):
            et = rule.error_type
            retryable = et in _RETRYABLE if rule.retryable is None else rule.retryable
            if rule.delay is None:
                return _verdict(exc, et, retryable, delays)
            # The application's explicit delay beats any Retry-After hint.
            return _verdict(exc, et, retryable, {**delays, et: rule.delay}, hints=False)
    if not isinstance(exc, Exception):
        return _E.CANCELLED, False, 0.0, False
    error_type = _builtin_type(exc)
    return None if error_type is None else _verdict(exc, error_type, None, delays)


def _builtin_type(exc: Exception) -> ErrorType | None:
    declared = _attr(exc, "error_type")
    if isinstance(declared, str) and declared.upper() in ErrorType.__members__:
        return ErrorType(declared.upper())
    if isinstance(exc, pydantic.ValidationError):
        return _E.VALIDATION_ERROR
    if any(_SPEND_LIMIT_NAME.fullmatch(cls.__name__) for cls in type(exc).__mro__):
        return _E.API_ERROR
    status = _status(exc)
    if status is not None and status >= 400:
        code, body = _attr(exc, "error_code"), _attr(exc, "body")
        texts = (code if isinstance(code, str) else "", _text(body) if body else "", _text(exc))
        if status == 429 and any(c in t for c in _SPEND_LIMIT_CODES for t in texts):
            return _E.API_ERROR
        # Other 4xx say the request itself is wrong, so sending it again cannot help.
        return _STATUS_TYPES.get(status, _E.NETWORK_ERROR if status >= 500 else _E.VALIDATION_ERROR)
    body_type = _BODY_TYPES.get(_body_type(exc) or "")
    if body_type is not None:
        return body_type
    if _RATE_LIMIT_TEXT.search(_text(exc)):
        return _E.RATE_LIMIT
    if isinstance(exc, TimeoutError | ConnectionError | socket.gaierror) or (
        isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS
    ):
        return _E.NETWORK_ERROR
    if any(_NETWORK_NAME.fullmatch(cls.__name__) for cls in type(exc).__mro__):
        return _E.NETWORK_ERROR
    return None


def _verdict(
    exc: BaseException,
    et: ErrorType,
    retryable: bool | None,
    delays: Mapping[ErrorType, float],
    *,
    hints: bool = True,
) -> _Verdict:
    if retryable is None:
        # The server's `x-should-retry: false` vetoes a retry; the type stays what it is.
        veto = (_header(exc, "x-should-retry") or "").lower() == "false"
        retryable = et in _RETRYABLE and not veto
    if not retryable or isinstance(exc, UnrecoverableError):
        return et, False, 0.0, False
    hint = _retry_after_header(exc) if hints and et is _E.RATE_LIMIT else None
    if hint is None and hints:
        hint = _seconds(_attr(exc, "retry_after"))
    if hint is not None:
        return et, True, hint, True
    return et, True, delays.get(et, delays[_E.UNKNOWN]), False


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


def _body_type(exc: BaseException) -> str | None:
    value = _attr(exc, "type")
    body = _attr(exc, "body")
    if not isinstance(value, str) and isinstance(body, Mapping):
        error = body.get("error")
        value = error.get("type") if isinstance(error, Mapping) else body.get("type")
    return value if isinstance(value, str) else None


def _header(exc: BaseException, name: str) -> str | None:
    headers = _attr(_attr(exc, "response"), "headers") or _attr(exc, "headers")
    if not isinstance(headers, Mapping):
        return None
    try:
        value = headers.get(name)
        if value is None:
            # A plain dict is case-sensitive; HTTP header names are not.
            value = next((v for k, v in headers.items() if _text(k).lower() == name), None)
    except Exception:
        return None
    value = value.decode("latin-1") if isinstance(value, bytes) else value
    return value.strip() if isinstance(value, str) else None


def _retry_after_header(exc: BaseException) -> float | None:
    millis = _seconds(_header(exc, "retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = _header(exc, "retry-after")
    seconds = _seconds(value)
    if value is None or seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    # A date already past means "now", not "no hint".
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _seconds(value: object) -> float | None:
    try:
        seconds = float(value) if _number(value) or isinstance(value, str) else math.nan
    except ValueError:
        return None
    return seconds if 0 <= seconds < math.inf else None
