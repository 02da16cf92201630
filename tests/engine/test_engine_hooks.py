"""Worker lifecycle hooks, plain `def` handlers in the thread pool, and `get_current_job`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from engine_helpers import HANG, wait_for

from jobqueue import (
    ConfigError,
    Job,
    JobState,
    Queue,
    QueueConfig,
    UnrecoverableError,
    Worker,
    get_current_job,
)
from jobqueue.core.connection import REDIS_ERRORS
from jobqueue.core.replies import TakeLimits

pytestmark = pytest.mark.integration

FAST = {"NETWORK_ERROR": 0.02, "UNKNOWN": 0.02, "RATE_LIMIT": 0.05}


@pytest.fixture
async def start(
    redis_url: str, prefix: str
) -> AsyncIterator[Callable[..., Awaitable[tuple[Queue, Worker]]]]:
    started: list[tuple[Worker, asyncio.Task[None], Queue]] = []

    async def run(handler: Any, *, concurrency: int = 1, **options: Any) -> tuple[Queue, Worker]:
        hooks = {k: options.pop(k) for k in list(options) if k.startswith("on_")}
        options.setdefault("retry_delays", FAST)
        options.setdefault("drain_delay", 0.5)
        q = Queue(QueueConfig("hq", **options), redis=redis_url, prefix=prefix)
        w = Worker(
            q, handler, concurrency=concurrency, handle_signals=False, shutdown_grace=1, **hooks
        )
        started.append((w, asyncio.create_task(w.run()), q))
        return q, w

    yield run
    for w, task, q in started:
        await w.close()
        await task
        await q.close()


async def until(predicate: Callable[[], bool], what: str) -> None:
    async def check() -> bool:
        return predicate()

    await wait_for(check, timeout=HANG, what=what)


async def test_sync_handler_runs_in_a_thread_without_blocking_the_loop(start: Any) -> None:
    loop_thread = threading.get_ident()
    release = threading.Event()
    seen: dict[str, Any] = {}

    def blocking(job: Job) -> dict[str, Any]:
        seen["thread"] = threading.get_ident()
        seen["current"] = get_current_job()
        # blocks its thread until the async job below has run: had it blocked the event
        # loop, that job could never run and this one never end
        assert release.wait(timeout=HANG), "the event loop was blocked"
        return {"n": job.data["n"] * 2}

    async def freeing(job: Job) -> str:
        release.set()
        return "freed"

    q, _ = await start({"blocking": blocking, "freeing": freeing}, concurrency=2)
    slow = await q.add("blocking", {"n": 21})
    fast = await q.add("freeing", None)
    assert await fast.wait_until_finished(timeout=HANG) == "freed"
    assert await slow.wait_until_finished(timeout=HANG) == {"n": 42}
    assert seen["thread"] != loop_thread
    assert seen["current"] is not None and seen["current"].id == slow.id


async def test_sync_handler_errors_are_classified(start: Any) -> None:
    def broken(job: Job) -> None:
        raise UnrecoverableError("no way")

    q, _ = await start(broken, attempts=3)
    job = await q.add("x", None)
    with pytest.raises(Exception, match="no way"):
        await job.wait_until_finished(timeout=HANG)
    got = await q.get_job(job.id)
    assert got is not None and got.state == JobState.FAILED and got.attempts_made == 1


async def test_get_current_job_in_an_async_handler(start: Any) -> None:
    async def handler(job: Job) -> str:
        current = get_current_job()
        assert current is job
        await current.log("hello from inside")
        return current.id

    q, _ = await start(handler)
    job = await q.add("x", None)
    assert await job.wait_until_finished(timeout=HANG) == job.id
    assert await q.get_job_logs(job.id) == ["hello from inside"]
    assert get_current_job() is None


async def test_hooks_see_a_job_through_its_life(start: Any) -> None:
    calls: list[tuple[Any, ...]] = []

    async def handler(job: Job) -> Any:
        await job.update_progress(30)
        if job.data == "fail" and job.attempt == 1:
            raise RuntimeError("first try fails")
        if job.data == "fail":
            raise UnrecoverableError("second try fails for good")
        return {"ok": job.id}

    def on_active(job: Job) -> None:
        calls.append(("active", job.id, job.attempt))

    async def on_progress(job: Job, progress: int) -> None:  # a coroutine hook
        calls.append(("progress", job.id, progress))

    def on_completed(job: Job, result: Any) -> None:
        calls.append(("completed", job.id, result, job.state))

    def on_failed(job: Job, error: BaseException) -> None:
        calls.append(("failed", job.id, str(error), job.state, job.error_type))

    q, _ = await start(
        handler,
        on_active=on_active,
        on_progress=on_progress,
        on_completed=on_completed,
        on_failed=on_failed,
    )
    ok = await q.add("x", "ok", job_id="ok")
    bad = await q.add("x", "fail", job_id="bad")
    await ok.wait_until_finished(timeout=HANG)
    with pytest.raises(Exception, match="for good"):
        await bad.wait_until_finished(timeout=HANG)
    await until(lambda: sum(c[0] == "failed" for c in calls) == 2, "both failure hooks")
    assert ("active", "ok", 1) in calls and ("progress", "ok", 30) in calls
    assert ("completed", "ok", {"ok": "ok"}, JobState.COMPLETED) in calls
    failures = [c for c in calls if c[0] == "failed"]
    assert failures == [
        ("failed", "bad", "first try fails", JobState.DELAYED, "UNKNOWN"),
        ("failed", "bad", "second try fails for good", JobState.FAILED, "UNKNOWN"),
    ]
    assert [c for c in calls if c[:2] == ("active", "bad")] == [
        ("active", "bad", 1),
        ("active", "bad", 2),
    ]


async def test_a_hook_that_raises_does_not_break_the_worker(start: Any) -> None:
    def on_active(job: Job) -> None:
        raise ValueError("a broken hook")

    async def on_completed(job: Job, result: Any) -> None:
        raise ValueError("a broken async hook")

    async def handler(job: Job) -> int:
        return 1

    q, _ = await start(handler, on_active=on_active, on_completed=on_completed)
    for _ in range(3):
        job = await q.add("x", None)
        assert await job.wait_until_finished(timeout=HANG) == 1


async def test_on_stalled_fires_for_a_dead_workers_job(redis_url: str, prefix: str) -> None:
    stalled: list[tuple[str, str]] = []
    # the live worker's own lease is long (a slow machine cannot lose the job it recovered);
    # the dead one held the job with a 50 ms lease, never renewed
    cfg = QueueConfig("stq", lease=30, stall_interval=0.05, drain_delay=0.2)
    q = Queue(cfg, redis=redis_url, prefix=prefix)
    job = await q.add("x", None)
    taken = await q.scripts.take(1, TakeLimits(worker="dead", lease_ms=50))
    assert [t.job_id for t in taken.jobs] == [job.id]

    async def handler(job: Job) -> str:
        return "recovered"

    w = Worker(q, handler, handle_signals=False, on_stalled=lambda i, s: stalled.append((i, s)))
    task = asyncio.create_task(w.run())
    try:
        assert await job.wait_until_finished(timeout=HANG) == "recovered"
        assert (job.id, "waiting") in stalled
    finally:
        await w.close()
        await task
        await q.close()


async def test_on_error_fires_while_redis_is_away(prefix: str) -> None:
    errors: list[BaseException] = []
    # a port nobody listens on: the worker cannot connect, backs off and tells on_error
    q = Queue(QueueConfig("away"), redis="redis://127.0.0.1:1/0", prefix=prefix)

    async def handler(job: Job) -> None:
        return None

    w = Worker(
        q,
        handler,
        handle_signals=False,
        reconnect_backoff=(0.01, 0.05),
        on_error=errors.append,
    )
    task = asyncio.create_task(w.run())
    await until(lambda: len(errors) >= 3, "three on_error calls")
    assert not task.done()  # the worker keeps trying: it never ends on an error
    assert all(isinstance(e, REDIS_ERRORS) for e in errors)
    await w.close()  # only close() (or a signal) ends it
    await task
    await q.close()


def test_worker_without_handler_or_tasks_is_refused(redis_url: str) -> None:
    q = Queue("none", redis=redis_url)
    with pytest.raises(ConfigError, match="no handler"):
        Worker(q)


def test_hooks_must_be_functions(redis_url: str) -> None:
    q = Queue("none", redis=redis_url)
    with pytest.raises(ConfigError, match="on_completed"):
        Worker(q, lambda job: None, on_completed="not a function")  # type: ignore[arg-type]
