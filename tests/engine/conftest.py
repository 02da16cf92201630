"""Engine fixtures: contract tests run on the primary test Redis AND on an embedded Valkey."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from jobqueue import Queue, QueueConfig

sys.path.insert(0, str(Path(__file__).parent))

from servers import RedisProcess, delete_prefix, unique


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
    delete_prefix(url, p)


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
