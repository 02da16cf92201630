"""The take behind the wake-up: an idle worker on the fast path writes its `BZPOPMIN` and its
take together on its wake-up connection, so that Redis runs the take the moment a job wakes it.

Proven on a server of the test's own: a worker process stopped (SIGSTOP) while blocked still
takes the job added then, and `MONITOR` shows the `take` script run right after the add (the
worker's own loop would send `finish`). A stop while blocked ends the block at
once through the worker's own wake key, and what its take brings then goes back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from engine_helpers import HANG, CommandMonitor, WorkerProcess, wait_for
from servers import RedisProcess

from jobqueue import Job, Queue, QueueConfig, Worker

pytestmark = [pytest.mark.integration, pytest.mark.not_cluster("CLIENT LIST of one server")]

LONG = 60.0  # drain_delay: a block that ends on its own would outlast every wait below


@pytest.fixture
async def admin(own_server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(own_server.url, decode_responses=True)
    yield client
    await client.aclose()


def _queue(url: str, prefix: str, **options: object) -> Queue:
    return Queue(QueueConfig("behind", drain_delay=LONG, **options), redis=url, prefix=prefix)  # type: ignore[arg-type]


class Started:
    def __init__(self) -> None:
        self.jobs: list[str] = []
        self.release = asyncio.Event()

    async def handler(self, job: Job) -> str:
        self.jobs.append(job.id)
        await asyncio.wait_for(self.release.wait(), HANG)
        return "ok"


async def _blocked(admin: aioredis.Redis) -> list[dict[str, str]]:
    """The clients blocked in BZPOPMIN now."""
    clients = await admin.client_list()
    return [c for c in clients if c.get("cmd") == "bzpopmin" and "b" in c.get("flags", "")]


async def until_blocked(admin: aioredis.Redis) -> None:
    """Wait until one client (the worker's wake-up connection) blocks on the marker."""

    async def blocked() -> bool:
        return len(await _blocked(admin)) == 1

    await wait_for(blocked, what="the worker to block on the marker")


async def until_state(q: Queue, job_id: str, state: str) -> None:
    async def reached() -> bool:
        return (await q.get_job_state(job_id)) == state

    await wait_for(reached, what=f"job {job_id} to be {state}")


@contextlib.asynccontextmanager
async def running(q: Queue, started: Started) -> AsyncIterator[Worker]:
    """A worker of the queue (concurrency 2) running in this process until the block ends."""
    w = Worker(q, started.handler, concurrency=2, handle_signals=False)
    task = asyncio.create_task(w.run())
    try:
        yield w
    finally:
        started.release.set()
        await w.close()
        await asyncio.wait_for(task, HANG)
        await q.close()


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
        await until_blocked(admin)
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            job = await q.add("x", {"n": 1})
            await until_state(q, job.id, "active")  # taken by the take behind the block
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        await until_state(q, job.id, "completed")
    finally:
        proc.close()
        await q.close()


async def test_a_stop_while_blocked_ends_the_block_at_once(
    own_server: RedisProcess, admin: aioredis.Redis, prefix: str
) -> None:
    q = _queue(own_server.url, prefix)
    async with running(q, Started()) as w:
        await until_blocked(admin)
        # the block would last LONG seconds on its own: close() ends it through the wake key
        await asyncio.wait_for(w.close(), LONG / 3)
        assert await _blocked(admin) == []
        assert await admin.exists(q.keys.wake(w.name)) == 0  # the block popped the poke


async def test_jobs_the_take_brings_as_the_worker_stops_go_back_at_once(
    own_server: RedisProcess, admin: aioredis.Redis, prefix: str
) -> None:
    q = _queue(own_server.url, prefix)
    started = Started()
    async with running(q, started) as w:
        await until_blocked(admin)
        # a ready job the block was not told of (as if its poke had gone to another worker)
        await q.pause()
        job = await q.add("x", {"n": 2})
        await admin.hdel(q.keys.meta, "paused")
        await until_blocked(admin)
        await asyncio.wait_for(w.close(), LONG / 3)
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
    async with running(q, started):
        await until_blocked(admin)
        # as a restarted server: the take waiting is unknown now
        await admin.script_flush()
        await admin.function_flush()
        job = await q.add("x", {"n": 3})
        await until_state(q, job.id, "completed")
        assert started.jobs == [job.id]


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "redis-py-path"])
async def test_the_script_that_runs_after_the_add_that_wakes_the_worker(
    own_server: RedisProcess,
    admin: aioredis.Redis,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    fast: bool,
) -> None:
    """On the fast path Redis runs the `take` written behind the block right after the add
    that wakes the worker; on the redis-py path the block is alone and a `finish` (a take
    sent once the wake-up came back) takes the job."""
    if not fast:
        monkeypatch.setenv("JOBQUEUE_FASTCONN", "0")
    elif os.environ.get("JOBQUEUE_FASTCONN") == "0":
        pytest.skip("the fast path is off")
    q = _queue(own_server.url, prefix)
    assert (q.scripts.fast is not None) is fast
    started = Started()
    started.release.set()
    async with running(q, started):
        await until_blocked(admin)
        async with CommandMonitor(own_server.url) as monitor, monitor.window() as window:
            job = await q.add("x", {"n": 1})
            await until_state(q, job.id, "completed")
        # the add (`add_plain`: a name and data only) and the scripts that take (not a
        # heartbeat's or a stall check's, which may fall in between on a slow machine)
        scripts = [s for s in window.scripts() if s in ("add_plain", "take", "finish")]
        at = len(scripts) - 1 - scripts[::-1].index("add_plain")  # the add that ran
        after = {True: "take", False: "finish"}[fast]
        assert scripts[at + 1] == after, window.commands
        assert started.jobs == [job.id]
