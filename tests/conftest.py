"""Shared fixtures: real Redis and PostgreSQL, isolated per test by key prefix or database."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).parent))

# fakeredis (jobqueue.testing.fake_redis, the engine's third test backend) loads lupa's Lua 5.1
# with RTLD_GLOBAL; a Lua of another version loaded after it binds to 5.1's symbols and crashes
# the process (tests/unit compiles the scripts with `lupa.LuaRuntime`, the newest Lua). Loaded
# first, that one keeps its own symbols.
with contextlib.suppress(ImportError):
    import lupa

    lupa.LuaRuntime()  # imports lupa's newest Lua module now

from servers import delete_prefix, postgres_server, redis_server, unique


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        os.environ.setdefault("JQ_TEST_REDIS_URL_RESOLVED", url)
        yield url


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards (never FLUSHDB)."""
    p = unique("jqt")
    yield p
    delete_prefix(redis_url, p)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def database_url(postgres_admin_url: str) -> Iterator[str]:
    """A temporary database created for this test run and dropped at its end."""
    import asyncio

    import asyncpg

    name = unique("jq_test_")

    async def create() -> None:
        conn = await asyncpg.connect(postgres_admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(postgres_admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create())
    from urllib.parse import urlsplit

    yield urlsplit(postgres_admin_url)._replace(path=f"/{name}").geturl()
    asyncio.run(drop())
