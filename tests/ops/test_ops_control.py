"""Queue control: remove, cancel (not active), drain, clean, obliterate, retry, promote, job
logs and cleanup_old_jobs, against a real Redis."""

from __future__ import annotations

import asyncio

import pytest
from ops_helpers import HANG, state_is, wait_for, workers_of

from jobqueue import (
    ConfigError,
    Job,
    JobNotFoundError,
    Limiter,
    QueueStateError,
    UnrecoverableError,
    cleanup_old_jobs,
    discover_queues,
)
from jobqueue.maintenance import discover_queue_keys


async def events_of(queue, name: str) -> list[dict[str, str]]:
    out = []
    for _id, raw in await queue.redis.xrange(queue.keys.events):
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        if fields["ev"] == name:
            out.append(fields)
    return out


async def keys_of(queue) -> set[str]:
    return {k.decode() async for k in queue.redis.scan_iter(match=queue.keys.base + "*")}


def data_keys(keys: set[str]) -> set[str]:
    """Keys without those a running worker rewrites on its own (heartbeat, stall lock)."""
    return {k for k in keys if ":workers" not in k and not k.endswith((":stallcheck", ":marker"))}


async def fail_jobs(queue, run_worker, n: int) -> list[Job]:
    """Add `n` jobs that fail on their first run only, and run them to failure."""

    async def handler(job: Job) -> str:
        await job.log(f"run of {job.id}")
        if await queue.redis.incr(f"{queue.keys.base}runs:{job.id}") == 1:
            raise UnrecoverableError("boom")
        return "ok"

    jobs = [await queue.add("flaky", {"i": i}) for i in range(n)]
    run_worker(queue, handler, concurrency=4)
    for job in jobs:
        await state_is(queue, job.id, "failed")
    return jobs


async def test_remove_deletes_a_job_and_refuses_an_active_one(make_queue, run_worker):
    queue = make_queue("remove")
    waiting = await queue.add("w")
    delayed = await queue.add("d", delay=60)
    prio = await queue.add("p", priority=3)
    await queue.add_job_log(waiting.id, "a line")
    for job in (waiting, delayed, prio):
        assert await queue.remove(job.id) is True
        assert await queue.get_job(job.id) is None
    assert not await queue.redis.exists(queue.keys.logs(waiting.id))
    assert await queue.remove(waiting.id) is False
    assert await queue.get_job_counts() == dict.fromkeys(
        ("waiting", "active", "delayed", "completed", "failed", "paused", "waiting-children"),
        0,
    )
    removed = await events_of(queue, "removed")
    assert [(e["id"], e["prev"]) for e in removed] == [
        (waiting.id, "waiting"),
        (delayed.id, "delayed"),
        (prio.id, "waiting"),
    ]

    started = asyncio.Event()
    release = asyncio.Event()

    async def handler(job: Job) -> None:
        started.set()
        await release.wait()

    active = await queue.add("busy")
    run_worker(queue, handler)
    await asyncio.wait_for(started.wait(), HANG)
    with pytest.raises(QueueStateError):
        await queue.remove(active.id)
    assert await queue.get_job_state(active.id) == "active"
    release.set()
    await active.wait_until_finished(timeout=HANG)
    assert await (await queue.get_job(active.id)).remove() is True


async def test_cancel_of_waiting_delayed_finished_and_missing_jobs(make_queue):
    queue = make_queue("cancel-idle")
    waiting = await queue.add("w")
    delayed = await queue.add("d", delay=30)
    assert await queue.cancel(waiting.id, "not needed") == "removed"
    assert await delayed.cancel() == "removed"
    assert await queue.get_job(waiting.id) is None
    assert await queue.get_job(delayed.id) is None
    removed = await events_of(queue, "removed")
    assert [(e["id"], e["reason"]) for e in removed] == [
        (waiting.id, "not needed"),
        (delayed.id, "cancelled"),
    ]
    assert await queue.cancel("no-such-job") == "not_found"
    assert not await queue.redis.exists(queue.keys.cancels)


