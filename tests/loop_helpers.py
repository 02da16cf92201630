"""Helpers shared by the test folders that work in the test's event loop (tests/dashboard,
tests/ops, tests/pipeline): a deadline-bounded wait, and the fixtures `make_queue` (queues under
the test's prefix) and `run_worker` (in-loop workers), which a folder's conftest imports.

Deadlines only bound a hang: a loaded machine must never reach them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from jobqueue import Job, Queue, QueueConfig, Worker

#: Queue settings with tiny intervals; leases are long (30 s), so that no test's job is lost to
#: a slow machine (tests of stalls live in tests/engine).
FAST_QUEUE: dict[str, Any] = {
    "lease": 30.0,
    "stall_interval": 0.5,
    "drain_delay": 0.2,
    "heartbeat_interval": 1.0,
    "backoff": 0.1,
}


async def wait_for(
    check: Callable[[], Awaitable[Any]], timeout: float, what: str = "condition"
) -> Any:
    """Re-evaluate `check` until it returns something truthy (returned); fail after `timeout` s.
    Each folder's helpers bind their own default `timeout` (their `HANG`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)  # paces the polling; decides nothing


@contextlib.asynccontextmanager
async def queue_factory(
    redis_url: str, prefix: str, settings: dict[str, Any], name: str = "q"
) -> AsyncIterator[Callable[..., Queue]]:
    """A factory of queues under `prefix` with `settings` (keyword arguments override them;
    `redis=` another server; `name` the default queue name); every queue is closed on exit."""
    made: list[Queue] = []

    def make(name: str = name, *, redis: str | None = None, **options: Any) -> Queue:
        config = QueueConfig(name, **{**settings, **options})
        queue = Queue(config, redis=redis or redis_url, prefix=prefix)
        made.append(queue)
        return queue

    try:
        yield make
    finally:
        for queue in made:
            await queue.close()


@pytest.fixture
async def make_queue(redis_url: str, prefix: str) -> AsyncIterator[Callable[..., Queue]]:
    """Factory of queues under the test's prefix with `FAST_QUEUE` settings (keyword arguments
    override them; `redis=` another server); closed at teardown."""
    async with queue_factory(redis_url, prefix, FAST_QUEUE) as make:
        yield make


@pytest.fixture
async def run_worker() -> AsyncIterator[Callable[..., Worker]]:
    """Start a `Worker` in this event loop (no signal handlers, a short shutdown grace unless
    given); it is closed (forced) at teardown."""
    running: list[tuple[Worker, asyncio.Task[None]]] = []

    def start(queue: Queue, handler: Callable[[Job], Awaitable[Any]], **options: Any) -> Worker:
        options.setdefault("handle_signals", False)
        options.setdefault("shutdown_grace", 0.5)
        worker = Worker(queue, handler, **options)
        running.append((worker, asyncio.get_running_loop().create_task(worker.run())))
        return worker

    yield start
    for worker, task in running:
        try:
            await asyncio.wait_for(worker.close(force=True), 15)
        except TimeoutError:
            # a helper loop lost its cancellation inside redis-py (asyncio.wait_for on Python
            # 3.11, see jobqueue.core._aio): cancel again so that the test run can go on
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 15)
