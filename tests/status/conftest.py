"""Fixtures of the status tests: a migrated database, a pool, a TCP proxy to cut connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as aioredis
from status_helpers import Stream, TcpProxy, uid

from pipeline import db
from pipeline.mirror import StatusMirror


@pytest.fixture(scope="session")
def migrated_url(database_url: str) -> str:
    """The run's database with schema.sql applied."""
    asyncio.run(db.migrate(database_url))
    return database_url


@pytest.fixture
async def pool(migrated_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool of this test's event loop, installed as the process-wide pool."""
    p = await db.create_pool(migrated_url, min_size=1, max_size=5)
    db.set_pool(p)
    yield p
    db.set_pool(None)
    await p.close()


@pytest.fixture
async def fresh_database(postgres_admin_url: str) -> AsyncIterator[str]:
    """An empty database of this test's own (not migrated), dropped afterwards."""
    name = uid("jq_status_mig_").replace("-", "_")
    admin = await asyncpg.connect(postgres_admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield urlunsplit(urlsplit(postgres_admin_url)._replace(path=f"/{name}"))
    admin = await asyncpg.connect(postgres_admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def stream(redis_client: aioredis.Redis, prefix: str) -> Stream:
    return Stream(redis_client, prefix, uid("q"))


@pytest.fixture
async def make_mirror(
    redis_client: aioredis.Redis, prefix: str, pool: asyncpg.Pool
) -> AsyncIterator[Callable[..., StatusMirror]]:
    """Factory of mirrors with test-friendly timings, closed at teardown."""
    made: list[StatusMirror] = []

    def make(queues: list[str], **kwargs: Any) -> StatusMirror:
        options: dict[str, Any] = {
            "prefix": prefix,
            "pool": pool,
            "consumer": "test",
            "block_ms": 20,
            "retry_backoff_base": 0.01,
            "retry_backoff_max": 0.05,
        }
        redis = kwargs.pop("redis", redis_client)
        options.update(kwargs)
        mirror = StatusMirror(redis, queues, **options)
        made.append(mirror)
        return mirror

    yield make
    for mirror in made:
        await mirror.close()


@pytest.fixture
async def make_proxy() -> AsyncIterator[Callable[[str], Awaitable[TcpProxy]]]:
    proxies: list[TcpProxy] = []

    async def make(url: str) -> TcpProxy:
        proxy = TcpProxy(url)
        await proxy.start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        await proxy.stop()
