"""Fixtures of the task tests: fast queues under the test's prefix and in-process workers
running `queue.tasks`."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from loop_helpers import queue_factory

from jobqueue import Queue, Worker

# the engine tests' bounded `wait_for` (one copy of it)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

FAST: dict[str, Any] = {
    "lease": 5.0,  # roomy: a starved test machine must not make a running job look stalled
    "drain_delay": 0.2,
    "heartbeat_interval": 0.2,
    "backoff": 0.01,
}


@pytest.fixture
async def make_queue(redis_url: str, prefix: str) -> AsyncIterator[Callable[..., Queue]]:
    """Factory of queues under the test's prefix with short intervals; closed at teardown."""
    async with queue_factory(redis_url, prefix, FAST, name="tq") as make:
        yield make


@pytest.fixture
async def run_tasks() -> AsyncIterator[Callable[[Queue], Worker]]:
    """Start `Worker(queue, queue.tasks)` in this event loop; closed (forced) at teardown."""
    running: list[tuple[Worker, asyncio.Task[None]]] = []

    def start(queue: Queue) -> Worker:
        worker = Worker(queue, queue.tasks, concurrency=4, handle_signals=False, shutdown_grace=0.5)
        running.append((worker, asyncio.get_running_loop().create_task(worker.run())))
        return worker

    yield start
    for worker, task in running:
        await asyncio.wait_for(worker.close(force=True), 30)
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 30)
