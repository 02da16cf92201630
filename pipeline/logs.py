"""Logging for the entry points only (library code just calls `getLogger`/`get_logger`).

A terminal gets readable console lines; anything else (a file, a log collector) gets one
JSON object per line. `PIPELINE_LOG_FORMAT=console|json` overrides the choice. Secrets are
masked in every line, whatever logged them.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog

from jobqueue import redact

__all__ = ["configure_logging", "log_format"]


def _redact_event(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = redact(value)
    return event_dict


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def log_format(fmt: str, stream: Any) -> Literal["console", "json"]:
    """The format `configure_logging` writes to `stream` in.

    Args:
        fmt: "console", "json", or "auto" (console on a terminal, JSON anywhere else).
        stream: Where the lines go.

    Returns:
        "console" or "json".

    Raises:
        ValueError: `fmt` is none of the three.
    """
    if fmt not in ("auto", "console", "json"):
        raise ValueError(f"log format must be auto, console or json, got {fmt!r}")
    if fmt == "auto":
        return "console" if _isatty(stream) else "json"
    return "console" if fmt == "console" else "json"


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a line is logged, not when it was configured:
    while a live progress view runs it swaps in a proxy that prints lines above the view, so
    they do not tear it."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def configure_logging(*, fmt: str = "auto", level: str = "INFO", stream: Any = None) -> None:
    """Route structlog and stdlib logging to one handler, console or JSON.

    Args:
        fmt: "auto" (console on a terminal, JSON otherwise: `log_format`), "console" or "json".
        level: The root level, e.g. "INFO".
        stream: Where lines go (default: standard error; a terminal's lines go to whatever
            `sys.stderr` is when each is written, so a live view can keep them above it).
    """
    target = sys.stderr if stream is None else stream
    console = log_format(fmt, target) == "console"
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.PositionalArgumentsFormatter(),
        _redact_event,
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=_isatty(target))
        if console
        else structlog.processors.JSONRenderer()
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([] if console else [structlog.processors.dict_tracebacks]),
            renderer,
        ],
    )
    # a redirected stderr keeps its lines, even under a live view that proxies sys.stderr
    handler: logging.Handler = (
        _CurrentStderrHandler()
        if stream is None and _isatty(target)
        else logging.StreamHandler(target)
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
