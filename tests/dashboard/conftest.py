"""Fixtures of the dashboard's tests: queues under the test's prefix, in-process workers, the
dashboard app and an HTTP client on it (real Redis, no mock)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette

sys.path.insert(0, str(Path(__file__).parent))

from dash_helpers import FAST_OPTIONS, TOKEN

# fixtures shared with the other folders: importing them here is what registers them
from loop_helpers import make_queue as make_queue
from loop_helpers import run_worker as run_worker

from jobqueue.dashboard import create_app


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
