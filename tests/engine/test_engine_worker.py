"""The worker in-process: retries and their delays, classification, timeouts, bad jobs.

Delays are checked on the Redis clock and only as lower bounds (never "within N seconds")."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pydantic
import pytest
from engine_helpers import HANG, wait_for

from jobqueue import (
    ErrorType,
    Job,
    JobState,
    Queue,
    QueueConfig,
    RetryAfter,
    UnrecoverableError,
    Worker,
)

pytestmark = pytest.mark.integration

FAST = {"NETWORK_ERROR": 0.02, "UNKNOWN": 0.02, "RATE_LIMIT": 0.05}


class Running:
    """Starts workers in this event loop (each on a queue of its own config); `worker` is the
    latest one, for tests that watch it."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self.redis_url, self.prefix = redis_url, prefix
        self.workers: list[tuple[Worker, asyncio.Task[None]]] = []
        self.queues: list[Queue] = []

    @property
    def worker(self) -> Worker:
        return self.workers[-1][0]

    async def __call__(self, handler: Any, *, concurrency: int = 1, **options: Any) -> Queue:
        options.setdefault("retry_delays", FAST)
        options.setdefault("drain_delay", 0.5)
        q = Queue(QueueConfig("wq", **options), redis=self.redis_url, prefix=self.prefix)
        self.queues.append(q)
        w = Worker(q, handler, concurrency=concurrency, handle_signals=False, shutdown_grace=1)
        self.workers.append((w, asyncio.create_task(w.run())))
        return q

    async def close(self) -> None:
        for w, task in self.workers:
            await w.close()
            await task
        for q in self.queues:
            await q.close()


@pytest.fixture
async def running(redis_url: str, prefix: str) -> AsyncIterator[Running]:
    started = Running(redis_url, prefix)
    yield started
    await started.close()


async def finished(q: Queue, job_id: str, timeout: float = HANG) -> Job:
    async def done() -> bool:
        return await q.get_job_state(job_id) in (JobState.COMPLETED, JobState.FAILED)

    await wait_for(done, timeout=timeout, what=f"job {job_id} to finish")
    job = await q.get_job(job_id)
    assert job is not None
    return job


async def test_success_and_result(running: Any) -> None:
    async def handler(job: Job) -> Any:
        await job.update_progress(50)
        return {"echo": job.data}

    q = await running(handler)
    job = await q.add("echo", {"a": [1, 2]})
    done = await finished(q, job.id)
    assert done.state == JobState.COMPLETED
    assert done.result == {"echo": {"a": [1, 2]}}
    assert done.progress == 50 and done.attempts_made == 1
    assert done.started_at is not None and done.finished_at is not None


async def event_times(q: Queue, job_id: str) -> list[tuple[str, int]]:
    """(event, Redis ms) of a job's events, oldest first."""
    out = []
    for _, f in await q.redis.xrange(q.keys.events):
        if f.get(b"id") == job_id.encode():
            out.append((f[b"ev"].decode(), int(f[b"ts"])))
    return out


async def test_retries_back_off_exponentially(running: Any) -> None:
    async def handler(job: Job) -> str:
        if job.attempt < 3:
            raise ConnectionResetError("peer reset")
        return "ok"

    q = await running(handler, attempts=3, retry_delays={"NETWORK_ERROR": 0.1})
    job = await q.add("x", None)
    done = await finished(q, job.id)
    assert done.state == JobState.COMPLETED and done.attempts_made == 3
    assert done.error_type == "NETWORK_ERROR"  # the last failure stays visible
    evs = await event_times(q, job.id)
    assert [e for e, _ in evs] == [
        "added",
        *["active", "retrying"] * 2,
        "active",
        "completed",
    ]
    # from each failure to the next start, on the Redis clock: delay * 2 ** (attempt - 1),
    # never less
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(evs) if a[0] == "retrying"]
    assert gaps[0] >= 100 and gaps[1] >= 200, gaps


