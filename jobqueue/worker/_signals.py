"""The worker's SIGTERM/SIGINT handlers (the first finishes running jobs, the second stops)."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable

__all__ = ["install_stop_signals"]


def install_stop_signals(
    loop: asyncio.AbstractEventLoop, on_signal: Callable[[int], None], *, enabled: bool
) -> list[int]:
    """Route SIGTERM and SIGINT to `on_signal(sig)`, on the main thread only (an event loop
    elsewhere cannot have signal handlers). Returns the signals installed."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        return []
    installed: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):
            pass
    return installed
