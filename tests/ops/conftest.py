"""Fixtures of the operations tests: fast queues, in-process workers, worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ops_helpers import FAST, ROOT, WORKER_SCRIPT, WorkerProcess, child_env

from jobqueue import Job, Queue, QueueConfig, Worker


@pytest.fixture
async def make_queue(redis_url: str, prefix: str) -> AsyncIterator[Callable[..., Queue]]:
    """Factory of queues under the test's prefix with tiny leases and intervals."""
    made: list[Queue] = []

    def make(name: str = "q", *, redis: str | None = None, **options: Any) -> Queue:
        config = QueueConfig(name, **{**FAST, **options})
        queue = Queue(config, redis=redis or redis_url, prefix=prefix)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await queue.close()


@pytest.fixture
async def run_worker() -> AsyncIterator[Callable[..., Worker]]:
    """Start a `Worker` in this event loop; it is closed (forced) at teardown."""
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
            # 3.11, see jobqueue._aio): cancel again so that the test run can go on
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 15)


@pytest.fixture
def spawn_worker(
    redis_url: str, prefix: str, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `worker_proc.py` in a process of its own; killed at teardown if still alive."""
    procs: list[WorkerProcess] = []

    def spawn(queue: str, *, redis: str | None = None, **options: Any) -> WorkerProcess:
        args = [
            sys.executable,
            str(WORKER_SCRIPT),
            "--redis",
            redis or redis_url,
            "--prefix",
            prefix,
            "--queue",
            queue,
        ]
        for key, value in options.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        log = tmp_path / f"worker-{len(procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=child_env(), cwd=ROOT
            )
        wp = WorkerProcess(proc, log)
        procs.append(wp)
        return wp

    yield spawn
    for wp in procs:
        if wp.proc.poll() is None:
            wp.proc.kill()
        wp.proc.wait(10)
