"""The event stream (QueueEvents) and Job.wait_until_finished, against a real Redis."""

from __future__ import annotations

import asyncio
import time

import pytest
from ops_helpers import wait_for

from jobqueue import (
    Event,
    Job,
    JobFailedError,
    JobNotFoundError,
    QueueEvents,
    UnrecoverableError,
)


async def take(events: QueueEvents, n: int, timeout: float = 10.0) -> list[Event]:
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
        await job.wait_until_finished(timeout=10)

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


async def test_events_from_now_on_and_close_interrupts_a_blocked_read(make_queue):
    queue = make_queue("events-now")
    await queue.add("old")
    events = QueueEvents(queue, block=30.0)  # last_id "$": only what comes next
    reader = asyncio.create_task(take(events, 1))

    async def positioned() -> bool:
        return events.last_id != "$"  # "$" was resolved to the newest id when reading began

    await wait_for(positioned, what="the reader to start")
    job = await queue.add("new")
    (event,) = await reader
    assert (event.event, event.job_id, event.fields["name"]) == ("added", job.id, "new")

    blocked = asyncio.create_task(take(events, 1))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await events.close()
    assert await asyncio.wait_for(blocked, 2) == []
    assert time.monotonic() - started < 1.0


async def test_wait_until_finished_returns_the_result(make_queue, run_worker):
    queue = make_queue("wait-ok")

    async def handler(job: Job) -> dict[str, object]:
        await asyncio.sleep(0.2)
        return {"double": job.data * 2}

    job = await queue.add("double", 21)
    run_worker(queue, handler)
    assert await job.wait_until_finished(timeout=10) == {"double": 42}
    # already finished: answers at once from the job's state
    assert await job.wait_until_finished(timeout=1) == {"double": 42}


async def test_wait_until_finished_raises_when_the_job_fails(make_queue, run_worker):
    queue = make_queue("wait-fail", attempts=2)

    async def handler(job: Job) -> None:
        if job.attempt == 1:
            raise RuntimeError("first attempt breaks")  # retried after 0.1 s
        raise UnrecoverableError("bad input")

    job = await queue.add("x")
    run_worker(queue, handler)
    with pytest.raises(JobFailedError) as info:
        await job.wait_until_finished(timeout=10)
    assert info.value.job_id == job.id
    assert "bad input" in info.value.error_message
    fresh = await queue.get_job(job.id)
    assert fresh is not None and fresh.attempts_made == 2


async def test_wait_until_finished_times_out(make_queue):
    queue = make_queue("wait-timeout")
    job = await queue.add("never-run")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await job.wait_until_finished(timeout=0.3)
    assert time.monotonic() - started < 2.0


async def test_wait_until_finished_on_a_removed_job(make_queue):
    queue = make_queue("wait-removed")
    job = await queue.add("x")
    waiter = asyncio.create_task(job.wait_until_finished(timeout=5))
    await asyncio.sleep(0.2)
    assert await queue.remove(job.id)
    with pytest.raises(JobNotFoundError):
        await waiter