async def test_cancel_of_a_finished_job_changes_nothing(make_queue, run_worker):
    queue = make_queue("cancel-done")

    async def handler(job: Job) -> str:
        return "done"

    job = await queue.add("x")
    run_worker(queue, handler)
    assert await job.wait_until_finished(timeout=HANG) == "done"
    assert await queue.cancel(job.id) == "finished"
    assert await queue.get_job_state(job.id) == "completed"


async def test_drain_removes_waiting_and_delayed_jobs_only(make_queue, run_worker):
    queue = make_queue("drain")

    async def handler(job: Job) -> str:
        return "done"

    done = await queue.add("done")
    run_worker(queue, handler)
    await done.wait_until_finished(timeout=HANG)
    await queue.pause()
    await queue.add_bulk([("w", i) for i in range(1500)])  # more than one batch
    await queue.add("p", priority=5)
    await queue.add("p", priority=-5)
    for i in range(3):
        await queue.add("d", i, delay=60)
    assert await queue.drain() == 1505
    counts = await queue.get_job_counts()
    assert counts == {
        "waiting": 0,
        "active": 0,
        "delayed": 0,
        "completed": 1,
        "failed": 0,
        "paused": 0,
        "waiting-children": 0,
    }
    assert len(await events_of(queue, "removed")) == 1505
    assert await queue.drain() == 0
    # only the finished job is left
    left = {k.rsplit(":", 1)[1] for k in await keys_of(queue) if ":s:" in k}
    assert left == {done.id}
    assert [x.decode() for x in await queue.redis.hkeys(queue.keys.jobs)] == [done.id]


async def test_clean_removes_old_jobs_of_one_state(make_queue, run_worker):
    queue = make_queue("clean", attempts=1)

    async def handler(job: Job) -> str:
        if job.data == "fail":
            raise UnrecoverableError("no")
        return "ok"

    jobs = [await queue.add("x", "ok") for _ in range(3)] + [await queue.add("x", "fail")]
    run_worker(queue, handler, concurrency=4)
    for job in jobs:
        await state_is(queue, job.id, "failed" if job.data == "fail" else "completed")
    # nothing finished an hour ago
    assert await queue.clean("completed", 3600) == []
    removed = await queue.clean("completed", 0, limit=2)
    assert len(removed) == 2
    assert sorted(removed + await queue.clean("completed", 0)) == sorted(j.id for j in jobs[:3])
    assert await queue.clean("failed", 0) == [jobs[3].id]
    assert [e["prev"] for e in await events_of(queue, "removed")] == ["completed"] * 3 + ["failed"]

    # waiting and delayed jobs are aged by their creation time
    await queue.pause()
    fresh = await queue.add("w")
    prio = await queue.add("w", priority=1)
    later = await queue.add("d", delay=60)
    assert await queue.clean("waiting", 3600) == []
    assert sorted(await queue.clean("waiting", 0)) == sorted([fresh.id, prio.id])
    assert await queue.clean("delayed", 0) == [later.id]
    assert await queue.get_job_counts() == dict.fromkeys(
        ("waiting", "active", "delayed", "completed", "failed", "paused", "waiting-children"),
        0,
    )
    with pytest.raises(ConfigError):
        await queue.clean("active", 0)
    with pytest.raises(ConfigError):
        await queue.clean("completed", -1)


async def test_clean_waiting_keeps_the_order_of_the_rest(make_queue):
    queue = make_queue("clean-order")
    await queue.pause()
    old = [await queue.add("x", i) for i in range(5)]
    newest = await queue.get_job(old[-1].id)
    created = round(newest.created_at.timestamp() * 1000)

    async def old_enough() -> bool:  # on the Redis clock, which ages the jobs
        seconds, micros = await queue.redis.time()
        return seconds * 1000 + micros // 1000 > created + 40

    await wait_for(old_enough, what="the first jobs to be 40 ms old")
    young = [await queue.add("y", i) for i in range(3)]
    # the limit stops the clean at the third of the old jobs, whatever the age of the others
    removed = await queue.clean("waiting", 0.04, limit=3)
    assert removed == [j.id for j in old[:3]]
    assert await queue.get_job_ids("waiting", limit=10) == [j.id for j in old[3:] + young]
    assert await queue.clean("waiting", 3600) == []  # none is an hour old


