"""Lua contract tests: each script's effect, codes and fencing, on Redis 7 and on Valkey.

Times are compared on the Redis clock (the one the scripts use) and only as lower bounds: a
delay is shown not to end early, never to end within a short time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from engine_helpers import HANG, stream_events, wait_for, wait_redis_clock
from redis.exceptions import ResponseError

from jobqueue import JobState, LeaseLostError, Queue
from jobqueue.core.replies import Outcome, Retention, TakeLimits, raise_for_code

pytestmark = pytest.mark.integration


def limits(q: Queue, worker: str = "w1", lease_ms: int = 30_000) -> TakeLimits:
    rate = q.config.rate_limit
    return TakeLimits(
        worker=worker,
        lease_ms=lease_ms,
        concurrency=q.config.concurrency or 0,
        rate_max=rate.max if rate else 0,
        rate_per_ms=int(rate.per * 1000) if rate else 0,
    )


async def take(
    q: Queue, n: int, worker: str = "w1", lease_ms: int = 30_000
) -> tuple[int, list[tuple[str, str, int]]]:
    reply = await q.scripts.take(n, limits(q, worker, lease_ms))
    return reply.wait_ms, [(t.job_id, t.token, t.attempt) for t in reply.jobs]


async def take_when_due(
    q: Queue, n: int, worker: str = "w1", timeout: float = HANG, max_hint: int | None = None
) -> list[tuple[str, str, int]]:
    """Take as soon as something is due, sleeping as the script's hint says (a bound on a
    hang only: being late is never a failure). Every take that comes back empty must give a
    hint in (0, max_hint] ms."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        hint, jobs = await take(q, n, worker)
        if jobs:
            return jobs
        if max_hint is not None:
            assert 0 < hint <= max_hint, hint
        assert asyncio.get_running_loop().time() < deadline, "nothing became due"
        await asyncio.sleep(max(hint, 1) / 1000)


async def event_ts(q: Queue, job_id: str, name: str) -> list[int]:
    """The Redis times (ms) of a job's events named `name`, oldest first."""
    return [
        int(e["ts"]) for e in await stream_events(q) if e.get("id") == job_id and e["ev"] == name
    ]


async def recover_until(q: Queue, expected: list[int], max_stalls: int = 1) -> None:
    """Run the stall check until it reports `expected` ([requeued, failed]): a lease expires
    on the Redis clock, whenever that is."""

    async def reported() -> bool:
        return await recover(q, max_stalls=max_stalls) == expected

    await wait_for(reported, what=f"the stall check to report {expected}")


async def finish(
    q: Queue, outcomes: list[tuple[Any, ...]], n: int = 0, worker: str = "w1"
) -> list[int]:
    reply = await q.scripts.finish(
        [Outcome(*o) for o in outcomes],
        take=n,
        limits=limits(q, worker),
        retention=Retention(*q.config.retention_ms),
    )
    return reply.codes


async def recover(q: Queue, max_stalls: int = 1, lock_ms: int = 1) -> list[int]:
    reply = await q.scripts.recover(
        owner="me", max_stalls=max_stalls, lock_ms=lock_ms, batch=100, retention=Retention()
    )
    return [-1] if reply is None else [len(reply.requeued), len(reply.failed)]


async def test_dedup_by_job_id(make_queue: Any) -> None:
    q = make_queue()
    first = await q.add("x", {"v": 1}, job_id="order-1")
    again = await q.add("x", {"v": 2}, job_id="order-1")
    assert first.id == again.id == "order-1"
    assert again.data == {"v": 1}
    bulk = await q.add_bulk([{"name": "x", "data": {"v": 3}, "job_id": "order-1"}])
    assert bulk[0].data == {"v": 1}
    assert (await q.get_job_counts())["waiting"] == 1