async def test_gives_up_after_attempts(running: Any) -> None:
    calls = 0

    async def handler(job: Job) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("always")

    q = await running(handler, attempts=2)
    job = await q.add("x", None)
    done = await finished(q, job.id)
    assert done.state == JobState.FAILED and done.attempts_made == 2 and calls == 2
    assert done.error_type == ErrorType.UNKNOWN and "always" in (done.error_message or "")


@pytest.mark.parametrize(
    ("exc", "etype"),
    [
        (UnrecoverableError("no"), ErrorType.UNKNOWN),
        (UnrecoverableError("auth", error_type=ErrorType.API_ERROR), ErrorType.API_ERROR),
        (None, ErrorType.VALIDATION_ERROR),  # a pydantic ValidationError of the input
    ],
)
async def test_not_retried(running: Any, exc: Exception | None, etype: ErrorType) -> None:
    class Model(pydantic.BaseModel):
        n: int

    calls = 0

    async def handler(job: Job) -> None:
        nonlocal calls
        calls += 1
        if exc is None:
            Model.model_validate(job.data)
        raise exc  # type: ignore[misc]

    q = await running(handler, attempts=5)
    job = await q.add("x", {"n": "not a number"})
    done = await finished(q, job.id)
    assert done.state == JobState.FAILED and calls == 1 and done.error_type == etype


async def test_timeout_cancels_and_retries(running: Any) -> None:
    cancelled = 0

    async def handler(job: Job) -> None:
        nonlocal cancelled
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled += 1
            raise

    q = await running(handler, timeout=0.1, attempts=2)
    job = await q.add("x", None)
    done = await finished(q, job.id)
    assert done.state == JobState.FAILED and done.attempts_made == 2 and cancelled == 2
    assert done.error_type == ErrorType.NETWORK_ERROR
    assert "timed out" in (done.error_message or "")


async def test_rate_limit_defers_without_attempt(running: Any) -> None:
    calls = 0

    async def handler(job: Job) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RetryAfter(0.2, "429 from the API", error_type=ErrorType.RATE_LIMIT)
        return "ok"

    q = await running(handler, attempts=1)
    job = await q.add("x", None)
    done = await finished(q, job.id)
    assert done.state == JobState.COMPLETED and calls == 2
    assert done.attempts_made == 1  # the deferral spent no attempt (attempts=1 still ran twice)


async def test_unknown_name_and_unserializable_result(running: Any) -> None:
    async def ok(job: Job) -> Any:
        return {1, 2} if job.data == "set" else "fine"

    q = await running({"known": ok})
    unknown = await q.add("mystery", None)
    bad = await q.add("known", "set")
    good = await q.add("known", None)
    assert (await finished(q, unknown.id)).error_type == ErrorType.VALIDATION_ERROR
    bad_done = await finished(q, bad.id)
    assert bad_done.state == JobState.FAILED and "JSON" in (bad_done.error_message or "")
    assert (await finished(q, good.id)).result == "fine"


async def test_corrupt_job_fails_and_worker_keeps_going(running: Any) -> None:
    async def handler(job: Job) -> str:
        return "ok"

    q = await running(handler)
    await q.pause()
    bad = await q.add("x", None)
    await q.redis.hset(q.keys.jobs, bad.id, b"\x80not json")
    good = await q.add("x", None)
    await q.resume()
    assert (await finished(q, bad.id)).state == JobState.FAILED
    assert (await finished(q, good.id)).state == JobState.COMPLETED


async def test_concurrency_and_batching(running: Any) -> None:
    active = 0
    peak = 0

    async def handler(job: Job) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1
        return int(job.data)

    q = await running(handler, concurrency=8)
    await q.add_bulk([("x", i) for i in range(300)])

    async def all_done() -> bool:
        return (
            (await q.get_job_counts())["completed"] >= 100
            and active == 0
            and (await q.get_job_counts())["waiting"] == 0
        )

    await wait_for(all_done, what="300 jobs")
    assert 1 < peak <= 8


