"""Checks of the numbers the retry functions take, raising `ConfigError` naming the value."""

from __future__ import annotations

import math

from ..errors import ConfigError

__all__ = ["check_count", "check_fraction", "check_seconds", "seconds_or_none"]


def check_seconds(value: object, what: str, *, allow_inf: bool = False) -> float:
    """`value` as a number of seconds >= 0 (finite unless `allow_inf`), else ConfigError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= math.inf
        or (value == math.inf and not allow_inf)
    ):
        expected = "a number of seconds >= 0" if allow_inf else "a finite number of seconds >= 0"
        raise ConfigError(f"{what} must be {expected}, got {value!r}")
    return float(value)


def check_count(value: object, what: str) -> int:
    """`value` as an int >= 1, else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be an int >= 1, got {value!r}")
    return value


def check_fraction(value: object, what: str) -> float:
    """`value` as a number in [0, 1], else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ConfigError(f"{what} must be a fraction in [0, 1], got {value!r}")
    return float(value)


def seconds_or_none(value: object) -> float | None:
    """A number, or a numeric string, as finite seconds >= 0; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < math.inf else None
