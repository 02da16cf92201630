"""The in-process worker and hook tests once more, on fakeredis.

Every test of `test_engine_worker.py` and `test_engine_hooks.py` that works on the test server
(through the `running` / `start` fixtures, or `redis_url` itself) is collected here as well,
with those very fixtures. They pass `redis=redis_url` to `Queue`, which takes a URL or a
client: here `redis_url` is a fakeredis client on a fresh in-memory server per test
(`jobqueue.testing.fake_redis`). Tests and fixtures are taken from those modules, so a test
added there runs here too.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any

import pytest
import test_engine_hooks
import test_engine_worker
from redis.asyncio import Redis
from test_engine_hooks import start
from test_engine_worker import running

from jobqueue.core.connection import is_fakeredis
from jobqueue.testing import fake_redis

pytestmark = pytest.mark.integration

__all__ = ["running", "start"]  # the fixtures these tests use, on the fake server below


# what a test asks for that is (or stands on) the `redis_url` below
SERVER_FIXTURES = {"running", "start", "redis_url"}


def _tests_on_the_server(module: ModuleType) -> dict[str, Callable[..., Any]]:
    return {
        name: fn
        for name, fn in vars(module).items()
        if name.startswith("test_")
        and callable(fn)
        and SERVER_FIXTURES & set(inspect.signature(fn).parameters)
    }


WORKER_TESTS = _tests_on_the_server(test_engine_worker)
HOOK_TESTS = _tests_on_the_server(test_engine_hooks)
globals().update(WORKER_TESTS)
globals().update(HOOK_TESTS)


def test_the_worker_and_hook_tests_are_collected_here() -> None:
    # a rename of the fixtures there would silently empty this module
    assert len(WORKER_TESTS) >= 10 and len(HOOK_TESTS) >= 7


async def test_the_fixtures_run_on_fakeredis(running: Any, start: Any) -> None:
    assert is_fakeredis((await running(lambda job: None)).redis)
    queue, _ = await start(lambda job: None)
    assert is_fakeredis(queue.redis)


@pytest.fixture
async def redis_url() -> AsyncIterator[Redis]:
    """Not a URL here: a client of a fresh fakeredis server, which `Queue(redis=)` takes too."""
    client = fake_redis()
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return "jqt"  # the server is the test's own: nothing to clean up
