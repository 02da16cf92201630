"""The event stream (QueueEvents) and Job.wait_until_finished, against a real Redis.

"At once" and "interrupts" are shown without a stopwatch: the blocking read that would
otherwise have to end is made far longer than the test's deadlines, or the commands sent are
counted on a server of the test's own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from ops_helpers import HANG, wait_for
from servers import RedisProcess

from jobqueue import (
    Event,
    Job,
    JobFailedError,
    JobNotFoundError,
    QueueEvents,
    UnrecoverableError,
)
from jobqueue.core.replies import Retention, TakeLimits


@pytest.fixture
def own_server() -> Iterator[RedisProcess]:
    """A server of the test's own: its counters and blocked clients are the test's alone."""
    server = RedisProcess().start()
    try:
        yield server
    finally:
        server.close()


async def calls_of(queue, command: str) -> int:
    stats = await queue.redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def blocked_clients(queue) -> int:
    return int((await queue.redis.info("clients"))["blocked_clients"])


@pytest.fixture
def long_block() -> float:
    """`wait_until_finished` blocks 600 s per read instead of 5 s: a wait that ends within a
    test's deadline was not ended by its read timing out."""
    return 600.0


async def take(events: QueueEvents, n: int, timeout: float = HANG) -> list[Event]:
    """The next `n` events of `events`."""
    out: list[Event] = []
    async with asyncio.timeout(timeout):
        async for event in events:
            out.append(event)
            if len(out) == n:
                break
    return out


async def test_reader_that_reconnects_from_its_last_id_misses_nothing(make_queue, run_worker):
    queue = make_queue("events")
    jobs = [await queue.add("step", {"i": i}) for i in range(3)]
    await queue.pause()

    events = queue.events(last_id="0")
    first = await take(events, 2)
    last_id = events.last_id
    await events.close()
    assert last_id == first[-1].id

    # more changes while nobody listens: a worker runs everything
    await queue.resume()

    async def handler(job: Job) -> int:
        await job.update_progress(50)
        return int(job.data["i"]) * 10

    run_worker(queue, handler, concurrency=1)
    for job in jobs:
        await job.wait_until_finished(timeout=HANG)

    total = await queue.redis.xlen(queue.keys.events)
    async with queue.events(last_id=last_id) as events:
        rest = await take(events, total - len(first))
    seen = first + rest
    stream = await queue.redis.xrange(queue.keys.events)
    assert [e.id for e in seen] == [eid.decode() for eid, _ in stream]

    names = [e.event for e in seen]
    assert names[:5] == ["added", "added", "added", "paused", "resumed"]
    for job in jobs:
        mine = [e.event for e in seen if e.job_id == job.id]
        assert mine == ["added", "active", "progress", "completed"]
    completed = [e for e in seen if e.event == "completed"]
    assert [e.job_id for e in completed] == [j.id for j in jobs]
    assert all(e.ts > 0 and e.fields["ev"] == e.event for e in seen)
    assert next(e for e in seen if e.event == "paused").job_id is None


async def test_events_from_now_on_and_close_interrupts_a_blocked_read(make_queue, own_server):
    queue = make_queue("events-now", redis=own_server.url)
    await queue.add("old")
    # reads block 600 s: a read that ends within the test's deadline was interrupted
    events = QueueEvents(queue, block=600.0)  # last_id "$": only what comes next
    reader = asyncio.create_task(take(events, 1))

    async def positioned() -> bool:
        return events.last_id != "$"  # "$" was resolved to the newest id when reading began

    await wait_for(positioned, what="the reader to start")
    job = await queue.add("new")
    (event,) = await reader
    assert (event.event, event.job_id, event.fields["name"]) == ("added", job.id, "new")

    blocked = asyncio.create_task(take(events, 1))

    async def blocking() -> bool:
        return await blocked_clients(queue) == 1

    await wait_for(blocking, what="the read to block in Redis")
    await events.close()
    assert await asyncio.wait_for(blocked, HANG) == []
    assert await blocked_clients(queue) == 0  # its connection is closed, not left blocking


async def test_wait_until_finished_returns_the_result(make_queue, run_worker):
    queue = make_queue("wait-ok")

    async def handler(job: Job) -> dict[str, object]:
        await asyncio.sleep(0.2)
        return {"double": job.data * 2}

    job = await queue.add("double", 21)
    run_worker(queue, handler)
    assert await job.wait_until_finished(timeout=HANG) == {"double": 42}