async def test_obliterate_refuses_with_active_jobs_unless_forced(make_queue, run_worker):
    queue = make_queue("obliterate")
    other = make_queue("survivor")
    await other.add("keep-me")
    started = asyncio.Event()

    async def handler(job: Job) -> None:
        started.set()
        await asyncio.sleep(3600)

    for i in range(5):
        job = await queue.add("x", i, delay=60 if i else 0)
    await queue.add_job_log(job.id, "some log")
    run_worker(queue, handler)
    await asyncio.wait_for(started.wait(), HANG)
    await workers_of(queue)  # its first heartbeat wrote `meta` too
    before = await keys_of(queue)
    with pytest.raises(QueueStateError):
        await queue.obliterate()
    assert data_keys(await keys_of(queue)) == data_keys(before)  # nothing deleted
    assert not await queue.is_paused()

    deleted = await queue.obliterate(force=True)
    assert deleted >= len(before)
    leftover = {k.removeprefix(queue.keys.base) for k in await keys_of(queue)}
    # the still running worker may have beaten or taken the stall lock since; nothing else
    assert all(k.startswith("workers") or k == "stallcheck" for k in leftover), leftover
    assert await other.get_job_counts() == {
        "waiting": 1,
        "active": 0,
        "delayed": 0,
        "completed": 0,
        "failed": 0,
        "paused": 0,
        "waiting-children": 0,
    }


async def test_obliterate_an_idle_queue(make_queue):
    queue = make_queue("obliterate-idle")
    jobs = await queue.add_bulk([("y", i) for i in range(2500)])
    # a key per job (its log; the envelopes are fields of one hash): several SCAN batches
    for start in range(0, len(jobs), 500):
        await asyncio.gather(*(job.log("a line") for job in jobs[start : start + 500]))
    await queue.pause()
    assert await queue.obliterate() > 2500
    assert await keys_of(queue) == set()
    assert await queue.get_job_counts() == dict.fromkeys(
        ("waiting", "active", "delayed", "completed", "failed", "paused", "waiting-children"),
        0,
    )


async def test_retry_failed_and_job_retry(make_queue, run_worker):
    queue = make_queue("retry", attempts=1)
    jobs = await fail_jobs(queue, run_worker, 4)
    failed = await queue.get_job(jobs[0].id)
    assert failed is not None and failed.attempts_made == 1

    # one by one: attempts reset, the error is kept until the next outcome
    await queue.pause()
    await failed.retry()
    job = await queue.get_job(jobs[0].id)
    assert (job.state, job.attempts_made) == ("paused", 0)
    assert job.error_message is not None and job.error_message.endswith("boom")
    assert job.error_type == "UNKNOWN"
    with pytest.raises(QueueStateError):
        await queue.retry_job(jobs[0].id)  # no longer failed
    with pytest.raises(JobNotFoundError):
        await queue.retry_job("missing")

    assert await queue.retry_failed(limit=2) == 2
    assert await queue.get_job_counts() == {
        "waiting": 0,
        "active": 0,
        "delayed": 0,
        "completed": 0,
        "failed": 1,
        "paused": 3,
        "waiting-children": 0,
    }
    assert await queue.retry_failed() == 1
    assert await queue.retry_failed() == 0
    retrying = await events_of(queue, "retrying")
    assert sorted(e["id"] for e in retrying if e.get("manual") == "1") == sorted(j.id for j in jobs)
    await queue.resume()
    for job in jobs:
        assert await job.wait_until_finished(timeout=HANG) == "ok"
    again = await queue.get_job(jobs[0].id)
    assert again.attempts_made == 1 and again.result == "ok"


