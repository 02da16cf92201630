"""Worker processes: pause under load, cancellation across processes, heartbeats and the
cancel listener's reconnects. Workers run `worker_proc.py` in processes of their own.

A cancellation is shown to travel over pub/sub by giving the job a lease (600 s, renewed every
200 s) far longer than the test's deadlines: no renewal can have brought it."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from typing import Any

import pytest
from ops_helpers import HANG, state_is, wait_for, workers_of
from redis.exceptions import ReadOnlyError
from servers import RedisProcess

from jobqueue import JobFailedError, Queue
from jobqueue._inspect_render import worker_cells
from jobqueue.worker.cancels import cancel_listener
from jobqueue.worker.health import WorkerHealth
from jobqueue.worker.heartbeat import heartbeat_loop
from jobqueue.worker.running import RunningJobs, WorkerStats


async def stream(queue: Queue) -> list[dict[str, str]]:
    return [
        {k.decode(): v.decode() for k, v in raw.items()}
        for _id, raw in await queue.redis.xrange(queue.keys.events)
    ]


async def test_no_job_starts_while_the_queue_is_paused(make_queue, spawn_worker):
    queue = make_queue("pause-load")
    starts = queue.keys.base + "test:starts"
    gate = queue.keys.base + "test:gate"
    spawn_worker("pause-load", concurrency=4)
    await workers_of(queue)
    jobs = await queue.add_bulk(
        [{"name": "work", "data": {"record": starts, "gate": gate}} for _ in range(60)]
    )

    # the first 4 hold the worker's slots at the gate: nothing else can start yet
    async def slots_full() -> bool:
        return await queue.redis.llen(starts) >= 4

    await wait_for(slots_full, what="the first starts")
    await queue.pause()
    await queue.redis.set(gate, 1)  # they finish while the queue is paused

    async def drained() -> bool:
        return (await queue.get_job_counts())["active"] == 0

    await wait_for(drained, what="in-flight jobs to finish")
    assert await queue.redis.llen(starts) == 4
    # an observation window (a slow machine watches less, never wrongly): nothing starts
    for _ in range(10):
        await asyncio.sleep(0.1)
        assert await queue.redis.llen(starts) == 4
    counts = await queue.get_job_counts()
    assert counts["paused"] == 60 - 4 and counts["waiting"] == 0

    await queue.resume()
    for job in jobs:
        await job.wait_until_finished(timeout=HANG)
    ids = [x.decode() for x in await queue.redis.lrange(starts, 0, -1)]
    assert sorted(ids) == sorted(j.id for j in jobs)  # each started exactly once

    events = await stream(queue)
    names = [e["ev"] for e in events]
    paused_at, resumed_at = names.index("paused"), names.index("resumed")
    assert "active" not in names[paused_at:resumed_at]
    assert names[paused_at:resumed_at].count("completed") == 4


async def test_cancel_an_active_job_running_in_another_process(make_queue, spawn_worker):
    queue = make_queue("cancel-remote", lease=600.0, attempts=3)
    spawn_worker("cancel-remote", lease=600.0, attempts=3)
    job = await queue.add("slow", {"sleep": 3600})
    await state_is(queue, job.id, "active")
    assert await queue.cancel(job.id, "operator asked") == "signalled"
    with pytest.raises(JobFailedError) as info:
        await job.wait_until_finished(timeout=HANG)  # renewals come every 200 s
    assert info.value.error_type == "CANCELLED"
    assert info.value.error_message == "operator asked"
    failed = await queue.get_job(job.id)
    assert failed is not None and failed.state == "failed" and failed.attempts_made == 1
    events = [e for e in await stream(queue) if e.get("id") == job.id]
    assert [e["ev"] for e in events] == ["added", "active", "cancelling", "failed"]
    assert not await queue.redis.hexists(queue.keys.cancels, job.id)


async def test_heartbeat_registers_the_worker_and_expires_after_kill_9(make_queue, spawn_worker):
    queue = make_queue("heartbeat")
    proc = spawn_worker("heartbeat", concurrency=3, heartbeat=0.2, name="hb-worker")
    (info,) = await workers_of(queue)
    assert (info.name, info.pid, info.queues, info.concurrency) == (
        "hb-worker",
        proc.pid,
        ("heartbeat",),
        3,
    )
    assert info.heartbeat_interval == 0.2
    key = queue.keys.worker("hb-worker")

    # the key lives 3 intervals from each beat (a beat may be late on a loaded machine: the
    # key is then briefly gone, which is what a dead worker looks like too)
    async def expires_in_three_beats() -> bool:
        ttl = await queue.redis.pttl(key)
        assert ttl <= 600, ttl
        return ttl > 0

    await wait_for(expires_in_three_beats, what="a live heartbeat key")
    meta = await queue.redis.hgetall(queue.keys.meta)
    assert meta[b"concurrency"] == b"0" and b"lease_ms" in meta

    job = await queue.add("x", {"result": 7})
    assert await job.wait_until_finished(timeout=HANG) == 7

    async def counted() -> bool:
        workers = await queue.get_workers()
        return len(workers) == 1 and workers[0].completed == 1 and workers[0].last_take_at

    await wait_for(counted, what="the heartbeat to count the job")

    proc.proc.send_signal(signal.SIGKILL)
    proc.proc.wait(HANG)
    # every beat set the key to expire within 600 ms (checked above), and nobody deletes it

    async def gone() -> bool:
        return not await queue.redis.exists(key)

    await wait_for(gone, what="the heartbeat key to expire")
    assert await queue.get_workers() == []
    assert await queue.redis.zcard(queue.keys.worker_set) == 0


async def test_clean_shutdown_unregisters_at_once(make_queue, spawn_worker):
    queue = make_queue("shutdown")
    # beats every 60 s: the key would live 180 s; only the shutdown can explain its absence
    proc = spawn_worker("shutdown", heartbeat=60.0, name="polite")
    await workers_of(queue)
    assert await queue.redis.pttl(queue.keys.worker("polite")) > 60_000
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(HANG) == 0, proc.output()
    assert not await queue.redis.exists(queue.keys.worker("polite"))
    assert await queue.get_workers() == []


async def test_cancel_listener_resubscribes_after_a_redis_restart(prefix, spawn_worker):
    server = RedisProcess().start()
    queue = Queue("restart", redis=server.url, prefix=prefix)
    try:
        spawn_worker("restart", redis=server.url, lease=600.0)
        await workers_of(queue)
        channel = queue.keys.cancel_channel

        async def subscribed() -> bool:
            return (await queue.redis.pubsub_numsub(channel))[0][1] == 1

        await wait_for(subscribed, what="the cancel listener")
        server.stop()
        server.start()  # same port, empty data: everything reconnects
        await queue.redis.connection_pool.disconnect()  # our own stale connections
        await workers_of(queue)
        await wait_for(subscribed, what="the listener to subscribe again")

        async def published() -> bool:
            return bool(await queue.redis.hexists(queue.keys.meta, "lease_ms"))

        # published again (by the beat that found the worker's key gone, or the next one)
        await wait_for(published, what="the queue's limits published again")

        job = await queue.add("slow", {"sleep": 3600})
        await state_is(queue, job.id, "active")
        assert await queue.cancel(job.id, "after restart") == "signalled"
        with pytest.raises(JobFailedError) as info:
            await job.wait_until_finished(timeout=HANG)  # renewals come every 200 s
        assert info.value.error_type == "CANCELLED"
    finally:
        await queue.close()
        server.close()


async def test_cancel_requests_missed_by_the_subscription_are_read_again(prefix, spawn_worker):
    # the request is only in the cancels hash (no publish reached the worker); dropping the
    # worker's subscription makes it subscribe again and re-read the hash
    server = RedisProcess().start()
    queue = Queue("recheck", redis=server.url, prefix=prefix)
    try:
        spawn_worker("recheck", redis=server.url, lease=600.0)
        job = await queue.add("slow", {"sleep": 3600})
        await state_is(queue, job.id, "active")

        async def subscribed() -> bool:
            return (await queue.redis.pubsub_numsub(queue.keys.cancel_channel))[0][1] == 1

        await wait_for(subscribed, what="the cancel listener")
        await queue.redis.hset(queue.keys.cancels, job.id, "missed message")
        await queue.redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        with pytest.raises(JobFailedError) as info:
            await job.wait_until_finished(timeout=HANG)  # renewals come every 200 s
        assert (info.value.error_type, info.value.error_message) == ("CANCELLED", "missed message")
    finally:
        await queue.close()
        server.close()


async def test_helper_loops_end_when_cancelled_mid_command(make_queue):
    # redis-py on Python 3.11 can drop a cancel that lands as a command completes; the
    # heartbeat and the cancel listener must end anyway (else Worker.run never returns)
    queue = make_queue("cancel-loops", heartbeat_interval=0.05)
    running = RunningJobs()
    stats = WorkerStats("w-loops", queue.name, 1)
    loops = {
        "heartbeat": lambda: heartbeat_loop(queue, stats, running),
        "cancel listener": lambda: cancel_listener(
            queue.redis, queue.keys, running, backoff=(0.01, 0.1)
        ),
    }
    rng = random.Random(7)
    for what, make in loops.items():
        for _ in range(100):
            task = asyncio.create_task(make())
            await asyncio.sleep(rng.random() * 0.004)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=HANG)
            assert task in done, f"the {what} ignored its cancellation"
    assert await queue.get_workers() == []  # every heartbeat unregistered on its way out


async def test_heartbeat_says_degraded_while_a_loop_fails_and_inspect_shows_it(make_queue):
    queue = make_queue("degraded", heartbeat_interval=0.05)
    running = RunningJobs()
    stats = WorkerStats("w-degraded", queue.name, 1)
    health = WorkerHealth(stats, log_every=60.0)
    beat = asyncio.create_task(heartbeat_loop(queue, stats, running, health))
    try:
        # what the main loop records when Redis refuses its finish call (a failover)
        health.failed("take/finish", ReadOnlyError("You can't write against a read only replica."))

        async def degraded() -> Any:
            workers = await queue.get_workers()
            return workers and workers[0].degraded and workers[0]

        info = await wait_for(degraded, what="a heartbeat saying degraded")
        assert info.degraded == (
            "take/finish: ReadOnlyError: You can't write against a read only replica."
        )
        assert info.degraded_since is not None
        state = worker_cells(info.to_dict())[-1]  # the STATE column of `inspect`
        assert state.startswith("degraded since") and "ReadOnlyError" in state
        health.ok("take/finish")

        async def recovered() -> bool:
            workers = await queue.get_workers()
            return bool(workers) and workers[0].degraded is None and workers[0]

        info = await wait_for(recovered, what="a heartbeat saying recovered")
        assert info.degraded_since is None
        assert worker_cells(info.to_dict())[-1] == "ok"
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
