"""No busy polling while idle: an idle worker, an idle `QueueEvents` reader and a
`wait_until_finished` on a job that does not finish send a bounded number of commands.

Commands are counted with MONITOR on a server of the test's own, over an idle window measured
on the server's clock; each bound follows from the configured intervals: a loop that sleeps
`interval` between calls makes at most `window / interval + 1` calls in a window (+ 1 more for
a call in flight at each edge). A slow machine makes fewer calls, never more.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from engine_helpers import HANG, CommandMonitor, Window, wait_for
from servers import RedisProcess

from jobqueue import Job, Queue, QueueConfig, QueueEvents, Worker
from jobqueue.events import DEFAULT_BLOCK as WAIT_BLOCK

pytestmark = pytest.mark.integration

IDLE = 2.0  # seconds of idleness watched


@pytest.fixture
async def monitor(own_server: RedisProcess) -> AsyncIterator[CommandMonitor]:
    async with CommandMonitor(own_server.url) as m:
        yield m


@pytest.fixture
async def queue(own_server: RedisProcess, prefix: str) -> AsyncIterator[Queue]:
    config = QueueConfig(
        "idle", lease=30.0, drain_delay=0.5, stall_interval=0.5, heartbeat_interval=0.5
    )
    q = Queue(config, redis=own_server.url, prefix=prefix)
    yield q
    await q.close()


def at_most(window: Window, interval: float) -> float:
    """Calls a loop pacing itself by `interval` can make in the window."""
    return window.seconds / interval + 2


def evalsha(window: Window, script: str) -> int:
    return window.runs(script)  # by EVALSHA or as a function


async def idle_for(seconds: float) -> None:
    await asyncio.sleep(seconds)  # the observation window itself: nothing waits on it


async def test_an_idle_worker_sends_few_commands(queue: Queue, monitor: CommandMonitor) -> None:
    async def handler(job: Job) -> None:
        return None

    worker = Worker(queue, handler, concurrency=4, handle_signals=False)
    task = asyncio.create_task(worker.run())
    try:

        async def settled() -> bool:
            return worker.last_take > 0 and len(await queue.get_workers()) == 1

        await wait_for(settled, what="the worker to start and find nothing to do")
        async with monitor.window() as window:
            await idle_for(IDLE)
    finally:
        await worker.close()
        await task
    cfg = queue.config
    # the main loop: a BZPOPMIN of drain_delay with a `take` behind it (on the redis-py path
    # a `finish` that takes, once the block timed out)
    blocks = window.count("BZPOPMIN")
    assert blocks <= at_most(window, cfg.drain_delay), window.names()
    takes = evalsha(window, "finish") + evalsha(window, "take")
    assert takes <= at_most(window, cfg.drain_delay), window.names()
    # the stall check every stall_interval; no lease renewal without running jobs
    assert evalsha(window, "recover") <= at_most(window, cfg.stall_check_every)
    assert evalsha(window, "renew") == 0
    # the scheduler: one look for due ticks per scheduler_interval
    assert worker.scheduler_interval is not None
    looks = at_most(window, worker.scheduler_interval)
    assert evalsha(window, "scheduler_due") <= looks, window.names()
    # the heartbeat: one MULTI ... EXEC of 6 commands per interval
    beats = window.count("EXEC")
    assert beats <= at_most(window, cfg.heartbeat_interval)
    bound = (
        2 * at_most(window, cfg.drain_delay)
        + at_most(window, cfg.stall_check_every)
        + 6 * at_most(window, cfg.heartbeat_interval)
        + looks
        + 2  # the cancel listener's health-check PING, should one fall in the window
    )
    assert len(window.commands) <= bound, (len(window.commands), bound, window.names())
    # the concurrency of 4 does not multiply anything: one blocking read for all slots
    assert window.count("SUBSCRIBE") == 0


async def test_an_idle_event_reader_sends_few_commands(
    queue: Queue, monitor: CommandMonitor
) -> None:
    block = 0.5
    events = QueueEvents(queue, block=block)
    seen: list[object] = []

    async def read() -> None:
        async for event in events:
            seen.append(event)

    reader = asyncio.create_task(read())
    try:

        async def positioned() -> bool:
            return events.last_id != "$"

        await wait_for(positioned, what="the reader to start")
        async with monitor.window() as window:
            await idle_for(IDLE)
    finally:
        await events.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(reader, HANG)
    assert seen == []
    reads = window.count("XREAD")
    assert reads <= at_most(window, block), window.names()
    assert len(window.commands) <= reads + 1, window.names()  # + a health-check PING


async def test_waiting_for_a_job_that_does_not_finish_sends_few_commands(
    queue: Queue, monitor: CommandMonitor
) -> None:
    job = await queue.add("never-run")
    waiter = asyncio.create_task(job.wait_until_finished(timeout=None))
    try:

        async def blocked() -> bool:
            return monitor.sent("XREAD")

        await wait_for(blocked, what="the waiter to block on the stream")
        async with monitor.window() as window:
            await idle_for(IDLE)
        assert not waiter.done()
    finally:
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(waiter, HANG)
    # one blocking read of the stream per WAIT_BLOCK seconds, and a look at the job's state
    # after each read that timed out (a safety net, should the stream have been trimmed)
    reads = window.count("XREAD")
    assert reads <= at_most(window, WAIT_BLOCK), window.names()
    assert evalsha(window, "getjob") <= reads + 1, window.names()
    assert len(window.commands) <= 2 * reads + 2, window.names()
