"""The error types failures are classified into: the engine's built-ins and the application's.

The built-ins are the members of `ErrorType`. An application adds its own with
`register_error_type(name, delay=..., retryable=...)`; from then on the name is accepted
wherever an error type is (`QueueConfig.retry_delays`, `register_error_rule`, an exception's
`error_type` attribute, `UnrecoverableError`, `RetryAfter`). Error types are plain `str`
everywhere; a built-in is returned as its `ErrorType` member (also a `str`).

    built-in           default delay      retried
    RATE_LIMIT         60 s (no hint)     yes, without spending an attempt
    NETWORK_ERROR      10 s               yes
    UNKNOWN            5 s (`backoff`)    yes
    STALLED            as UNKNOWN         yes (set by the stall check, never by classification)
    CRASHED            as UNKNOWN         yes (an isolated handler's process died: a segfault...)
    API_ERROR, VALIDATION_ERROR, CANCELLED    no
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from ..errors import ConfigError, ErrorType
from ._values import check_seconds

__all__ = [
    "DEFAULT_RETRY_DELAYS",
    "ErrorTypeInfo",
    "check_error_type",
    "default_retry_delays",
    "error_type_info",
    "error_types",
    "register_error_type",
    "unregister_error_type",
]

_E = ErrorType
_NAME: Final = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


@dataclass(frozen=True, slots=True)
class ErrorTypeInfo:
    """What the engine knows about one error type.

    Attributes:
        name: The type's name (the `ErrorType` member for a built-in).
        delay: Default base delay in seconds before a retry, before backoff; None means the
            same as UNKNOWN (the queue's `backoff`).
        retryable: Whether a failure of this type is retried by default.
        builtin: Whether the engine defines it (it cannot be registered or removed).
    """

    name: str
    delay: float | None
    retryable: bool
    builtin: bool = False


_BUILTINS: Final[Mapping[str, ErrorTypeInfo]] = MappingProxyType(
    {
        info.name: info
        for info in (
            ErrorTypeInfo(_E.RATE_LIMIT, 60.0, True, True),
            ErrorTypeInfo(_E.NETWORK_ERROR, 10.0, True, True),
            ErrorTypeInfo(_E.API_ERROR, None, False, True),
            ErrorTypeInfo(_E.VALIDATION_ERROR, None, False, True),
            ErrorTypeInfo(_E.UNKNOWN, 5.0, True, True),
            ErrorTypeInfo(_E.CANCELLED, None, False, True),
            ErrorTypeInfo(_E.STALLED, None, True, True),
            ErrorTypeInfo(_E.CRASHED, None, True, True),
        )
    }
)

DEFAULT_RETRY_DELAYS: Final[Mapping[str, float]] = MappingProxyType(
    {name: info.delay for name, info in _BUILTINS.items() if info.delay is not None}
)
"""Default base delays of the built-in types that have one (read-only)."""

# Replaced, never mutated, so a classification running concurrently sees a consistent set.
_registered: Mapping[str, ErrorTypeInfo] = MappingProxyType({})


def register_error_type(name: str, *, delay: float | None = None, retryable: bool = True) -> str:
    """Make `name` an error type, with its default delay and retryability.

    Registering the same name again with the same values does nothing (so a module that
    registers its types can be imported or reloaded safely); with other values it is refused,
    since two parts of an application would disagree on what the type means.

    Args:
        name: Upper-case letters, digits and `_`, starting with a letter, at most 64
            characters; not a built-in name.
        delay: Default base delay in seconds before a retry (`QueueConfig.retry_delays`
            overrides it per queue); None means the same as UNKNOWN (the queue's `backoff`).
        retryable: Whether failures of this type are retried by default.

    Returns:
        `name`, to be kept as the application's constant for the type.

    Raises:
        ConfigError: The name, delay or retryable is not acceptable, or the name is already
            registered with other values.
    """
    global _registered
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"error type name must be upper-case letters, digits and _ (at most 64), got {name!r}"
        )
    if name in _BUILTINS:
        raise ConfigError(f"error type {name!r} is a built-in ErrorType")
    if delay is not None:
        delay = check_seconds(delay, f"delay of error type {name}")
    if not isinstance(retryable, bool):
        raise ConfigError(f"retryable of error type {name} must be a bool, got {retryable!r}")
    info = ErrorTypeInfo(name, delay, retryable)
    existing = _registered.get(name)
    if existing is not None and existing != info:
        raise ConfigError(
            f"error type {name!r} is already registered with delay={existing.delay!r}, "
            f"retryable={existing.retryable!r}; got delay={delay!r}, retryable={retryable!r}"
        )
    _registered = MappingProxyType({**_registered, name: info})
    return name


def unregister_error_type(name: str) -> bool:
    """Forget a registered error type (tests use it to clean up).

    Rules and exceptions that still name it are classified with UNKNOWN's delay and as
    retryable; `QueueConfig`s made from then on refuse it.

    Args:
        name: The registered type's name.

    Returns:
        Whether it was registered.

    Raises:
        ConfigError: `name` is a built-in type.
    """
    global _registered
    if name in _BUILTINS:
        raise ConfigError(f"error type {name!r} is a built-in ErrorType and cannot be removed")
    if name not in _registered:
        return False
    _registered = MappingProxyType({k: v for k, v in _registered.items() if k != name})
    return True


def error_types() -> Mapping[str, ErrorTypeInfo]:
    """Every known error type by name: the built-ins, then the registered ones (read-only)."""
    return MappingProxyType({**_BUILTINS, **_registered})


def error_type_info(name: object) -> ErrorTypeInfo | None:
    """The known error type `name` (case-insensitive), or None; never raises.

    Args:
        name: A built-in or registered type's name, or an `ErrorType`.
    """
    if not isinstance(name, str):
        return None
    key = name.upper()
    return _BUILTINS.get(key) or _registered.get(key)


def check_error_type(name: object, what: str = "error type") -> str:
    """`name` as a known error type: the `ErrorType` member of a built-in, else the name.

    Args:
        name: A built-in or registered type's name (case-insensitive), or an `ErrorType`.
        what: Names the value in the error message.

    Returns:
        The type's canonical name.

    Raises:
        ConfigError: `name` is not a known error type.
    """
    info = error_type_info(name)
    if info is None:
        known = ", ".join(error_types())
        raise ConfigError(f"{what} must be a known error type ({known}), got {name!r}")
    return info.name


def default_retry_delays() -> dict[str, float]:
    """Default base delay of every known type that has one (types without use UNKNOWN's)."""
    return {n: i.delay for n, i in error_types().items() if i.delay is not None}