async def test_priority_order_and_fifo(make_queue: Any) -> None:
    q = make_queue()
    specs = [("a", 0), ("b", 5), ("c", -1), ("d", 5), ("e", 10), ("f", 0)]
    for name, prio in specs:
        await q.add(name, None, job_id=f"id-{name}", priority=prio)
    _, jobs = await take(q, 10)
    assert [j[0] for j in jobs] == ["id-e", "id-b", "id-d", "id-a", "id-f", "id-c"]


async def test_delayed_job_waits_then_runs(make_queue: Any) -> None:
    q = make_queue()
    job = await q.add("later", None, delay=0.3)
    assert await q.get_job_state(job.id) == JobState.DELAYED
    # every early take gets nothing and a hint of at most the delay...
    jobs = await take_when_due(q, 1, max_hint=300)
    assert [j[0] for j in jobs] == [job.id]
    # ...and the take that got it came no sooner than the delay, on the Redis clock
    [added] = await event_ts(q, job.id, "added")
    [active] = await event_ts(q, job.id, "active")
    assert active - added >= 300


async def test_lost_lease_is_fenced(make_queue: Any) -> None:
    q = make_queue()
    job = await q.add("x", None)
    _, [(jid, tok1, attempt)] = await take(q, 1, "w1", lease_ms=50)
    assert attempt == 1
    await recover_until(q, [1, 0])
    assert await q.get_job_state(job.id) == JobState.WAITING
    _, [(_, tok2, attempt2)] = await take(q, 1, "w2")
    assert tok2 != tok1 and attempt2 == 1  # a stall does not spend an attempt
    # the late worker can neither complete, renew nor report progress
    assert await finish(q, [(jid, tok1, "c", "1", "", 0, 0)]) == [-2]
    renewed = await q.scripts.renew([(jid, tok1)], lease_ms=1000)
    assert renewed.lost == [jid]
    with pytest.raises(LeaseLostError):
        await q.scripts.progress(jid, tok1, 50)
    assert await finish(q, [(jid, tok2, "c", '"ok"', "", 0, 0)]) == [1]
    done = await q.get_job(jid)
    assert done is not None and done.state == JobState.COMPLETED and done.result == "ok"


async def test_batch_is_fenced_per_outcome(make_queue: Any) -> None:
    """One finish call checks every outcome on its own (the batch reads `active` at once): a
    job reported twice is recorded once, a foreign token and a job no longer active are
    refused, and only the recorded jobs leave `active`."""
    q = make_queue()
    for name in ("a", "b", "c", "d"):
        await q.add("x", None, job_id=name)
    _, jobs = await take(q, 4)
    tok = {jid: t for jid, t, _ in jobs}
    await q.redis.zrem(q.keys.active, "d")  # its token still matches, but it is not active
    codes = await finish(
        q,
        [
            ("a", tok["a"], "c", "1", "", 0, 0),
            ("a", tok["a"], "c", "2", "", 0, 0),
            ("b", "w9:1", "c", "3", "", 0, 0),
            ("c", tok["c"], "f", "boom", "E", 0, 3),
            ("d", tok["d"], "c", "4", "", 0, 0),
        ],
    )
    assert codes == [1, -2, -2, 2, -2]
    assert await q.redis.zrange(q.keys.active, 0, -1) == [b"b"]
    done = await q.get_job("a")
    assert done is not None and done.state == JobState.COMPLETED and done.result == 1
    assert await q.get_job_state("b") == JobState.ACTIVE
    assert await q.get_job_state("c") in (JobState.DELAYED, JobState.WAITING)
    assert await q.get_job_state("d") == JobState.ACTIVE  # nothing written for it


