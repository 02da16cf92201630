"""Fixtures of the dashboard's tests: queues under the test's prefix, in-process workers, the
dashboard app and an HTTP client on it (real Redis, no mock)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette

sys.path.insert(0, str(Path(__file__).parent))

from dash_helpers import FAST_OPTIONS, FAST_QUEUE, TOKEN

from jobqueue import Job, Queue, QueueConfig, Worker
from jobqueue.dashboard import create_app


@pytest.fixture
async def make_queue(redis_url: str, prefix: str) -> AsyncIterator[Callable[..., Queue]]:
    """Factory of queues under the test's prefix with tiny intervals."""
    made: list[Queue] = []

    def make(name: str = "q", **options: Any) -> Queue:
        queue = Queue(
            QueueConfig(name, **{**FAST_QUEUE, **options}), redis=redis_url, prefix=prefix
        )
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await queue.close()


@pytest.fixture
async def run_worker() -> AsyncIterator[Callable[..., Worker]]:
    """Start a `Worker` in this event loop; closed (forced) at teardown."""
    running: list[tuple[Worker, asyncio.Task[None]]] = []

    def start(queue: Queue, handler: Callable[[Job], Awaitable[Any]], **options: Any) -> Worker:
        options.setdefault("handle_signals", False)
        options.setdefault("shutdown_grace", 0.5)
        worker = Worker(queue, handler, **options)
        running.append((worker, asyncio.get_running_loop().create_task(worker.run())))
        return worker

    yield start
    for worker, task in running:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(worker.close(force=True), 15)
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 15)


@pytest.fixture
async def make_app(redis_url: str, prefix: str) -> AsyncIterator[Callable[..., Starlette]]:
    """Factory of dashboard apps on the test's prefix (token `TOKEN` unless given)."""
    made: list[Starlette] = []

    def make(**options: Any) -> Starlette:
        options.setdefault("token", TOKEN)
        options.setdefault("options", FAST_OPTIONS)
        app = create_app(redis=options.pop("redis", redis_url), prefix=prefix, **options)
        made.append(app)
        return app

    yield make
    for app in made:
        await app.state.dashboard.aclose()


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[..., httpx2.AsyncClient]]:
    """Factory of HTTP clients on an app (in process, ASGI); `auth=False` sends no token."""
    made: list[httpx2.AsyncClient] = []

    def make(app: Starlette, *, auth: bool = True) -> httpx2.AsyncClient:
        headers = {"authorization": f"Bearer {TOKEN}"} if auth else {}
        client = httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://testserver", headers=headers
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()
