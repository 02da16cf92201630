"""`jobqueue.testing.run_until_empty`: burst mode, on fakeredis and on the test Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from jobqueue import ConfigError, ErrorType, Job, JobFailedError, Queue, QueueConfig
from jobqueue.testing import BurstResult, fake_redis, run_until_empty

pytestmark = pytest.mark.integration

QUICK = {"retry_delays": {"UNKNOWN": 0.02}, "drain_delay": 0.5}


@pytest.fixture(params=["fakeredis", "redis"])
async def make_queue(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[..., Queue]]:
    """Queues on a fresh fakeredis server, or on the test Redis under the test's prefix."""
    made: list[Queue] = []
    client: Redis | None = None
    if request.param == "fakeredis":
        client = fake_redis()
        redis: str | Redis = client
        prefix = "jq"
    else:
        redis = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("prefix")

    def make(name: str = "burst", **options: Any) -> Queue:
        queue = Queue(QueueConfig(name, **{**QUICK, **options}), redis=redis, prefix=prefix)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await queue.close()
    if client is not None:
        await client.aclose()


async def test_runs_every_job_and_returns_their_results(make_queue: Any) -> None:
    q = make_queue()
    jobs = await q.add_bulk([("double", n) for n in range(5)])

    async def double(job: Job) -> int:
        return int(job.data) * 2

    result = await run_until_empty(q, double, concurrency=3)
    assert result.results == {job.id: n * 2 for n, job in enumerate(jobs)}
    assert result.failed == [] and result.retried == [] and result.errors == {}
    assert result.counts["completed"] == 5
    assert result.counts["waiting"] == result.counts["active"] == result.counts["delayed"] == 0


async def test_without_a_handler_the_queues_tasks_run(make_queue: Any) -> None:
    q = make_queue("tasks")

    @q.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    @q.task(name="shout")
    def shout(word: str) -> str:  # a plain def: the worker's thread pool
        return word.upper()

    first = await add.enqueue(2, 3)
    second = await shout.enqueue("hi")
    result = await run_until_empty(q)
    assert result.results == {first.id: 5, second.id: "HI"}


async def test_an_empty_queue_returns_at_once(make_queue: Any) -> None:
    result = await run_until_empty(make_queue(), lambda job: None)
    assert result == BurstResult(counts=result.counts)
    assert result.counts["completed"] == 0


async def test_retries_are_waited_for_and_failures_reported(make_queue: Any) -> None:
    q = make_queue(attempts=3)
    flaky = await q.add("flaky", None)
    broken = await q.add("broken", None)
    tries: dict[str, int] = {}

    async def handler(job: Job) -> str:
        tries[job.id] = tries.get(job.id, 0) + 1
        if job.name == "broken" or tries[job.id] < 2:
            raise RuntimeError(f"{job.name} attempt {tries[job.id]}")
        return "ok"

    result = await run_until_empty(q, handler)
    assert result.results == {flaky.id: "ok"}
    assert [j.id for j in result.failed] == [broken.id]
    assert result.failed[0].error_type == ErrorType.UNKNOWN
    assert sorted(j.id for j in result.retried) == sorted([flaky.id, broken.id, broken.id])
    assert str(result.errors[broken.id]) == "broken attempt 3"
    assert tries == {flaky.id: 2, broken.id: 3}


async def test_raise_on_failure_raises_from_the_handlers_error(make_queue: Any) -> None:
    q = make_queue(attempts=1)
    await q.add("x", None)

    async def handler(job: Job) -> None:
        raise ValueError("no such customer")

    with pytest.raises(JobFailedError, match="no such customer") as failed:
        await run_until_empty(q, handler, raise_on_failure=True)
    assert isinstance(failed.value.__cause__, ValueError)


async def test_jobs_added_by_handlers_run_too(make_queue: Any) -> None:
    q = make_queue()
    await q.add("parent", 3)

    async def handler(job: Job) -> int:
        if job.data:
            await q.add("child", job.data - 1)
        return int(job.data)

    result = await run_until_empty(q, handler)
    assert sorted(result.results.values()) == [0, 1, 2, 3]


async def test_delayed_jobs_run_unless_told_not_to_wait(make_queue: Any) -> None:
    q = make_queue()
    # an hour's delay: no run, however slow the machine, sees it due
    later = await q.add("later", None, delay=3600)
    await q.add("now", None)
    result = await run_until_empty(q, lambda job: job.name, delayed=False)
    assert list(result.results.values()) == ["now"]
    assert result.counts["delayed"] == 1
    await q.remove(later.id)
    soon = await q.add("soon", None, delay=0.1)
    result = await run_until_empty(q, lambda job: job.name)
    assert result.results == {soon.id: "soon"}


async def test_the_callers_hooks_still_fire(make_queue: Any) -> None:
    q = make_queue(attempts=1)
    await q.add("good", None)
    await q.add("bad", None)
    seen: list[tuple[str, str]] = []

    async def on_completed(job: Job, result: Any) -> None:
        seen.append(("completed", job.name))

    def on_failed(job: Job, error: BaseException) -> None:
        seen.append(("failed", job.name))

    def handler(job: Job) -> None:  # a plain def: run in the worker's thread pool
        if job.name == "bad":
            raise RuntimeError("bad")

    result = await run_until_empty(q, handler, on_completed=on_completed, on_failed=on_failed)
    assert sorted(seen) == [("completed", "good"), ("failed", "bad")]
    assert len(result.completed) == len(result.failed) == 1


async def test_a_paused_queue_times_out_and_says_why(make_queue: Any) -> None:
    q = make_queue()
    job = await q.add("held", None)
    await q.pause()
    with pytest.raises(TimeoutError, match="'paused': 1"):
        await run_until_empty(q, lambda job: None, timeout=0.3)
    await q.resume()
    result = await run_until_empty(q, lambda job: "ran")
    assert result.results == {job.id: "ran"}


async def test_a_cancelled_run_hands_its_running_job_back(make_queue: Any) -> None:
    q = make_queue()
    job = await q.add("slow", None)
    started = asyncio.Event()

    async def slow(job: Job) -> None:
        started.set()
        await asyncio.Event().wait()

    runner = asyncio.create_task(run_until_empty(q, slow, timeout=60))
    await asyncio.wait_for(started.wait(), 20)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    got = await q.get_job(job.id)
    # handed back to the front of the queue at once, no attempt spent, no stall to wait for
    assert got is not None and got.state == "waiting" and got.attempts_made == 0


async def test_a_queue_without_events_still_ends(make_queue: Any) -> None:
    q = make_queue(events_maxlen=0)
    await q.add_bulk([("x", n) for n in range(3)])
    result = await run_until_empty(q, lambda job: job.data)
    assert sorted(result.results.values()) == [0, 1, 2]


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), True, "5"])
async def test_a_bad_timeout_is_refused(make_queue: Any, timeout: Any) -> None:
    with pytest.raises(ConfigError, match="timeout"):
        await run_until_empty(make_queue(), lambda job: None, timeout=timeout)


async def test_a_bad_worker_option_is_refused(make_queue: Any) -> None:
    with pytest.raises(ConfigError, match="concurrency"):
        await run_until_empty(make_queue(), lambda job: None, concurrency=0)