async def test_counts_past_the_memos(make_queue: Any) -> None:
    """Attempt and start counts read and written as text (memoised below 256, by at most 3
    characters): the same numbers on both sides of the memos' bound, and a job never
    attempted has no `a` while it runs (0 attempts made)."""
    q = make_queue()
    for name, made, starts in (("low", "254", "254"), ("high", "300", "999"), ("odd", "007", "0")):
        await q.add("x", None, job_id=name, attempts=1000)
        await q.redis.hset(q.keys.state(name), mapping={"a": made, "n": starts})
    await q.add("x", None, job_id="new")
    _, jobs = await take(q, 4)
    got = {jid: (tok, attempt) for jid, tok, attempt in jobs}
    assert got == {
        "low": ("w1:255", 255),
        "high": ("w1:1000", 301),
        "odd": ("w1:1", 8),
        "new": ("w1:1", 1),
    }
    assert await q.redis.hget(q.keys.state("new"), "a") is None
    running = await q.get_job("new")
    assert running is not None and running.attempts_made == 0
    active = {e["id"]: e["a"] for e in await stream_events(q) if e["ev"] == "active"}
    assert active == {"low": "255", "high": "301", "odd": "8", "new": "1"}
    codes = await finish(q, [(jid, tok, "c", "null", "", 0, 0) for jid, (tok, _) in got.items()])
    assert codes == [1, 1, 1, 1]
    for jid, made in (("low", 255), ("high", 301), ("odd", 8), ("new", 1)):
        done = await q.get_job(jid)
        assert done is not None and done.state == JobState.COMPLETED
        assert done.attempts_made == made


async def test_stalled_too_often_fails(make_queue: Any) -> None:
    q = make_queue()
    job = await q.add("x", None)
    for expected in ([1, 0], [0, 1]):
        await take(q, 1, lease_ms=1)
        await recover_until(q, expected, max_stalls=1)
    got = await q.get_job(job.id)
    assert got is not None and got.state == JobState.FAILED and got.error_type == "STALLED"


async def test_stall_check_runs_once_per_interval(make_queue: Any) -> None:
    q = make_queue()
    # a lock far longer than the test: only the lock can explain the refusal
    assert (await recover(q, lock_ms=600_000))[0] >= 0
    assert await recover(q, lock_ms=600_000) == [-1]


async def test_retry_then_final_failure(make_queue: Any) -> None:
    q = make_queue()
    job = await q.add("x", None, attempts=2)
    _, [(jid, tok, _)] = await take(q, 1)
    assert await finish(q, [(jid, tok, "f", "boom", "UNKNOWN", 40, 2)]) == [2]
    got = await q.get_job(jid)
    assert got is not None and got.state == JobState.DELAYED and got.attempts_made == 1
    assert got.error_message == "boom"
    [(_, tok, attempt)] = await take_when_due(q, 1, max_hint=40)
    assert attempt == 2
    [retrying] = await event_ts(q, jid, "retrying")
    assert (await event_ts(q, jid, "active"))[1] - retrying >= 40  # not before its delay
    assert await finish(q, [(jid, tok, "f", "boom again", "NETWORK_ERROR", 40, 2)]) == [1]
    got = await q.get_job(job.id)
    assert got is not None and got.state == JobState.FAILED and got.attempts_made == 2
    assert got.error_type == "NETWORK_ERROR"
    assert [e["ev"] for e in await stream_events(q) if e.get("id") == jid] == [
        "added",
        "active",
        "retrying",
        "active",
        "failed",
    ]


async def test_not_retryable_fails_at_once(make_queue: Any) -> None:
    q = make_queue()
    await q.add("x", None, job_id="j1", attempts=5)
    _, [(jid, tok, _)] = await take(q, 1)
    assert await finish(q, [(jid, tok, "f", "bad input", "VALIDATION_ERROR", -1, 5)]) == [1]
    got = await q.get_job("j1")
    assert got is not None and got.state == JobState.FAILED and got.attempts_made == 1


