"""End to end with real worker processes: limits across processes, kill -9, SIGTERM (once, and
twice), a lease lost to a blocked event loop, and a Redis restart under load.

Nothing here depends on how fast the machine is: handlers wait on a gate the test opens, leases
that must not expire are long, and every wait is on a state or a log line (deadlines only
bound a hang)."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from engine_helpers import HANG, WorkerProcess, open_gate, read_log, wait_for
from servers import RedisProcess

from jobqueue import JobState, Queue, QueueConfig

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


async def all_finished(q: Queue, n: int) -> bool:
    c = await q.get_job_counts()
    return c["completed"] + c["failed"] >= n


async def starts(side: aioredis.Redis, prefix: str) -> list[dict[str, object]]:
    return [e for e in await read_log(side, prefix) if e["ev"] == "start"]


async def events_of(side: aioredis.Redis, q: Queue, job_id: str) -> list[str]:
    return [
        f[b"ev"].decode()
        for _, f in await side.xrange(q.keys.events)
        if f.get(b"id") == job_id.encode()
    ]


async def test_rate_limit_held_by_two_processes(
    redis_url: str, prefix: str, procs: list[WorkerProcess], side: aioredis.Redis
) -> None:
    cfg = {"name": "rl", "rate_limit": {"max": 3, "per": 0.5}, "drain_delay": 0.5}
    q = Queue(QueueConfig("rl"), redis=redis_url, prefix=prefix)
    await q.pause()
    await q.add_bulk([("x", {"gate": True}) for _ in range(15)])
    for _ in range(2):
        procs.append(WorkerProcess(redis_url, prefix, cfg, concurrency=5))
    await q.resume()

    # handlers wait at the gate: a process holds 5 at most, so 10 running means both run some
    async def ten_started() -> bool:
        return len(await starts(side, prefix)) >= 10

    await wait_for(ten_started, what="10 gated jobs to start")
    assert len({e["pid"] for e in await starts(side, prefix)}) == 2
    await open_gate(side, prefix)
    await wait_for(lambda: all_finished(q, 15), what="15 jobs")
    log = await read_log(side, prefix)
    assert sum(e["ev"] == "start" for e in log) == 15
    # the start times the take script wrote, on the Redis clock (not the handlers' clocks)
    times = []
    for job_id in {e["id"] for e in log}:
        job = await q.get_job(job_id)
        assert job is not None and job.started_at is not None
        times.append(job.started_at.timestamp())
    times.sort()
    # token bucket of 3 refilling 6/s: any window of w seconds sees <= 3 + 6 * w starts
    # (+ 1 for the millisecond rounding of the recorded times)
    for i, t0 in enumerate(times):
        for w in (0.25, 0.5, 1.0):
            in_window = sum(1 for t in times[i:] if t - t0 <= w)
            assert in_window <= 3 + 6 * w + 1, (w, in_window)
    assert times[-1] - times[0] >= (15 - 3) / 6 - 0.01
    await q.close()


async def test_global_concurrency_held_by_two_processes(
    redis_url: str, prefix: str, procs: list[WorkerProcess], side: aioredis.Redis
) -> None:
    cfg = {"name": "cc", "concurrency": 3, "drain_delay": 0.5}
    q = Queue(QueueConfig("cc"), redis=redis_url, prefix=prefix)
    await q.pause()
    await q.add_bulk([("x", {"sleep": 0.02, "gate": True}) for _ in range(40)])
    # each process could run 2 at once (4 together): only the global cap keeps it at 3
    for _ in range(2):
        procs.append(WorkerProcess(redis_url, prefix, cfg, concurrency=2))
    await q.resume()

    # gated handlers hold their slots: 3 running means both processes run some (2 each at most)
    async def three_started() -> bool:
        return len(await starts(side, prefix)) >= 3

    await wait_for(three_started, what="3 gated jobs to start")
    assert len({e["pid"] for e in await starts(side, prefix)}) == 2
    assert (await q.get_job_counts())["active"] == 3
    await open_gate(side, prefix)
    await wait_for(lambda: all_finished(q, 40), what="40 jobs")
    log = await read_log(side, prefix)
    # a handler's logged run lies inside its lease (logged after the take, before the
    # outcome), so overlapping logged runs are a lower bound of the active jobs
    points = sorted(
        [(e["t"], 1 if e["ev"] == "start" else -1) for e in log], key=lambda p: (p[0], p[1])
    )
    overlap = peak = 0
    for _, d in points:
        overlap += d
        peak = max(peak, overlap)
    assert peak <= 3
    await q.close()


async def test_kill_9_mid_job_runs_elsewhere(
    redis_url: str, prefix: str, procs: list[WorkerProcess], side: aioredis.Redis
) -> None:
    # the victim runs no stall check while it lives (its first one takes the stall lock for
    # an hour), so however slowly it runs nobody can take its job before the kill
    victim_cfg = {"name": "k9", "lease": 0.5, "stall_interval": 3600, "drain_delay": 0.3}
    rescuer_cfg = {"name": "k9", "lease": 30, "stall_interval": 0.1, "drain_delay": 0.3}
    q = Queue(QueueConfig("k9"), redis=redis_url, prefix=prefix)
    victim = WorkerProcess(redis_url, prefix, victim_cfg, mode="first-hangs")
    procs.append(victim)
    job = await q.add("x", {})

    async def started() -> bool:
        return len(await starts(side, prefix)) >= 1

    async def stall_locked() -> bool:
        return bool(await side.exists(q.keys.stall_lock))

    await wait_for(started, what="the job to start")
    await wait_for(stall_locked, what="the victim's stall check")
    victim.kill()
    await side.delete(q.keys.stall_lock)  # the dead victim's lock
    rescuer = WorkerProcess(redis_url, prefix, rescuer_cfg, mode="first-hangs")
    procs.append(rescuer)

    async def done() -> bool:
        return await q.get_job_state(job.id) == JobState.COMPLETED

    await wait_for(done, what="the job to complete on the other worker")
    got = await q.get_job(job.id)
    assert got is not None and got.attempts_made == 1
    assert [s["pid"] for s in await starts(side, prefix)] == [victim.pid, rescuer.pid]
    assert (await events_of(side, q, job.id)).count("stalled") == 1
    await q.close()


async def test_blocked_worker_loses_lease_and_its_completion_is_refused(
    redis_url: str, prefix: str, procs: list[WorkerProcess], side: aioredis.Redis
) -> None:
    # the first worker blocks its event loop (no renewal) until the test releases it, so its
    # 0.3 s lease expires; the second one's lease is long, so it keeps the job once taken
    first_cfg = {"name": "late", "lease": 0.3, "stall_interval": 0.1, "drain_delay": 0.3}
    second_cfg = {"name": "late", "lease": 30, "stall_interval": 0.1, "drain_delay": 0.3}
    q = Queue(QueueConfig("late"), redis=redis_url, prefix=prefix)
    first = WorkerProcess(redis_url, prefix, first_cfg, mode="block")
    procs.append(first)
    job = await q.add("x", {})

    async def started_by(n: int) -> bool:
        return len({e["pid"] for e in await starts(side, prefix)}) >= n

    await wait_for(lambda: started_by(1), what="first start")
    second = WorkerProcess(redis_url, prefix, second_cfg, mode="record")
    procs.append(second)
    # the second worker's stall check took the job back and the second worker runs it
    await wait_for(lambda: started_by(2), what="the second worker to run the job")
    await side.set(f"{prefix}:test:release", 1)

    async def both_ended() -> bool:
        return sum(e["ev"] == "end" for e in await read_log(side, prefix)) >= 2

    await wait_for(both_ended, what="both runs to end")

    async def completed() -> bool:
        return await q.get_job_state(job.id) == JobState.COMPLETED

    # a handler's end is logged before its outcome reaches Redis: wait for the state
    await wait_for(completed, what="the job to complete")
    # the first run did finish its handler, yet its outcome was refused
    await first.logged("lease lost")
    first.terminate()
    assert await first.wait() == 0
    got = await q.get_job(job.id)
    assert got is not None and got.state == JobState.COMPLETED
    assert got.result == {"pid": second.pid}
    assert (await events_of(side, q, job.id)).count("completed") == 1
    await q.close()


async def test_sigterm_lets_the_job_finish(
    redis_url: str, prefix: str, procs: list[WorkerProcess], side: aioredis.Redis
) -> None:
    q = Queue(QueueConfig("term"), redis=redis_url, prefix=prefix)
    # a grace far longer than any wait here: only the job's own end can end the worker
    w = WorkerProcess(redis_url, prefix, {"name": "term"}, grace=600)
    procs.append(w)
    job = await q.add("x", {"gate": True})

    async def started() -> bool:
        return len(await starts(side, prefix)) >= 1

    await wait_for(started, what="start")
    w.proc.send_signal(signal.SIGTERM)
    await w.logged("finishing running jobs")
    # the signal was handled, and the job runs on
    assert w.proc.poll() is None
    assert await q.get_job_state(job.id) == JobState.ACTIVE
    await open_gate(side, prefix)
    assert await w.wait() == 0
    assert await q.get_job_state(job.id) == JobState.COMPLETED
    await q.close()


async def test_sigterm_past_grace_hands_back_at_once(
    redis_url: str, prefix: str, procs: list[WorkerProcess], side: aioredis.Redis
) -> None:
    q = Queue(QueueConfig("term2"), redis=redis_url, prefix=prefix)
    w = WorkerProcess(redis_url, prefix, {"name": "term2"}, grace=0.2)
    procs.append(w)
    job = await q.add("x", {"sleep": 3600})

    async def started() -> bool:
        return len(await starts(side, prefix)) >= 1

    await wait_for(started, what="start")
    w.proc.send_signal(signal.SIGTERM)
    assert await w.wait() == 0
    got = await q.get_job(job.id)
    assert got is not None and got.state == JobState.WAITING and got.attempts_made == 0
    assert await events_of(side, q, job.id) == ["added", "active", "returned"]
    await q.close()


async def test_second_signal_hands_running_jobs_back_at_once(
    redis_url: str, prefix: str, procs: list[WorkerProcess], side: aioredis.Redis
) -> None:
    q = Queue(QueueConfig("term3"), redis=redis_url, prefix=prefix)
    # a grace far longer than the test's deadlines: only the second signal can explain a
    # hand-back and an exit
    w = WorkerProcess(redis_url, prefix, {"name": "term3"}, concurrency=2, grace=600)
    procs.append(w)
    jobs = [await q.add("x", {"gate": True}) for _ in range(2)]

    async def both_started() -> bool:
        return len(await starts(side, prefix)) >= 2

    await wait_for(both_started, what="both jobs to start")
    w.proc.send_signal(signal.SIGTERM)
    await w.logged("finishing running jobs")
    assert w.proc.poll() is None  # within the grace period the jobs run on
    for job in jobs:
        assert await q.get_job_state(job.id) == JobState.ACTIVE
    w.proc.send_signal(signal.SIGTERM)
    assert await w.wait() == 0
    assert "stopping now" in w.stderr()
    for job in jobs:
        got = await q.get_job(job.id)
        assert got is not None and got.state == JobState.WAITING and got.attempts_made == 0
        assert await events_of(side, q, job.id) == ["added", "active", "returned"]
    assert not any(e["ev"] == "end" for e in await read_log(side, prefix))
    await q.close()


@pytest.fixture
def restartable_redis() -> Iterator[RedisProcess]:
    binary = shutil.which("redis-server")
    server = RedisProcess(binary, extra=["--appendonly", "yes", "--appendfsync", "always"])
    server.start()
    yield server
    server.close()


def reconnect_delays(log: str) -> list[list[float]]:
    """The delays the worker announced while Redis was away, one list per outage it saw."""
    runs: list[list[float]] = [[]]
    for line in log.splitlines():
        if re.search(r"(take/finish|wake-up): recovered after", line) and runs[-1]:
            runs.append([])
        m = re.search(r"(?:take/finish|wake-up): redis error .*; retrying in ([0-9.]+)s", line)
        if m:
            runs[-1].append(float(m.group(1)))
    return [r for r in runs if r]


async def test_redis_restart_under_load(
    restartable_redis: RedisProcess, procs: list[WorkerProcess]
) -> None:
    url = restartable_redis.url
    prefix = "jqrestart"
    q = Queue(QueueConfig("rs"), redis=url, prefix=prefix)
    n = 300
    await q.add_bulk([("x", {"sleep": 0.005}) for _ in range(n)])
    # a job whose take was written but whose reply was lost with the connection comes back
    # after its lease (a stall, which spends no attempt): a short lease keeps the test short.
    # A handler that met the outage (its own Redis writes) is retried soon, and attempts
    # outlast any outage: however long the restart takes, no job fails
    cfg = {
        "name": "rs",
        "drain_delay": 0.5,
        "lease": 3.0,
        "attempts": 20,
        "retry_delays": {"NETWORK_ERROR": 0.2},
    }
    worker = WorkerProcess(url, prefix, cfg, concurrency=4)
    procs.append(worker)

    async def some_done() -> bool:
        return (await q.get_job_counts())["completed"] >= 20

    await wait_for(some_done, what="some progress")
    restartable_redis.stop()  # SIGTERM: the server writes its AOF and exits
    await worker.logged("redis error")  # the outage lasts until the worker saw it
    restartable_redis.start()
    await q.redis.connection_pool.disconnect()

    async def all_done() -> bool:
        with contextlib.suppress(Exception):  # the test's own client reconnects too
            ends = {
                json.loads(x)["id"]
                for x in await q.redis.lrange(f"{prefix}:test:log", 0, -1)
                if json.loads(x)["ev"] == "end"
            }
            # the handlers' ends are logged before their outcomes reach Redis: wait for those
            # too (a batch of outcomes may be in flight, or sent again after the outage)
            c = await q.get_job_counts()
            return len(ends) == n and c["active"] == 0 and c["waiting"] == 0
        return False

    await wait_for(all_done, timeout=2 * HANG, what="the backlog to drain after the restart")
    c = await q.get_job_counts()
    assert c["failed"] == 0 and c["waiting"] == 0 and c["active"] == 0
    log = [json.loads(x) for x in await q.redis.lrange(f"{prefix}:test:log", 0, -1)]
    ended = {e["id"] for e in log if e["ev"] == "end"}
    assert len(ended) == n  # every job ran to the end: none lost
    assert worker.proc.poll() is None  # the worker survived the outage
    worker.terminate()
    assert await worker.wait() == 0
    errors = worker.stderr()
    assert "take/finish: recovered after" in errors
    # backing off, not a tight error loop: within one outage each announced delay is at least
    # first * 2 ** (k - 1) (first 0.1 s, at most 5 s): a slow machine only waits longer
    outages = reconnect_delays(errors)
    assert outages, errors[-3000:]
    for delays in outages:
        for k, delay in enumerate(delays):
            assert delay >= min(5.0, 0.1 * 2**k) - 0.005, (delays, errors[-3000:])
    await q.close()
