"""The checks of `Worker`'s options, each a `ConfigError` naming the option and its value (cut
short), before anything connects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core._inputs import finite, shown
from ..errors import ConfigError

__all__ = ["check_worker_options"]


def _seconds(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and finite(value)


def check_worker_options(
    *,
    handler: Any,
    concurrency: Any,
    calls_in_flight: Any,
    name: Any,
    shutdown_grace: Any,
    reconnect_backoff: Any,
) -> None:
    """Raise `ConfigError` for the first bad option.

    Raises:
        ConfigError: a handler that is neither callable nor a mapping of callables, a
            concurrency or a calls_in_flight that is not "auto" or an int >= 1, a name that is not
            1-200 printable characters, a negative or non-finite grace, or a backoff that is not
            `(first, max)` with 0 < first <= max.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency must be an int >= 1, got {shown(concurrency)}")
    if calls_in_flight != "auto" and (
        isinstance(calls_in_flight, bool)
        or not isinstance(calls_in_flight, int)
        or calls_in_flight < 1
    ):
        raise ConfigError(
            f'calls_in_flight must be "auto" or an int >= 1, got {shown(calls_in_flight)}'
        )
    if name is not None and (
        not isinstance(name, str) or not 0 < len(name) <= 200 or not name.isprintable()
    ):
        raise ConfigError(f"name must be 1-200 printable characters, got {shown(name)}")
    if not _seconds(shutdown_grace) or shutdown_grace < 0:
        raise ConfigError(
            f"shutdown_grace must be a finite number >= 0, got {shown(shutdown_grace)}"
        )
    pair = reconnect_backoff
    if (
        not isinstance(pair, tuple | list)
        or len(pair) != 2
        or not all(_seconds(v) for v in pair)
        or not 0 < pair[0] <= pair[1]
    ):
        raise ConfigError(
            f"reconnect_backoff must be (first, max) with 0 < first <= max, got {shown(pair)}"
        )
    handlers = handler.values() if isinstance(handler, Mapping) else [handler]
    for h in handlers:
        if h is not None and not callable(h):
            raise ConfigError(
                f"handler must be callable, or a mapping of job names to callables, got {shown(h)}"
            )