async def test_rate_limit_deferral_spends_no_attempt_and_holds_queue(make_queue: Any) -> None:
    q = make_queue()
    await q.add("x", None, job_id="j1")
    await q.add("x", None, job_id="j2")
    _, [(jid, tok, _)] = await take(q, 1)
    # a hold far longer than the test: only the hold can explain an empty take
    assert await finish(q, [(jid, tok, "r", "429", "RATE_LIMIT", 600_000, 1)]) == [2]
    got = await q.get_job(jid)
    assert got is not None and got.state == JobState.DELAYED and got.attempts_made == 0
    hint, jobs = await take(q, 5)  # j2 is ready, but the whole queue is held
    assert jobs == [] and 0 < hint <= 600_000
    assert 0 < await q.redis.pttl(q.keys.limited) <= 600_000
    await q.redis.delete(q.keys.limited)
    _, jobs = await take(q, 5)
    assert [j[0] for j in jobs] == ["j2"]  # j1 still waits out its own deferral
    # past the cap on deferrals the job fails: make j1 due now (its deferral is not the
    # point here) and defer it once more
    await q.redis.zadd(q.keys.delayed, {jid: 0}, xx=True)
    [(jid, tok, _)] = await take_when_due(q, 1)
    assert await finish(q, [(jid, tok, "r", "429", "RATE_LIMIT", 10, 1)]) == [1]
    got = await q.get_job(jid)
    assert got is not None and got.state == JobState.FAILED and got.error_type == "RATE_LIMIT"


async def test_hand_back_goes_to_front(make_queue: Any) -> None:
    q = make_queue()
    await q.add("x", None, job_id="first")
    await q.add("x", None, job_id="second")
    _, [(jid, tok, _)] = await take(q, 1)
    assert await finish(q, [(jid, tok, "h", "", "", 0, 0)]) == [2]
    _, jobs = await take(q, 2)
    assert [j[0] for j in jobs] == ["first", "second"]
    assert jobs[0][2] == 1  # handing back spends no attempt


async def test_global_concurrency_cap(make_queue: Any) -> None:
    q = make_queue(concurrency=2)
    await q.add_bulk([("x", i) for i in range(5)])
    _, a = await take(q, 5, "w1")
    hint, b = await take(q, 5, "w2")
    assert len(a) == 2 and b == [] and hint == 0
    assert await finish(q, [(a[0][0], a[0][1], "c", "null", "", 0, 0)]) == [1]
    _, b = await take(q, 5, "w2")
    assert len(b) == 1


async def test_token_bucket(make_queue: Any) -> None:
    from jobqueue import RateLimit

    q = make_queue(rate_limit=RateLimit(max=3, per=1.0))
    await q.add_bulk([("x", i) for i in range(10)])
    _, jobs = await take(q, 10)
    assert len(jobs) == 3  # a full bucket
    # then one token per 333 ms: each empty take hints at most that long, and by Redis time t
    # (ms after the first take) at most 3 + 3 * t / 1000 jobs have started
    taken = 3
    while taken < 6:
        taken += len(await take_when_due(q, 10, max_hint=334))
    times = sorted(int(e["ts"]) for e in await stream_events(q) if e["ev"] == "active")
    assert len(times) == taken
    for i, t in enumerate(times):
        assert i + 1 <= 3 + 3 * (t - times[0]) / 1000 + 1, (i, t - times[0])  # +1: ms rounding


async def test_pause_and_resume(make_queue: Any) -> None:
    q = make_queue()
    await q.add_bulk([("x", i) for i in range(3)])
    assert await q.pause() is True
    assert await q.pause() is False
    counts = await q.get_job_counts()
    assert counts["waiting"] == 0 and counts["paused"] == 3
    _, jobs = await take(q, 3)
    assert jobs == []
    assert await q.resume() is True
    _, jobs = await take(q, 3)
    assert len(jobs) == 3


async def test_retention_by_count(make_queue: Any) -> None:
    q = make_queue(keep_completed=(2, None))
    await q.add_bulk([{"name": "x", "job_id": f"j{i}"} for i in range(5)])
    _, jobs = await take(q, 5)
    for jid, tok, _ in jobs:
        await finish(q, [(jid, tok, "c", "null", "", 0, 0)])
    assert (await q.get_job_counts())["completed"] == 2
    assert await q.get_job("j0") is None
    assert not await q.redis.hexists(q.keys.jobs, "j0")
    assert not await q.redis.exists(q.keys.state("j0"))
    assert await q.get_job("j4") is not None


