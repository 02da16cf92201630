"""Engine fixtures: contract tests run on the primary test Redis AND on an embedded Valkey."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as syncredis

from jobqueue import Queue, QueueConfig

sys.path.insert(0, str(Path(__file__).parent))

from servers import RedisProcess, unique


@pytest.fixture(scope="session")
def valkey_url() -> Iterator[str]:
    server = RedisProcess().start()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture(params=["redis", "valkey"])
def any_redis(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(url, prefix) on the primary Redis and on the embedded Valkey; keys removed after."""
    url = request.getfixturevalue("redis_url" if request.param == "redis" else "valkey_url")
    p = unique("jqt")
    yield url, p
    client = syncredis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{p}:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    finally:
        client.close()


@pytest.fixture
async def make_queue(any_redis: tuple[str, str]) -> AsyncIterator[object]:
    url, prefix = any_redis
    made: list[Queue] = []

    def make(name: str = "q", **options: object) -> Queue:
        q = Queue(QueueConfig(name, **options), redis=url, prefix=prefix)  # type: ignore[arg-type]
        made.append(q)
        return q

    yield make
    for q in made:
        await q.close()
