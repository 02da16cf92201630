"""Pipeline fixtures: a runtime on the test Redis (own prefix) and a migrated test database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from pipeline_helpers import fast_settings

from jobqueue.core.connection import connect
from pipeline import db
from pipeline.runtime import Runtime, set_runtime
from pipeline.workers import Workers


@pytest.fixture
async def runtime(redis_url: str, database_url: str, prefix: str) -> AsyncIterator[Runtime]:
    settings = fast_settings(redis_url, database_url, prefix)
    pool = await db.create_pool(database_url)
    await db.migrate(pool)
    rt = await Runtime.create(settings, redis=connect(redis_url), pool=pool)
    db.set_pool(pool)
    set_runtime(rt)
    yield rt
    set_runtime(None)
    db.set_pool(None)
    await rt.close()


@pytest.fixture
async def workers(runtime: Runtime) -> AsyncIterator[Callable[..., Awaitable[Workers]]]:
    started: list[tuple[Workers, asyncio.Task[None]]] = []

    async def start(**options: Any) -> Workers:
        w = Workers(runtime, **options)
        started.append((w, asyncio.create_task(w.run())))
        return w

    yield start
    for w, task in started:
        await w.close()
        await asyncio.wait_for(task, 20)