async def test_retention_by_age(make_queue: Any) -> None:
    q = make_queue(keep_failed=(None, 0.05))
    await q.add_bulk([{"name": "x", "job_id": f"j{i}"} for i in range(2)])
    _, jobs = await take(q, 2)
    await finish(q, [(jobs[0][0], jobs[0][1], "f", "e", "UNKNOWN", -1, 1)])
    [failed_at] = await event_ts(q, "j0", "failed")
    await wait_redis_clock(q.redis, failed_at + 51)  # j0 is now older than 50 ms
    await finish(q, [(jobs[1][0], jobs[1][1], "f", "e", "UNKNOWN", -1, 1)])
    assert await q.get_job("j0") is None
    assert (await q.get_job_counts())["failed"] == 1


async def test_progress_is_fenced_and_recorded(make_queue: Any) -> None:
    q = make_queue()
    await q.add("x", None, job_id="p1")
    _, [(jid, tok, _)] = await take(q, 1)
    await q.scripts.progress(jid, tok, 40)
    got = await q.get_job(jid)
    assert got is not None and got.progress == 40 and got.state == JobState.ACTIVE
    assert (await stream_events(q))[-1] == {
        "ev": "progress",
        "id": "p1",
        "p": "40",
        "ts": (await stream_events(q))[-1]["ts"],
    }


async def test_event_stream_is_capped(make_queue: Any) -> None:
    maxlen = 50
    q = make_queue(events_maxlen=maxlen)
    # `XADD MAXLEN ~` trims whole macro nodes only: the stream keeps at least `maxlen`
    # entries, and fewer than one node (stream-node-max-entries) more
    try:
        config = await q.redis.config_get("stream-node-max-entries")
        node = int(config["stream-node-max-entries"])
    except ResponseError:  # fakeredis has no CONFIG (and trims exactly): Redis's default
        node = 100
    assert node > 0

    async def length_within_cap() -> int:
        length = int(await q.redis.xlen(q.keys.events))
        assert maxlen <= length < maxlen + node, (length, maxlen, node)
        return length

    n = 3 * node
    await q.add_bulk([{"name": "x", "job_id": f"j{i}"} for i in range(n)])  # n `added`
    await length_within_cap()
    _, jobs = await take(q, n)  # n `active`
    assert len(jobs) == n
    await length_within_cap()
    for i in range(0, n, 50):  # n `completed`, in batches as workers report them
        batch = [(jid, tok, "c", "null", "", 0, 0) for jid, tok, _ in jobs[i : i + 50]]
        assert await finish(q, batch) == [1] * len(batch)
        await length_within_cap()
    kept = await stream_events(q)
    assert kept[-1] == {"ev": "completed", "id": f"j{n - 1}", "a": "1", "ts": kept[-1]["ts"]}
    assert all(e["ev"] != "added" for e in kept)  # the oldest went first


async def test_no_events_when_the_stream_is_off(make_queue: Any) -> None:
    q = make_queue(events_maxlen=0)
    await q.add("x", None, job_id="quiet")
    _, [(jid, tok, _)] = await take(q, 1)
    assert await finish(q, [(jid, tok, "c", "null", "", 0, 0)]) == [1]
    assert not await q.redis.exists(q.keys.events)
    assert await q.get_job_state("quiet") == JobState.COMPLETED


def test_code_table() -> None:
    from jobqueue import JobNotFoundError, LeaseLostError

    raise_for_code(0)
    with pytest.raises(LeaseLostError):
        raise_for_code(-2)
    with pytest.raises(JobNotFoundError):
        raise_for_code(-1)
