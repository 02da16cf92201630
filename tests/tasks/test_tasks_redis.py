"""Tasks on a real Redis: enqueued by their functions, run by `Worker(queue, queue.tasks)`,
results back through JSON; unknown tasks and bad data fail once; bad calls write nothing."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from jobqueue import (
    ErrorType,
    InvalidJobError,
    Job,
    JobFailedError,
    JobState,
    PayloadTooLargeError,
    Queue,
    Worker,
    get_current_job,
)

pytestmark = pytest.mark.integration

MakeQueue = Callable[..., Queue]
RunTasks = Callable[[Queue], Worker]
DEADLINE = 30.0  # only bounds a hang


async def keys_under(redis_url: str, prefix: str) -> list[bytes]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        return [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    finally:
        await client.aclose()


async def failure_of(job: Job) -> JobFailedError:
    with pytest.raises(JobFailedError) as info:
        await job.wait_until_finished(timeout=DEADLINE)
    return info.value


async def test_async_tasks_return_their_result_through_json(
    make_queue: MakeQueue, run_tasks: RunTasks
) -> None:
    queue = make_queue()

    @queue.task
    async def add(a: int, b: int = 10) -> int:
        await asyncio.sleep(0)
        return a + b

    @queue.task(name="summary")
    async def summary(values: list[int], *, label: str) -> dict[str, Any]:
        return {"label": label, "pair": (values[0], values[-1]), "total": sum(values)}

    jobs = [
        await add.enqueue(1, 2),
        await add.enqueue(5),
        await queue.enqueue(add, 1, b=3),
        await queue.enqueue("summary", [1, 2, 3], label="s"),
        await summary.enqueue_call(([4, 5],), {"label": "call"}),
    ]
    assert jobs[0].name == add.name and jobs[0].data == {"args": [1, 2], "kwargs": {}}
    assert jobs[3].data == {"args": [[1, 2, 3]], "kwargs": {"label": "s"}}
    run_tasks(queue)
    results = [await job.wait_until_finished(timeout=DEADLINE) for job in jobs]
    assert results[:3] == [3, 15, 4]
    # as the function returned it, through JSON: the tuple comes back a list
    assert results[3] == {"label": "s", "pair": [1, 3], "total": 6}
    assert results[4] == {"label": "call", "pair": [4, 5], "total": 9}
    stored = await queue.get_job(jobs[0].id)
    assert stored is not None and stored.result == 3 and stored.state == JobState.COMPLETED


async def test_sync_tasks_return_their_result(make_queue: MakeQueue, run_tasks: RunTasks) -> None:
    queue = make_queue(attempts=1)

    @queue.task
    def scale(values: list[float], factor: float = 2.0) -> dict[str, Any]:
        return {"scaled": [v * factor for v in values], "as_tuple": (factor,)}

    job = await scale.enqueue([1.5, 2], factor=3)
    run_tasks(queue)
    assert await job.wait_until_finished(timeout=DEADLINE) == {
        "scaled": [4.5, 6],
        "as_tuple": [3],
    }


async def test_a_blocking_sync_task_does_not_stall_async_ones(
    make_queue: MakeQueue, run_tasks: RunTasks
) -> None:
    """The sync task blocks its thread until the async task, run by the same worker, sets the
    gate: had the sync task run on the event loop, neither would ever finish."""
    queue = make_queue()
    gate = threading.Event()

    @queue.task
    def wait_for_gate() -> str:
        if not gate.wait(DEADLINE):
            raise RuntimeError("the gate was never opened")
        return threading.current_thread().name

    @queue.task
    async def open_gate() -> str:
        gate.set()
        return "opened"

    blocked = await wait_for_gate.enqueue()
    opener = await open_gate.enqueue()
    run_tasks(queue)
    assert await opener.wait_until_finished(timeout=DEADLINE) == "opened"
    thread = await blocked.wait_until_finished(timeout=DEADLINE)
    assert thread != threading.main_thread().name


async def test_tasks_see_their_job_as_the_current_one(
    make_queue: MakeQueue, run_tasks: RunTasks
) -> None:
    queue = make_queue()

    @queue.task
    async def which_async() -> list[Any]:
        job = get_current_job()
        assert job is not None
        await job.update_progress(50)
        return [job.id, job.name]

    @queue.task
    def which_sync() -> list[Any]:
        job = get_current_job()
        assert job is not None
        return [job.id, job.name]

    a, s = await which_async.enqueue(), await which_sync.enqueue()
    run_tasks(queue)
    assert await a.wait_until_finished(timeout=DEADLINE) == [a.id, which_async.name]
    assert await s.wait_until_finished(timeout=DEADLINE) == [s.id, which_sync.name]
    stored = await queue.get_job(a.id)
    assert stored is not None and stored.progress == 50


async def test_unknown_task_fails_once_without_retry(
    make_queue: MakeQueue, run_tasks: RunTasks
) -> None:
    queue = make_queue(attempts=5)

    @queue.task
    async def known() -> str:
        return "ok"

    # a producer that names a task this worker's queue does not have
    job = await queue.add("myapp.missing_task", {"args": [], "kwargs": {}})
    run_tasks(queue)
    error = await failure_of(job)
    assert error.error_type == ErrorType.VALIDATION_ERROR
    assert "'myapp.missing_task'" in error.error_message
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.attempts_made == 1
    assert await (await known.enqueue()).wait_until_finished(timeout=DEADLINE) == "ok"


async def test_unknown_task_message_names_the_queue(
    make_queue: MakeQueue, run_tasks: RunTasks
) -> None:
    queue = make_queue("named-queue", attempts=5)
    queue.task(name="known")(lambda: 1)
    job = await queue.add("myapp.missing_task", {"args": [], "kwargs": {}})
    run_tasks(queue)
    error = await failure_of(job)
    assert "'myapp.missing_task'" in error.error_message
    assert "named-queue" in error.error_message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"x": 1}, '{"args": [...], "kwargs": {...}}'),
        ([1, 2], '{"args": [...], "kwargs": {...}}'),
        ({"args": [1, 2, 3], "kwargs": {}}, "too many positional arguments"),
        ({"args": [], "kwargs": {"c": 1}}, "missing a required argument: 'a'"),
    ],
)
async def test_bad_job_data_fails_once_naming_task_and_queue(
    make_queue: MakeQueue, run_tasks: RunTasks, data: Any, expected: str
) -> None:
    queue = make_queue("shape-q", attempts=5)
    calls: list[Any] = []

    @queue.task
    async def pair(a: int, b: int = 0) -> int:
        calls.append((a, b))
        return a + b

    job = await queue.add(pair.name, data)
    run_tasks(queue)
    error = await failure_of(job)
    assert error.error_type == ErrorType.VALIDATION_ERROR
    assert expected in error.error_message
    assert pair.name in error.error_message and "queue 'shape-q'" in error.error_message
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.attempts_made == 1
    assert calls == []


async def test_an_error_inside_the_task_is_retried_as_usual(
    make_queue: MakeQueue, run_tasks: RunTasks
) -> None:
    """A TypeError raised by the function itself is not a binding error: it is retried."""
    queue = make_queue(attempts=3)
    runs: list[int] = []

    @queue.task
    async def flaky(n: int) -> int:
        runs.append(n)
        if len(runs) < 3:
            raise TypeError("inside the task")
        return n

    job = await flaky.enqueue(7)
    run_tasks(queue)
    assert await job.wait_until_finished(timeout=DEADLINE) == 7
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.attempts_made == 3 and runs == [7, 7, 7]


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "problem"),
    [
        ((), {}, InvalidJobError, "missing a required argument: 'a'"),
        ((1, 2, 3), {}, InvalidJobError, "too many positional arguments"),
        ((1,), {"z": 1}, InvalidJobError, "unexpected keyword argument 'z'"),
        (({1, 2},), {}, InvalidJobError, "not JSON-serializable"),
        ((math.nan,), {}, InvalidJobError, "not JSON-serializable"),
        ((1,), {"b": object()}, InvalidJobError, "not JSON-serializable"),
        (("x" * 5000,), {}, PayloadTooLargeError, "over the limit of 4096"),
    ],
)
async def test_bad_arguments_write_nothing(
    redis_url: str,
    prefix: str,
    make_queue: MakeQueue,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: type[Exception],
    problem: str,
) -> None:
    queue = make_queue(max_payload=4096)

    @queue.task
    async def pair(a: Any, b: Any = 0) -> None: ...

    with pytest.raises(error) as info:
        await pair.enqueue(*args, **kwargs)
    assert type(info.value) is error
    assert pair.name in str(info.value) and problem in str(info.value)
    with pytest.raises(error):
        await queue.enqueue(pair, *args, **kwargs)
    assert await keys_under(redis_url, prefix) == []


async def test_bad_options_write_nothing(
    redis_url: str, prefix: str, make_queue: MakeQueue
) -> None:
    queue = make_queue()

    @queue.task
    async def one(a: int) -> int:
        return a

    for options in ({"delay": -1}, {"priority": 2**30}, {"attempts": 0}, {"job_id": "12"}):
        with pytest.raises(InvalidJobError, match=one.name):
            await one.enqueue(1, **options)
    assert await keys_under(redis_url, prefix) == []


async def test_enqueue_options_and_task_defaults(make_queue: MakeQueue) -> None:
    queue = make_queue(attempts=3)

    @queue.task(attempts=5, priority=2)
    async def send(to: str) -> str:
        return to

    default = await send.enqueue("a")
    assert (default.max_attempts, default.priority, default.state) == (5, 2, JobState.WAITING)
    custom = await send.enqueue("b", job_id="send-b", delay=60, priority=9, attempts=1)
    assert (custom.id, custom.max_attempts, custom.priority) == ("send-b", 1, 9)
    assert await queue.get_job_state("send-b") == JobState.DELAYED
    again = await queue.enqueue(send, "other", job_id="send-b")  # deduplicated by id
    assert again.id == "send-b" and again.data == {"args": ["b"], "kwargs": {}}
    counts = await queue.get_job_counts()
    assert (counts["waiting"], counts["delayed"]) == (1, 1)


async def test_enqueue_call_passes_parameters_named_like_options(
    make_queue: MakeQueue, run_tasks: RunTasks
) -> None:
    queue = make_queue()

    @queue.task
    async def later(message: str, delay: float, priority: int = 0) -> list[Any]:
        return [message, delay, priority]

    job = await later.enqueue_call(["hi"], {"delay": 2.5, "priority": 1}, priority=4)
    assert job.priority == 4 and job.state == JobState.WAITING
    run_tasks(queue)
    assert await job.wait_until_finished(timeout=DEADLINE) == ["hi", 2.5, 1]