async def test_promote_makes_a_delayed_job_ready_now(make_queue, run_worker):
    queue = make_queue("promote")
    plain = await queue.add("plain", {}, delay=3600)
    urgent = await queue.add("urgent", {}, delay=3600, priority=5)
    grouped = await queue.add("grouped", {}, delay=3600, group="tenant-1")
    waiting = await queue.add("now", {})
    await queue.promote(plain.id)
    assert await queue.get_job_state(plain.id) == "waiting"
    promoted = await events_of(queue, "waiting")
    assert [(e["id"], e["prev"], e["promoted"]) for e in promoted] == [(plain.id, "delayed", "1")]
    with pytest.raises(QueueStateError, match="not delayed"):
        await queue.promote(plain.id)
    with pytest.raises(QueueStateError, match="not delayed"):
        await queue.promote(waiting.id)
    with pytest.raises(JobNotFoundError):
        await queue.promote("missing")
    # it keeps its priority and its group: the urgent job runs before the ones waiting
    await queue.promote(urgent.id)
    await queue.promote(grouped.id)
    order: list[str] = []

    async def handler(job: Job) -> str:
        order.append(job.name)
        return "ok"

    run_worker(queue, handler)
    for job in (plain, urgent, grouped, waiting):
        assert await job.wait_until_finished(timeout=HANG) == "ok"
    assert order[0] == "urgent" and sorted(order) == ["grouped", "now", "plain", "urgent"]
    assert (await queue.get_job_counts())["delayed"] == 0


async def test_job_log_is_bounded_and_kept_with_the_job(make_queue, run_worker):
    queue = make_queue("logs")
    job = await queue.add("x")
    for i in range(1005):
        await job.log(f"line {i}")
    logs = await queue.get_job_logs(job.id)
    assert len(logs) == 1000
    assert logs[0] == "line 5" and logs[-1] == "line 1004"
    assert await queue.get_job_logs(job.id, 0, 1) == ["line 5", "line 6"]
    assert await job.get_logs(-1) == ["line 1004"]

    assert await job.log("é" * 5000) == 1000
    long = (await queue.get_job_logs(job.id, -1))[0]
    assert len(long.encode()) <= 4096 and long.endswith("...")

    with pytest.raises(JobNotFoundError):
        await queue.add_job_log("missing", "x")
    assert not await queue.redis.exists(queue.keys.logs("missing"))

    async def handler(job: Job) -> str:
        await job.log("started")
        await job.log("finished")
        return "ok"

    ran = await queue.add("run")
    run_worker(queue, handler)
    await ran.wait_until_finished(timeout=HANG)
    assert await queue.get_job_logs(ran.id) == ["started", "finished"]
    await queue.remove(ran.id)
    assert await queue.get_job_logs(ran.id) == []


async def test_cleanup_old_jobs_across_queues(make_queue, run_worker, prefix):
    first = make_queue("cleanup-a", attempts=1)
    # a queue on a shared limiter lives in the limiter's slot: found all the same
    second = make_queue("cleanup-b", attempts=1, limiter=Limiter("llm.cleanup"))
    assert second.keys.slot == "llm.cleanup"

    async def handler(job: Job) -> str:
        if job.data == "fail":
            raise UnrecoverableError("no")
        return "ok"

    finished = []
    for queue in (first, second):
        finished += [await queue.add("x", "ok"), await queue.add("x", "fail")]
        run_worker(queue, handler)
    for job in finished:
        await state_is(job.queue, job.id, "completed" if job.data == "ok" else "failed")
    waiting = await first.add("later", delay=60)

    assert await discover_queues(first.redis, prefix) == ["cleanup-a", "cleanup-b"]
    assert [k.slot for k in await discover_queue_keys(first.redis, prefix)] == [
        None,
        "llm.cleanup",
    ]
    assert await cleanup_old_jobs(first.redis, 1, prefix=prefix) == 0
    assert await cleanup_old_jobs(first.redis, 0, prefix=prefix) == 4
    for queue in (first, second):
        counts = await queue.get_job_counts()
        assert counts["completed"] == counts["failed"] == 0
    assert await first.get_job_state(waiting.id) == "delayed"
    with pytest.raises(ConfigError):
        await cleanup_old_jobs(first.redis, -1, prefix=prefix)
