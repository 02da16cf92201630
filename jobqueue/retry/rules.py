"""Rules an application registers to classify its own failures, ahead of the engine's.

A rule matches an exception by class (subclasses too) or by predicate, and either names a
fixed type (`register_error_rule(QuoteUnavailable, "NETWORK_ERROR", delay=0.1)`) or computes
a verdict (`register_error_rule(sdk.APIError, classify=fn)`, `fn(exc)` returning an
`ErrorVerdict`, or None for "no opinion": older rules and the engine's table then decide).
The newest matching rule with an opinion wins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from ..errors import ConfigError
from ._values import check_seconds
from .types import check_error_type

__all__ = [
    "ErrorClassifier",
    "ErrorMatch",
    "ErrorVerdict",
    "register_error_rule",
    "rule_verdict",
    "unregister_error_rule",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ErrorVerdict:
    """A rule's decision about one failure.

    Attributes:
        error_type: A built-in or registered error type (case-insensitive; stored canonical).
        retryable: Whether to retry; None uses the exception's `retryable` attribute, else the
            type's default. An `UnrecoverableError` is never retried, whatever this says.
        delay: Base delay in seconds before the retry, multiplied by the backoff.
        retry_after: Exact delay in seconds (e.g. a server's Retry-After), not multiplied.
            With neither `delay` nor `retry_after`, the queue's delay for the type is used.

    Raises:
        ConfigError: A value is not acceptable, or both `delay` and `retry_after` are given.
    """

    error_type: str
    retryable: bool | None = None
    delay: float | None = None
    retry_after: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "error_type", check_error_type(self.error_type, "error_type"))
        if self.retryable is not None and not isinstance(self.retryable, bool):
            raise ConfigError(f"retryable must be a bool or None, got {self.retryable!r}")
        if self.delay is not None and self.retry_after is not None:
            raise ConfigError(
                f"give delay or retry_after, not both (got {self.delay!r}, {self.retry_after!r})"
            )
        for name in ("delay", "retry_after"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, check_seconds(value, name))


ErrorMatch: TypeAlias = type[BaseException] | Callable[[BaseException], bool]
"""An exception class (subclasses match too) or a predicate on the exception."""

ErrorClassifier: TypeAlias = Callable[[BaseException], ErrorVerdict | None]
"""Computes a verdict for a matching exception; None means no opinion."""


@dataclass(frozen=True, slots=True, eq=False)
class _Rule:
    match: ErrorMatch
    fixed: ErrorVerdict | None
    classify: ErrorClassifier | None

    def matches(self, exc: BaseException) -> bool:
        if isinstance(self.match, type):
            return isinstance(exc, self.match)
        try:
            return bool(self.match(exc))
        except Exception:
            # Classifying runs inside error handling: a broken predicate must not mask the error.
            logger.debug("error rule %r raised; treated as no match", self.match, exc_info=True)
            return False

    def verdict(self, exc: BaseException) -> ErrorVerdict | None:
        if self.classify is None:
            return self.fixed
        try:
            verdict = self.classify(exc)
        except Exception:
            logger.debug("error classifier %r raised; no opinion", self.classify, exc_info=True)
            return None
        if verdict is not None and not isinstance(verdict, ErrorVerdict):
            logger.debug("error classifier %r returned %r; no opinion", self.classify, verdict)
            return None
        return verdict


# Replaced, never mutated, so a classification running concurrently sees a consistent set.
_rules: tuple[_Rule, ...] = ()


def register_error_rule(
    match: ErrorMatch,
    error_type: str | None = None,
    *,
    retryable: bool | None = None,
    delay: float | None = None,
    classify: ErrorClassifier | None = None,
) -> Callable[[], bool]:
    """Classify matching exceptions ahead of earlier rules and of the engine's own table.

    Either a fixed type (`error_type`, with optional `retryable` and `delay`) or a computed
    verdict (`classify`), not both. Rules are consulted on the exception, then down its
    `__cause__` chain, like the engine's table.

    Args:
        match: An exception class (subclasses match too) or a predicate on the exception.
        error_type: The built-in or registered type to classify as.
        retryable: Overrides the type's default retryability when not None.
        delay: Base delay in seconds; None uses a Retry-After hint (the exception's
            `retry_after` attribute or response header), else the queue's delay for the type.
        classify: Computes an `ErrorVerdict` for a matching exception, or None for no
            opinion; if it raises or returns anything else, it has no opinion either.

    Returns:
        A handle: calling it removes this rule and says whether it was still registered.

    Raises:
        ConfigError: An argument is not acceptable.
    """
    global _rules
    if not (issubclass(match, BaseException) if isinstance(match, type) else callable(match)):
        raise ConfigError(f"match must be an exception class or a predicate, got {match!r}")
    fixed: ErrorVerdict | None = None
    if classify is not None:
        if not callable(classify):
            raise ConfigError(f"classify must be callable, got {classify!r}")
        if (error_type, retryable, delay) != (None, None, None):
            raise ConfigError(
                "classify= computes the type, retryable and delay: give it alone, got "
                f"error_type={error_type!r}, retryable={retryable!r}, delay={delay!r}"
            )
    elif error_type is None:
        raise ConfigError("register_error_rule needs an error_type or classify=, got neither")
    else:
        fixed = ErrorVerdict(error_type, retryable, delay)
    rule = _Rule(match, fixed, classify)
    _rules = (*_rules, rule)
    return lambda: _remove(lambda r: r is rule)


def unregister_error_rule(match: ErrorMatch) -> bool:
    """Remove every rule registered with `match`; returns whether any was removed."""
    return _remove(lambda r: r.match == match)


def rule_verdict(exc: BaseException) -> tuple[ErrorVerdict, bool] | None:
    """The newest matching rule's verdict, and whether Retry-After hints may set its delay.

    A fixed rule without a delay takes hints; a computed verdict decides its delay itself.
    """
    for rule in reversed(_rules):
        if rule.matches(exc):
            verdict = rule.verdict(exc)
            if verdict is not None:
                return verdict, rule.classify is None and verdict.delay is None
    return None


def _remove(predicate: Callable[[_Rule], bool]) -> bool:
    global _rules
    kept = tuple(r for r in _rules if not predicate(r))
    removed, _rules = len(kept) != len(_rules), kept
    return removed
