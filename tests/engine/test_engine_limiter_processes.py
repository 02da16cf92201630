"""A shared limiter held by real worker processes: every bucket holds in every window (checked
on the Redis clock), a 429 on one queue holds the others, and the circuit breaker opens,
half-opens and closes across processes."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import redis.asyncio as aioredis
from engine_helpers import HANG, WorkerProcess, wait_for

from jobqueue import Breaker, Bucket, JobState, Limiter, Queue, QueueConfig

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def spec(limiter: Limiter) -> dict[str, Any]:
    """The limiter as worker_proc.py reads it from its queue config."""
    out: dict[str, Any] = {
        "name": limiter.name,
        "buckets": {n: [b.capacity, b.per] for n, b in limiter.buckets.items()},
    }
    if limiter.breaker is not None:
        b = limiter.breaker
        out["breaker"] = {
            "failures": b.failures,
            "window": b.window,
            "cooldown": b.cooldown,
            "max_wait": b.max_wait,
        }
    return out


async def finished(q: Queue, n: int) -> bool:
    c = await q.get_job_counts()
    return c["completed"] + c["failed"] >= n


async def test_processes_sharing_a_limiter_never_exceed_a_bucket_in_any_window(
    redis_url: str, prefix: str, procs: list[WorkerProcess]
) -> None:
    # 40 requests and 200 tokens per second, spent by two queues in two processes
    limiter = Limiter("shared", {"requests": Bucket(20, per=0.5), "tokens": Bucket(100, per=0.5)})
    queues = []
    for name in ("a", "b"):
        q = Queue(QueueConfig(name, limiter=limiter), redis=redis_url, prefix=prefix)
        queues.append(q)
        jobs = []
        for i in range(60):
            cost = {"requests": 1, "tokens": 1 + (i * 7) % 10}
            jobs.append({"name": "x", "data": {"usage": cost}, "cost": cost})
        await q.add_bulk(jobs)
        cfg = {"name": name, "limiter": spec(limiter), "lease": 600}
        procs.append(WorkerProcess(redis_url, prefix, cfg, concurrency=20))

    async def all_done() -> bool:
        return all([await finished(q, 60) for q in queues])

    await wait_for(all_done, what="120 jobs to finish")
    starts: list[tuple[int, dict[str, float]]] = []
    for q in queues:
        assert (await q.get_job_counts())["completed"] == 60
        for job_id in await q.get_job_ids(JobState.COMPLETED, limit=100):
            job = await q.get_job(job_id)
            assert job is not None and job.started_at is not None
            ms = int(job.started_at.timestamp() * 1000)
            starts.append((ms, job.data["usage"]))
    starts.sort(key=lambda s: s[0])
    assert len(starts) == 120
    # a token bucket of capacity C refilled at R per ms admits, between any two starts i <= j,
    # at most C + R * (t_j - t_i) (the bucket was full before the first)
    for bucket, b in limiter.buckets.items():
        assert b.capacity is not None
        rate = b.capacity / (b.per * 1000)
        for i in range(len(starts)):
            spent = 0.0
            for j in range(i, len(starts)):
                spent += starts[j][1][bucket]
                allowed = b.capacity + rate * (starts[j][0] - starts[i][0]) + 1  # ms rounding
                assert spent <= allowed, (bucket, i, j, spent, allowed)
    for q in queues:
        await q.close()


async def test_a_429_in_one_process_holds_the_other_queues_of_the_limiter(
    redis_url: str, prefix: str, procs: list[WorkerProcess], side: aioredis.Redis
) -> None:
    limiter = Limiter("held", {"requests": Bucket(None, per=60)})
    a = Queue(QueueConfig("a", limiter=limiter), redis=redis_url, prefix=prefix)
    b = Queue(QueueConfig("b", limiter=limiter), redis=redis_url, prefix=prefix)
    for name in ("a", "b"):
        procs.append(WorkerProcess(redis_url, prefix, {"name": name, "limiter": spec(limiter)}))
    limited = await a.add("x", {"rate_limit_once": 1.0})

    async def deferred() -> bool:
        return any(f[b"ev"] == b"retrying" for _, f in await side.xrange(a.keys.events))

    await wait_for(deferred, what="the 429 to be recorded")
    held_at = next(
        int(f[b"ts"]) for _, f in await side.xrange(a.keys.events) if f[b"ev"] == b"retrying"
    )
    others = [await b.add("y", None) for _ in range(3)]
    for job in [limited, *others]:
        await job.wait_until_finished(timeout=HANG)
    for job in others:
        got = await b.get_job(job.id)
        assert got is not None and got.started_at is not None
        # b never got a 429, yet none of its jobs started within a's Retry-After
        assert got.started_at.timestamp() * 1000 >= held_at + 1000
    got = await a.get_job(limited.id)
    assert got is not None and got.attempts_made == 1  # the deferral spent no attempt
    await a.close()
    await b.close()


async def test_the_breaker_opens_half_opens_and_closes_across_processes(
    redis_url: str, prefix: str, procs: list[WorkerProcess], side: aioredis.Redis
) -> None:
    limiter = Limiter("flaky", {}, Breaker(failures=2, window=60, cooldown=0.5, max_wait=600))
    a = Queue(QueueConfig("a", limiter=limiter, attempts=1), redis=redis_url, prefix=prefix)
    b = Queue(QueueConfig("b", limiter=limiter, attempts=1), redis=redis_url, prefix=prefix)
    cfg = {"limiter": spec(limiter), "attempts": 1, "retry_delays": {"NETWORK_ERROR": 0.05}}
    procs.append(WorkerProcess(redis_url, prefix, {"name": "a", **cfg}, concurrency=2))
    procs.append(WorkerProcess(redis_url, prefix, {"name": "b", **cfg}, concurrency=2))
    await side.set(f"{prefix}:test:down", "1")
    failing = [await a.add("x", {"fail_while_down": True}) for _ in range(2)]

    async def opened() -> bool:
        state = await a.get_limiter_state()
        return state.breaker is not None and state.breaker.state == "open"

    await wait_for(opened, what="the breaker to open")
    waiting = [await b.add("y", None) for _ in range(2)]
    await side.delete(f"{prefix}:test:down")  # the provider is back: the trial succeeds
    for job in [*failing, *waiting]:
        await job.wait_until_finished(timeout=HANG)
    for q, jobs in ((a, failing), (b, waiting)):
        for job in jobs:
            got = await q.get_job(job.id)
            # attempts=1, yet the provider's failures spent none: each job completed
            assert got is not None and got.state == JobState.COMPLETED and got.attempts_made == 1
    events = []
    for q in (a, b):
        for entry_id, f in await side.xrange(q.keys.events):
            if f[b"ev"] == b"breaker":
                events.append((entry_id, f[b"state"].decode()))
    # open, then half-open trials (a trial that ran before the provider was back opens it
    # again: a slow machine may see that), and closed by the trial that succeeded
    states = [state for _, state in sorted(events)]
    assert states[0] == "open" and states[-2:] == ["half_open", "closed"]
    assert all(
        (x, y) in {("open", "half_open"), ("half_open", "open"), ("half_open", "closed")}
        for x, y in itertools.pairwise(states)
    )
    state = await b.get_limiter_state()
    assert state.breaker is not None and state.breaker.state == "closed"
    assert state.breaker.openings == states.count("open")
    await a.close()
    await b.close()
