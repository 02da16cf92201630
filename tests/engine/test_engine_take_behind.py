"""The take behind the wake-up: an idle worker on the fast path writes its `BZPOPMIN` and its
take together on its wake-up connection, so that Redis runs the take the moment a job wakes it.

Proven on a server of the test's own: a worker process stopped (SIGSTOP) while blocked still
takes the job added then, and `MONITOR` shows the `take` script run right after the add (the
worker's own loop would send `finish`). A stop while blocked ends the block at
once through the worker's own wake key, and what its take brings then goes back to the queue.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from engine_helpers import HANG, CommandMonitor, WorkerProcess, wait_for
from servers import RedisProcess

from jobqueue import Job, Queue, QueueConfig, Worker
from jobqueue.core._loader import load_script

pytestmark = [pytest.mark.integration, pytest.mark.not_cluster("CLIENT LIST of one server")]

LONG = 60.0  # drain_delay: a block that ends on its own would outlast every wait below


@pytest.fixture(scope="module")
def own_server() -> Iterator[RedisProcess]:
    server = RedisProcess().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def admin(own_server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(own_server.url, decode_responses=True)
    yield client
    await client.aclose()


def _queue(url: str, prefix: str, **options: object) -> Queue:
    return Queue(QueueConfig("behind", drain_delay=LONG, **options), redis=url, prefix=prefix)  # type: ignore[arg-type]


async def _blocked(admin: aioredis.Redis) -> list[dict[str, str]]:
    """The clients blocked in BZPOPMIN now."""
    clients = await admin.client_list()
    return [c for c in clients if c.get("cmd") == "bzpopmin" and "b" in c.get("flags", "")]


class Started:
    def __init__(self) -> None:
        self.jobs: list[str] = []
        self.release = asyncio.Event()

    async def handler(self, job: Job) -> str:
        self.jobs.append(job.id)
        await asyncio.wait_for(self.release.wait(), HANG)
        return "ok"


async def test_the_take_waits_behind_the_block_and_runs_when_a_job_comes(
    own_server: RedisProcess, admin: aioredis.Redis, prefix: str
) -> None:
    """A worker process blocks, then is stopped (SIGSTOP): a job added now is still taken at
    once, by the take it wrote behind its block, though it can send nothing; let go, it runs
    the job."""
    q = _queue(own_server.url, prefix)
    await q.scripts.load_all()  # a NOSCRIPT behind the block would need the stopped worker
    proc = WorkerProcess(own_server.url, prefix, {"name": "behind", "drain_delay": LONG})
    try:

        async def blocked() -> bool:
            return len(await _blocked(admin)) == 1

        await wait_for(blocked, what="the worker to block on the marker")
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            job = await q.add("x", {"n": 1})

            async def taken() -> bool:
                return (await q.get_job_state(job.id)) == "active"

            await wait_for(taken, what="the take behind the block to take the job")
        finally:
            os.kill(proc.pid, signal.SIGCONT)

        async def done() -> bool:
            return (await q.get_job_state(job.id)) == "completed"

        await wait_for(done, what="the job to complete")
    finally:
        proc.close()
        await q.close()


async def test_the_take_behind_is_the_first_script_after_the_add(
    own_server: RedisProcess, admin: aioredis.Redis, prefix: str
) -> None:
    """What Redis runs after the add that wakes the worker is the `take` written behind the
    block (a `finish` would be a take sent once the wake-up came back)."""
    q = _queue(own_server.url, prefix)
    started = Started()
    started.release.set()
    w = Worker(q, started.handler, concurrency=4, handle_signals=False)
    task = asyncio.create_task(w.run())
    try:

        async def blocked() -> bool:
            return len(await _blocked(admin)) == 1

        await wait_for(blocked, what="the worker to block on the marker")
        take_sha = load_script("take").sha
        async with CommandMonitor(own_server.url) as monitor, monitor.window() as window:
            job = await q.add("x", {"n": 1})

            async def done() -> bool:
                return (await q.get_job_state(job.id)) == "completed"

            await wait_for(done, what="the job to complete")
        scripts = [c[1] for c in window.commands if c[0].upper() == "EVALSHA"]
        add_sha = load_script("add").sha
        at = len(scripts) - 1 - scripts[::-1].index(add_sha)  # the add that ran (after NOSCRIPT)
        assert scripts[at + 1] == take_sha, window.commands
        assert started.jobs == [job.id]
    finally:
        await w.close()
        await task
        await q.close()


async def test_a_stop_while_blocked_ends_the_block_at_once(
    own_server: RedisProcess, admin: aioredis.Redis, prefix: str
) -> None:
    q = _queue(own_server.url, prefix)
    w = Worker(q, Started().handler, concurrency=2, handle_signals=False)
    task = asyncio.create_task(w.run())

    async def blocked() -> bool:
        return len(await _blocked(admin)) == 1

    await wait_for(blocked, what="the worker to block on the marker")
    # the block would last LONG seconds on its own: close() ends it through the wake key
    await asyncio.wait_for(w.close(), LONG / 3)
    await task
    assert await _blocked(admin) == []
    assert await admin.exists(q.keys.wake(w.name)) == 0  # the block popped the poke
    await q.close()


async def test_jobs_the_take_brings_as_the_worker_stops_go_back_at_once(
    own_server: RedisProcess, admin: aioredis.Redis, prefix: str
) -> None:
    q = _queue(own_server.url, prefix)
    started = Started()
    w = Worker(q, started.handler, concurrency=2, handle_signals=False)
    task = asyncio.create_task(w.run())
    try:

        async def blocked() -> bool:
            return len(await _blocked(admin)) == 1

        await wait_for(blocked, what="the worker to block on the marker")
        # a ready job the block was not told of (as if its poke had gone to another worker)
        await q.pause()
        job = await q.add("x", {"n": 2})
        await admin.hdel(q.keys.meta, "paused")
        await wait_for(blocked, what="the worker to block again")
        await asyncio.wait_for(w.close(), LONG / 3)
        await task
    finally:
        started.release.set()
        await q.close()
    # the take behind the ended block took it; the stopping worker handed it back, unrun
    assert started.jobs == []
    q2 = _queue(own_server.url, prefix)
    try:
        assert await q2.get_job_state(job.id) == "waiting"
        record = await q2.get_job(job.id)
        assert record is not None
        assert record.attempts_made == 0
    finally:
        await q2.close()


async def test_a_flushed_script_cache_is_reloaded_behind_the_block(
    own_server: RedisProcess, admin: aioredis.Redis, prefix: str
) -> None:
    q = _queue(own_server.url, prefix)
    started = Started()
    started.release.set()
    w = Worker(q, started.handler, concurrency=2, handle_signals=False)
    task = asyncio.create_task(w.run())
    try:

        async def blocked() -> bool:
            return len(await _blocked(admin)) == 1

        await wait_for(blocked, what="the worker to block on the marker")
        await admin.script_flush()  # as a restarted server: the take waiting is unknown now
        job = await q.add("x", {"n": 3})

        async def done() -> bool:
            return (await q.get_job_state(job.id)) == "completed"

        await wait_for(done, what="the job to complete after NOSCRIPT")
        assert started.jobs == [job.id]
    finally:
        await w.close()
        await task
        await q.close()


@pytest.mark.skipif(os.environ.get("JOBQUEUE_FASTCONN") == "0", reason="the fast path is off")
async def test_the_redis_py_path_blocks_alone(
    own_server: RedisProcess, admin: aioredis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBQUEUE_FASTCONN", "0")
    q = _queue(own_server.url, prefix)
    assert q.scripts.fast is None
    started = Started()
    started.release.set()
    w = Worker(q, started.handler, concurrency=2, handle_signals=False)
    task = asyncio.create_task(w.run())
    try:

        async def blocked() -> bool:
            return len(await _blocked(admin)) == 1

        await wait_for(blocked, what="the worker to block on the marker")
        take_sha = load_script("take").sha
        async with CommandMonitor(own_server.url) as monitor, monitor.window() as window:
            job = await q.add("x", {"n": 4})

            async def done() -> bool:
                return (await q.get_job_state(job.id)) == "completed"

            await wait_for(done, what="the job to complete")
        assert window.count("EVALSHA", take_sha) == 0  # a `finish` took it, after the block
    finally:
        await w.close()
        await task
        await q.close()
