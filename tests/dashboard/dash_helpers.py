"""Helpers of the dashboard's tests: fast options, a deadline-bounded wait, an in-loop uvicorn
server on a free port, and the system Chromium (if any)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import loop_helpers
import uvicorn

from jobqueue.dashboard import DashboardOptions

TOKEN = "test-token-0123456789"
FAST_OPTIONS = DashboardOptions(
    sse_block=0.2, sse_counts_interval=0.05, sse_max_seconds=60.0, queue_cache_seconds=0.0
)
HANG = 30.0
"""Seconds a wait may last before the test fails: it bounds a hang, it measures nothing."""


def chromium_path() -> str | None:
    """The system Chromium (Debian's `chromium`), or None."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", "chromium"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


async def wait_for(
    check: Callable[[], Awaitable[Any]], timeout: float = HANG, what: str = "condition"
) -> Any:
    """`loop_helpers.wait_for` bounded by `HANG` unless told."""
    return await loop_helpers.wait_for(check, timeout, what)


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Serve `app` with uvicorn in this event loop on a free loopback port; yields its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1, ws="none"
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        await wait_for(lambda: asyncio.sleep(0, server.started), what="uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, HANG)
        sock.close()
