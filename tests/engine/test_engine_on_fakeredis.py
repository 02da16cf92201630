"""The in-process worker and hook tests once more, on fakeredis.

Every test of `test_engine_worker.py` that starts its workers through the `running` fixture,
and every test of `test_engine_hooks.py` that uses `start`, is collected here as well and runs
against the fixtures below: the same fixtures, on a fresh in-memory server per test
(`jobqueue.testing.fake_redis`). They are taken from those modules by their fixture, so a test
added there runs here too.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from types import ModuleType
from typing import Any

import pytest
import test_engine_hooks
import test_engine_worker
from redis.asyncio import Redis

from jobqueue import Queue, QueueConfig, Worker
from jobqueue.testing import fake_redis

pytestmark = pytest.mark.integration


def _tests_using(module: ModuleType, fixture: str) -> dict[str, Callable[..., Any]]:
    return {
        name: fn
        for name, fn in vars(module).items()
        if name.startswith("test_") and callable(fn) and fixture in inspect.signature(fn).parameters
    }


WORKER_TESTS = _tests_using(test_engine_worker, "running")
HOOK_TESTS = _tests_using(test_engine_hooks, "start")
globals().update(WORKER_TESTS)
globals().update(HOOK_TESTS)


def test_the_worker_and_hook_tests_are_collected_here() -> None:
    # a rename of the fixtures there would silently empty this module
    assert len(WORKER_TESTS) >= 8 and len(HOOK_TESTS) >= 4


@pytest.fixture
async def fake() -> AsyncIterator[Redis]:
    client = fake_redis()
    yield client
    await client.aclose()


@pytest.fixture
async def running(fake: Redis) -> AsyncIterator[Callable[..., Awaitable[Queue]]]:
    """`test_engine_worker.running` on fakeredis."""
    workers: list[tuple[Worker, asyncio.Task[None]]] = []
    queues: list[Queue] = []

    async def start(handler: Any, *, concurrency: int = 1, **options: Any) -> Queue:
        options.setdefault("retry_delays", test_engine_worker.FAST)
        options.setdefault("drain_delay", 0.5)
        q = Queue(QueueConfig("wq", **options), redis=fake, prefix="jqt")
        queues.append(q)
        w = Worker(q, handler, concurrency=concurrency, handle_signals=False, shutdown_grace=1)
        workers.append((w, asyncio.create_task(w.run())))
        return q

    yield start
    for w, task in workers:
        await w.close()
        await task
    for q in queues:
        await q.close()


@pytest.fixture
async def start(fake: Redis) -> AsyncIterator[Callable[..., Awaitable[tuple[Queue, Worker]]]]:
    """`test_engine_hooks.start` on fakeredis."""
    started: list[tuple[Worker, asyncio.Task[None], Queue]] = []

    async def run(handler: Any, *, concurrency: int = 1, **options: Any) -> tuple[Queue, Worker]:
        hooks = {k: options.pop(k) for k in list(options) if k.startswith("on_")}
        options.setdefault("retry_delays", test_engine_hooks.FAST)
        options.setdefault("drain_delay", 0.5)
        q = Queue(QueueConfig("hq", **options), redis=fake, prefix="jqt")
        w = Worker(
            q, handler, concurrency=concurrency, handle_signals=False, shutdown_grace=1, **hooks
        )
        started.append((w, asyncio.create_task(w.run()), q))
        return q, w

    yield run
    for w, task, q in started:
        await w.close()
        await task
        await q.close()
