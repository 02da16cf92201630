"""Running an entry point's event loop: the standard asyncio loop, or uvloop when asked.

`run(main())` is `asyncio.run(main())` with the loop `JOBQUEUE_LOOP` names:

- `asyncio` (the default): the standard library's loop;
- `uvloop`: uvloop's (the `speed` extra: `pip install 'jobqueue[speed]'`); a `ConfigError`
  names the extra when it is not installed;
- `auto`: uvloop when it is installed, else the standard loop.

The worker and pipeline entry points (`python -m jobqueue.worker`, `python -m
pipeline.workers`, the process-isolation children) run through it; in a program of your own,
call `jobqueue.run(main())` the same way. Everything the engine does works on both loops (the
fast connection is a plain `asyncio.Protocol`); `python -m bench --loop uvloop` measures the
difference.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .errors import ConfigError

__all__ = ["LOOPS", "LOOP_ENV", "loop_factory", "run"]

T = TypeVar("T")

LOOP_ENV = "JOBQUEUE_LOOP"
"""Environment variable naming the event loop of the entry points: asyncio, uvloop or auto."""
LOOPS = ("asyncio", "uvloop", "auto")
"""The values `JOBQUEUE_LOOP` (and `run(loop=...)`) accept."""


def loop_factory(loop: str | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the loop `loop` names (default: `JOBQUEUE_LOOP`, else "asyncio");
    None for the standard loop.

    Raises:
        ConfigError: an unknown name, or "uvloop" without uvloop installed.
    """
    name = (loop if loop is not None else os.environ.get(LOOP_ENV, "asyncio")).strip().lower()
    if name not in LOOPS:
        raise ConfigError(f"{LOOP_ENV} must be one of {', '.join(LOOPS)}, got {name!r}")
    if name == "asyncio":
        return None
    try:
        uvloop: Any = importlib.import_module("uvloop")
    except ImportError:
        if name == "auto":
            return None
        raise ConfigError(
            f"{LOOP_ENV}=uvloop needs uvloop: pip install 'jobqueue[speed]'"
        ) from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], *, loop: str | None = None) -> T:
    """Run `main` to completion on a new event loop, as `asyncio.run` does, on the loop
    `loop` names (default: `JOBQUEUE_LOOP`, else the standard loop).

    Raises:
        ConfigError: see `loop_factory` (`main` is closed, never run).
    """
    try:
        factory = loop_factory(loop)
    except ConfigError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
