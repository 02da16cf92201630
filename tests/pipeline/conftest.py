"""Pipeline fixtures: a runtime on the test Redis (own prefix) and a migrated test database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from pipeline_helpers import HANG, fast_settings

from jobqueue import connect
from pipeline import db
from pipeline.runtime import Runtime, get_runtime, set_runtime
from pipeline.workers import Workers


@pytest.fixture
async def make_runtime(
    redis_url: str, database_url: str, prefix: str
) -> AsyncIterator[Callable[..., Awaitable[Runtime]]]:
    """Factory of runtimes with test timings (`fast_settings`); keyword arguments override
    settings, and settings not given come from the environment (as in production). The last
    one made is the process-wide runtime and pool."""
    made: list[Runtime] = []

    async def make(**settings: Any) -> Runtime:
        pool = await db.create_pool(database_url)
        await db.migrate(pool)
        rt = await Runtime.create(
            fast_settings(redis_url, database_url, prefix, **settings),
            redis=connect(redis_url),
            pool=pool,
        )
        db.set_pool(pool)
        set_runtime(rt)
        made.append(rt)
        return rt

    yield make
    set_runtime(None)
    db.set_pool(None)
    for rt in made:
        await rt.close()


@pytest.fixture
async def runtime(make_runtime: Callable[..., Awaitable[Runtime]]) -> Runtime:
    return await make_runtime()


@pytest.fixture
async def workers(
    make_runtime: Callable[..., Awaitable[Runtime]],
) -> AsyncIterator[Callable[..., Awaitable[Workers]]]:
    """Starts `Workers` on the process-wide runtime (the last one made), closed at teardown."""
    started: list[tuple[Workers, asyncio.Task[None]]] = []

    async def start(**options: Any) -> Workers:
        w = Workers(await get_runtime(), **options)
        started.append((w, asyncio.create_task(w.run())))
        return w

    yield start
    for w, task in started:
        await w.close()
        await asyncio.wait_for(task, HANG)  # bounds a hang only


@pytest.fixture
async def pool(runtime: Runtime) -> asyncpg.Pool:
    """The pool of the test's runtime (a migrated database)."""
    return runtime.pool


@pytest.fixture
def org() -> str:
    """An organisation of this test's own: its daily row is shared with no other test."""
    return f"org-{uuid.uuid4()}"