async def test_idle_worker_wakes_for_new_and_delayed_jobs(running: Any) -> None:
    seen: list[str] = []

    async def handler(job: Job) -> None:
        seen.append(job.id)

    # an idle worker checks again on its own only every drain_delay: with a drain_delay far
    # longer than the test's deadlines, only a wake-up can explain a job being run
    q = await running(handler, drain_delay=600.0)
    worker = running.worker

    async def took_once() -> bool:
        return worker.last_take > 0  # its first take found nothing: it waits now

    await wait_for(took_once, what="the worker's first take")
    now = await q.add("x", None)
    await finished(q, now.id)  # woken by the add, not polled
    later = await q.add("x", None, delay=0.3)
    done = await finished(q, later.id)  # woken when due, as the take script said
    assert seen == [now.id, later.id]
    assert done.started_at is not None and done.created_at is not None
    assert (done.started_at - done.created_at).total_seconds() >= 0.3  # not before it was due


async def test_graceful_close_hands_back(redis_url: str, prefix: str) -> None:
    started = asyncio.Event()

    async def handler(job: Job) -> None:
        started.set()
        await asyncio.sleep(3600)

    q = Queue(QueueConfig("hb"), redis=redis_url, prefix=prefix)
    w = Worker(q, handler, handle_signals=False, shutdown_grace=0.1)
    task = asyncio.create_task(w.run())
    job = await q.add("x", None)
    await asyncio.wait_for(started.wait(), HANG)
    await w.close()
    await task
    got = await q.get_job(job.id)
    assert got is not None and got.state == JobState.WAITING and got.attempts_made == 0
    await q.close()


async def test_a_forced_stop_outlasts_a_lost_cancellation(redis_url: str, prefix: str) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    lost = 0

    async def handler(job: Job) -> None:
        nonlocal lost
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            lost += 1  # dropped, as redis-py's write timeout drops one on Python 3.11
        await release.wait()  # and the handler runs on

    q = Queue(QueueConfig("lost"), redis=redis_url, prefix=prefix)
    w = Worker(q, handler, handle_signals=False, shutdown_grace=0)
    task = asyncio.create_task(w.run())
    try:
        await q.add("x", None)
        await asyncio.wait_for(started.wait(), HANG)
        # the worker cancels again a handler that runs on after its cancellation was lost
        # (as redis-py's write timeout can drop one on Python 3.11), so a forced stop ends
        await asyncio.wait_for(w.close(force=True), HANG)
        assert lost == 1
        got = await q.get_job("1")
        assert got is not None and got.state == JobState.WAITING  # handed back, no attempt
        assert got.attempts_made == 0
    finally:
        release.set()
        await w.close()
        await task
        await q.close()


async def test_deferral_without_attempt_does_not_hold_the_queue(running: Any) -> None:
    calls: dict[str, int] = {}

    async def handler(job: Job) -> str:
        calls[job.id] = calls.get(job.id, 0) + 1
        if job.data == "db" and calls[job.id] == 1:
            raise RetryAfter(
                1.0, "database away", error_type=ErrorType.NETWORK_ERROR, spend_attempt=False
            )
        return "ok"

    q = await running(handler, attempts=1)
    # both at once, so that `other` waits behind `first` (concurrency 1) when first defers
    first, other = await q.add_bulk([("x", "db"), ("x", "plain")])
    done_other = await finished(q, other.id)
    assert done_other.state == JobState.COMPLETED
    done = await finished(q, first.id)
    assert done.state == JobState.COMPLETED and done.attempts_made == 1 and calls[first.id] == 2
    # on the Redis clock: `other` started before first's deferral ended (a held queue would
    # have started nothing until then), and first did not run again before it ended
    [(_, deferred_at)] = [e for e in await event_times(q, first.id) if e[0] == "retrying"]
    [(_, other_started)] = [e for e in await event_times(q, other.id) if e[0] == "active"]
    first_again = [t for e, t in await event_times(q, first.id) if e == "active"][1]
    assert other_started < deferred_at + 1000
    assert first_again >= deferred_at + 1000
    assert not await q.redis.exists(q.keys.limited)
