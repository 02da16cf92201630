"""End to end with real worker processes: limits across processes, kill -9, SIGTERM, a
lease lost to a blocked event loop, and a Redis restart under load."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from engine_helpers import WorkerProcess, read_log, wait_for
from servers import RedisProcess

from jobqueue import JobState, Queue, QueueConfig

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture
def procs() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for p in started:
        p.close()


@pytest.fixture
async def side(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def all_finished(q: Queue, n: int) -> bool:
    c = await q.get_job_counts()
    return c["completed"] + c["failed"] >= n


async def test_rate_limit_held_by_two_processes(
    redis_url: str, prefix: str, procs: list[WorkerProcess], side: aioredis.Redis
) -> None:
    cfg = {"name": "rl", "rate_limit": {"max": 3, "per": 0.5}, "drain_delay": 0.5}
    q = Queue(QueueConfig("rl"), redis=redis_url, prefix=prefix)
    await q.pause()
    await q.add_bulk([("x", {}) for _ in range(15)])
    for _ in range(2):
        procs.append(WorkerProcess(redis_url, prefix, cfg, concurrency=5))
    await q.resume()
    await wait_for(lambda: all_finished(q, 15), timeout=30, what="15 jobs")
    log = await read_log(side, prefix)
    assert sum(e["ev"] == "start" for e in log) == 15
    assert len({e["pid"] for e in log}) == 2
    # the start times the take script wrote, on the Redis clock (not the handlers' clocks)
    starts = []
    for job_id in {e["id"] for e in log}:
        job = await q.get_job(job_id)
        assert job is not None and job.started_at is not None
        starts.append(job.started_at.timestamp())
    starts.sort()
    # token bucket of 3 refilling 6/s: any window of w seconds sees <= 3 + 6 * w starts
    # (+ 1 for the millisecond rounding of the recorded times)
    for i, t0 in enumerate(starts):
        for w in (0.25, 0.5, 1.0):
            in_window = sum(1 for t in starts[i:] if t - t0 <= w)
            assert in_window <= 3 + 6 * w + 1, (w, in_window)
    assert starts[-1] - starts[0] >= (15 - 3) / 6 - 0.01
    await q.close()


async def test_global_concurrency_held_by_two_processes(
    redis_url: str, prefix: str, procs: list[WorkerProcess], side: aioredis.Redis
) -> None:
    cfg = {"name": "cc", "concurrency": 3, "drain_delay": 0.5}
    q = Queue(QueueConfig("cc"), redis=redis_url, prefix=prefix)
    await q.pause()
    await q.add_bulk([("x", {"sleep": 0.05}) for _ in range(40)])
    # each process could run 2 at once (4 together): only the global cap keeps it at 3
    for _ in range(2):
        procs.append(WorkerProcess(redis_url, prefix, cfg, concurrency=2))
    await q.resume()
    await wait_for(lambda: all_finished(q, 40), timeout=30, what="40 jobs")
    log = await read_log(side, prefix)
    points = sorted(
        [(e["t"], 1 if e["ev"] == "start" else -1) for e in log], key=lambda p: (p[0], p[1])
    )
    overlap = peak = 0
    for _, d in points:
        overlap += d
        peak = max(peak, overlap)
    assert peak <= 3
    assert len({e["pid"] for e in log}) == 2
    await q.close()


async def test_kill_9_mid_job_runs_elsewhere(
    redis_url: str, prefix: str, procs: list[WorkerProcess], side: aioredis.Redis
) -> None:
    cfg = {"name": "k9", "lease": 0.5, "stall_interval": 0.1, "drain_delay": 0.3}
    q = Queue(QueueConfig("k9"), redis=redis_url, prefix=prefix)
    victim = WorkerProcess(redis_url, prefix, cfg, mode="first-hangs")
    procs.append(victim)
    job = await q.add("x", {})

    async def started() -> bool:
        return any(e["ev"] == "start" for e in await read_log(side, prefix))

    await wait_for(started, what="the job to start")
    victim.kill()
    procs.append(WorkerProcess(redis_url, prefix, cfg, mode="first-hangs"))

    async def done() -> bool:
        return await q.get_job_state(job.id) == JobState.COMPLETED

    await wait_for(done, timeout=15, what="the job to complete on the other worker")
    got = await q.get_job(job.id)
    assert got is not None and got.attempts_made == 1
    starts = [e for e in await read_log(side, prefix) if e["ev"] == "start"]
    assert [s["pid"] for s in starts] == [victim.pid, procs[-1].pid]
    stalled = [f for _, f in await side.xrange(q.keys.events) if f[b"ev"] == b"stalled"]
    assert len(stalled) == 1
    await q.close()


async def test_blocked_worker_loses_lease_and_its_completion_is_refused(
    redis_url: str, prefix: str, procs: list[WorkerProcess], side: aioredis.Redis
) -> None:
    cfg = {"name": "late", "lease": 0.3, "stall_interval": 0.1, "drain_delay": 0.3}
    q = Queue(QueueConfig("late"), redis=redis_url, prefix=prefix)
    # the first worker blocks its event loop for 1.5 s (no renewal): its lease expires
    procs.append(WorkerProcess(redis_url, prefix, cfg, mode="block"))
    job = await q.add("x", {"sleep": 1.5})

    async def started_once() -> bool:
        return len(await read_log(side, prefix)) >= 1

    await wait_for(started_once, what="first start")
    procs.append(WorkerProcess(redis_url, prefix, {**cfg}, mode="record"))

    async def both_ended() -> bool:
        return sum(e["ev"] == "end" for e in await read_log(side, prefix)) >= 2

    await wait_for(both_ended, timeout=15, what="both runs to end")

    async def completed() -> bool:
        return await q.get_job_state(job.id) == JobState.COMPLETED

    # a handler's end is logged before its outcome reaches Redis: wait for the state
    await wait_for(completed, timeout=15, what="the job to complete")
    log = await read_log(side, prefix)
    second_pid = procs[1].pid
    got = await q.get_job(job.id)
    assert got is not None and got.state == JobState.COMPLETED
    assert got.result == {"pid": second_pid}
    first_end = next(e for e in log if e["ev"] == "end" and e["pid"] == procs[0].pid)
    assert first_end  # the first run did finish its handler, yet its outcome was not recorded

    async def refusal_logged() -> bool:
        procs[0].terminate()
        return procs[0].proc.poll() is not None

    await wait_for(refusal_logged, what="first worker to exit")
    assert "lease lost" in procs[0].stderr()
    got = await q.get_job(job.id)
    assert got is not None and got.result == {"pid": second_pid}
    await q.close()


async def test_sigterm_lets_the_job_finish(
    redis_url: str, prefix: str, procs: list[WorkerProcess], side: aioredis.Redis
) -> None:
    q = Queue(QueueConfig("term"), redis=redis_url, prefix=prefix)
    w = WorkerProcess(redis_url, prefix, {"name": "term"}, grace=10)
    procs.append(w)
    job = await q.add("x", {"sleep": 0.5})

    async def started() -> bool:
        return len(await read_log(side, prefix)) >= 1

    await wait_for(started, what="start")
    w.proc.send_signal(signal.SIGTERM)
    assert await w.wait() == 0
    assert await q.get_job_state(job.id) == JobState.COMPLETED
    await q.close()


async def test_sigterm_past_grace_hands_back_at_once(
    redis_url: str, prefix: str, procs: list[WorkerProcess], side: aioredis.Redis
) -> None:
    q = Queue(QueueConfig("term2"), redis=redis_url, prefix=prefix)
    w = WorkerProcess(redis_url, prefix, {"name": "term2"}, grace=0.2)
    procs.append(w)
    job = await q.add("x", {"sleep": 60})

    async def started() -> bool:
        return len(await read_log(side, prefix)) >= 1

    await wait_for(started, what="start")
    w.proc.send_signal(signal.SIGTERM)
    assert await w.wait(timeout=10) == 0
    got = await q.get_job(job.id)
    assert got is not None and got.state == JobState.WAITING and got.attempts_made == 0
    returned = [f for _, f in await side.xrange(q.keys.events) if f[b"ev"] == b"returned"]
    assert len(returned) == 1
    await q.close()


@pytest.fixture
def restartable_redis() -> Iterator[RedisProcess]:
    binary = shutil.which("redis-server")
    server = RedisProcess(binary, extra=["--appendonly", "yes", "--appendfsync", "always"])
    server.start()
    yield server
    server.close()


async def test_redis_restart_under_load(
    restartable_redis: RedisProcess, procs: list[WorkerProcess]
) -> None:
    url = restartable_redis.url
    prefix = "jqrestart"
    q = Queue(QueueConfig("rs"), redis=url, prefix=prefix)
    n = 300
    await q.add_bulk([("x", {"sleep": 0.005}) for _ in range(n)])
    cfg = {"name": "rs", "drain_delay": 0.5, "lease": 5.0}
    procs.append(WorkerProcess(url, prefix, cfg, concurrency=4))

    async def some_done() -> bool:
        return (await q.get_job_counts())["completed"] >= 20

    await wait_for(some_done, what="some progress")
    restartable_redis.stop()  # SIGTERM: the server writes its AOF and exits
    await asyncio.sleep(1.0)  # the outage itself (nothing is awaited on it)
    restartable_redis.start()
    await q.redis.connection_pool.disconnect()

    async def all_done() -> bool:
        with contextlib.suppress(Exception):  # the test's own client reconnects too
            ends = {
                json.loads(x)["id"]
                for x in await q.redis.lrange(f"{prefix}:test:log", 0, -1)
                if json.loads(x)["ev"] == "end"
            }
            return len(ends) == n
        return False

    await wait_for(all_done, timeout=60, what="the backlog to drain after the restart")
    c = await q.get_job_counts()
    assert c["failed"] == 0 and c["waiting"] == 0 and c["active"] == 0
    log = [json.loads(x) for x in await q.redis.lrange(f"{prefix}:test:log", 0, -1)]
    ended = {e["id"] for e in log if e["ev"] == "end"}
    assert len(ended) == n  # every job ran to the end: none lost
    assert procs[0].proc.poll() is None  # the worker survived the outage
    procs[0].terminate()
    assert await procs[0].wait() == 0
    errors = procs[0].stderr()
    retries = [line for line in errors.splitlines() if "unavailable" in line]
    # backing off, not a tight error loop: a handful of lines for a ~1 s outage
    assert 0 < len(retries) <= 20, errors[-3000:]
    await q.close()
