"""The command lines' argument types and their last line of defence against bad input.

A wrong argument or setting ends a command with one line, `error: ...`, and exit code 2 (as
argparse's own usage errors), never a traceback; a value shown in that line is cut short, so a
10 KB argument given by mistake is not echoed whole (nor a secret: the line is redacted).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import TypeVar

from jobqueue import JobQueueError, redact

__all__ = [
    "USAGE_ERRORS",
    "count",
    "cut",
    "fail",
    "port",
    "positive_seconds",
    "shown",
]

USAGE_ERRORS: tuple[type[BaseException], ...] = (ValueError, JobQueueError)
"""What a bad argument or setting raises before anything is done: pydantic's ValidationError
and pydantic-settings' SettingsError (bad environment), redis-py's and asyncpg's bad URLs,
the engine's ConfigError and InvalidJobError, the pipeline's PayloadError (all ValueErrors,
but for the engine's root)."""


def cut(text: str, limit: int = 300) -> str:
    """`text` cut to `limit` characters, its length said when longer."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def shown(value: object, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters (a bad value named in an error)."""
    return cut(repr(value), limit)


def fail(message: str, code: int = 2) -> int:
    """Print `error: <message>` (redacted, cut) on stderr; return the exit code."""
    print(f"error: {cut(redact(' '.join(message.split())), 1000)}", file=sys.stderr)
    return code


_N = TypeVar("_N", int, float)


def _checked(
    parse: Callable[[str], _N], ok: Callable[[_N], bool], want: str
) -> Callable[[str], _N]:
    def check(text: str) -> _N:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {want}, got {shown(text)}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {want}, got {shown(text)}")
        return value

    return check


positive_seconds = _checked(float, lambda v: math.isfinite(v) and v > 0, "seconds > 0")
"""argparse type: a finite number of seconds > 0."""
count = _checked(int, lambda v: v >= 0, "an int >= 0")
"""argparse type: an int >= 0."""
port = _checked(int, lambda v: 0 <= v <= 65535, "a port within 0-65535")
"""argparse type: a TCP port (0: any free one)."""