async def test_wait_until_finished_on_a_finished_job_answers_from_its_state(
    make_queue, run_worker, own_server
):
    queue = make_queue("wait-done", redis=own_server.url)

    async def handler(job: Job) -> int:
        return 7

    job = await queue.add("x")
    run_worker(queue, handler)
    assert await job.wait_until_finished(timeout=HANG) == 7
    # already finished: the job's state answers, without a read of the stream
    reads = await calls_of(queue, "xread")
    assert await job.wait_until_finished(timeout=HANG) == 7
    assert await calls_of(queue, "xread") == reads


async def test_wait_until_finished_raises_when_the_job_fails(make_queue, run_worker):
    queue = make_queue("wait-fail", attempts=2)

    async def handler(job: Job) -> None:
        if job.attempt == 1:
            raise RuntimeError("first attempt breaks")  # retried after 0.1 s
        raise UnrecoverableError("bad input")

    job = await queue.add("x")
    run_worker(queue, handler)
    with pytest.raises(JobFailedError) as info:
        await job.wait_until_finished(timeout=HANG)
    assert info.value.job_id == job.id
    assert "bad input" in info.value.error_message
    fresh = await queue.get_job(job.id)
    assert fresh is not None and fresh.attempts_made == 2


async def test_wait_until_finished_times_out(make_queue, long_block):
    queue = make_queue("wait-timeout")
    job = await queue.add("never-run")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        # the timeout interrupts a blocked read (one that would last 600 s)
        await asyncio.wait_for(job.wait_until_finished(timeout=0.3, block=long_block), HANG)
    assert time.monotonic() - started >= 0.3  # not before its time


async def test_wait_until_finished_on_a_removed_job(make_queue, own_server, long_block):
    queue = make_queue("wait-removed", redis=own_server.url)
    job = await queue.add("x")
    waiter = asyncio.create_task(job.wait_until_finished(timeout=HANG, block=long_block))

    async def waiting() -> bool:
        return await blocked_clients(queue) == 1

    await wait_for(waiting, what="the waiter to block on the stream")
    assert await queue.remove(job.id)
    with pytest.raises(JobNotFoundError):
        await waiter  # the `removed` event ended the wait, not its 600 s read


async def test_wait_until_finished_on_a_missing_job(make_queue):
    queue = make_queue("wait-missing")
    job = await queue.add("x")
    assert await queue.remove(job.id)
    with pytest.raises(JobNotFoundError, match="not found"):
        await job.wait_until_finished(timeout=HANG)


async def test_wait_until_finished_when_retention_removed_the_result(
    make_queue, run_worker, own_server
):
    queue = make_queue("wait-trimmed", redis=own_server.url, keep_completed=(0, None))

    async def handler(job: Job) -> int:
        return 1

    job = await queue.add("x")
    waiter = asyncio.create_task(job.wait_until_finished(timeout=HANG))

    async def waiting() -> bool:  # before the job runs: it sees the `completed` event
        return await blocked_clients(queue) == 1

    await wait_for(waiting, what="the waiter to block on the stream")
    run_worker(queue, handler)
    with pytest.raises(JobNotFoundError, match="removed"):
        await waiter
    assert await queue.get_job(job.id) is None


async def test_wait_until_finished_when_the_job_stalls_for_good(make_queue, long_block):
    queue = make_queue("wait-stalled", max_stalls=0)
    job = await queue.add("x")
    # a worker that took the job and died: its lease (1 ms) is never renewed
    taken = await queue.scripts.take(1, TakeLimits(worker="dead", lease_ms=1))
    assert [t.job_id for t in taken.jobs] == [job.id]
    waiter = asyncio.create_task(job.wait_until_finished(timeout=HANG, block=long_block))

    async def recovered() -> bool:
        reply = await queue.scripts.recover(
            owner="me", max_stalls=0, lock_ms=1, batch=10, retention=Retention()
        )
        return reply is not None and reply.failed == [job.id]

    await wait_for(recovered, what="the stall check to fail the job")
    with pytest.raises(JobFailedError) as info:
        await waiter
    assert info.value.error_type == "STALLED"
