"""Lua contract tests: each script's effect, codes and fencing, on Redis 7 and on Valkey.

Times are compared on the Redis clock (the one the scripts use) and only as lower bounds: a
delay is shown not to end early, never to end within a short time."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest
from engine_helpers import HANG, wait_for, wait_redis_clock
from redis.exceptions import ResponseError

from jobqueue import InvalidJobError, JobState, LeaseLostError, PayloadTooLargeError, Queue
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
    return [int(e["ts"]) for e in await events(q) if e.get("id") == job_id and e["ev"] == name]


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


async def events(q: Queue) -> list[dict[str, str]]:
    entries = await q.redis.xrange(q.keys.events)
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]


async def test_add_get_and_counts(make_queue: Any) -> None:
    q = make_queue()
    job = await q.add("greet", {"who": "world"})
    assert job.state == JobState.WAITING
    got = await q.get_job(job.id)
    assert got is not None and got.data == {"who": "world"} and got.name == "greet"
    assert got.created_at is not None
    assert await q.get_job("nope") is None
    counts = await q.get_job_counts()
    assert counts == {
        "waiting": 1,
        "active": 0,
        "delayed": 0,
        "completed": 0,
        "failed": 0,
        "paused": 0,
        "waiting-children": 0,
    }


@pytest.mark.parametrize(
    ("data", "stored"),
    [
        ({"a": [1, (2, 3)], "b": None}, {"a": [1, [2, 3]], "b": None}),
        # flat: copied as it is, not parsed back (the same keys, values and types)
        (
            {"a": 1, "b": None, "c": 2.5, "d": "é", "e": True},
            {"a": 1, "b": None, "c": 2.5, "d": "é", "e": True},
        ),
        ({1: "a", "b": None}, {"1": "a", "b": None}),
        ({"a": 1, "b": None, "t": (1,)}, {"a": 1, "b": None, "t": [1]}),
        ((1, "x"), [1, "x"]),
        ("text", "text"),
        (7, 7),
        (2.5, 2.5),
        (True, True),
        (None, None),
    ],
)
async def test_a_job_added_has_the_data_the_handler_will_read(
    make_queue: Any, data: Any, stored: Any
) -> None:
    # a name and data only (most adds) and the same with an option (the general path): the job
    # returned holds its data as JSON gives it back, a copy of what was given
    q = make_queue()
    data = copy.deepcopy(data)  # the parameter is shared by the backends: changed below
    plain = await q.add("x", data)
    general = await q.add("x", data, attempts=2)
    for job in (plain, general):
        assert job.data == stored and type(job.data) is type(stored)
        if isinstance(stored, dict):
            assert [type(v) for v in job.data.values()] == [type(v) for v in stored.values()]
        assert job.state == JobState.WAITING and job.name == "x" and job.attempts_made == 0
        got = await q.get_job(job.id)
        assert got is not None and got.data == stored
    if isinstance(data, dict):
        data["b"] = "changed later"
        assert plain.data["b"] is None
    assert (plain.max_attempts, general.max_attempts) == (q.config.attempts, 2)


async def test_a_plain_add_validates_as_any_add(make_queue: Any) -> None:
    q = make_queue()
    for bad in ("", "a\nb", 3, ["x"], "n" * 201):
        with pytest.raises(InvalidJobError, match="job name"):
            await q.add(bad, {})
    with pytest.raises(InvalidJobError, match="delay"):
        await q.add("x", {}, delay=False)
    with pytest.raises(InvalidJobError, match="priority"):
        await q.add("x", {}, priority=False)
    with pytest.raises(InvalidJobError, match="not JSON"):
        await q.add("x", {"t": {1, 2}})
    with pytest.raises(InvalidJobError, match="job name"):  # the name is checked first
        await q.add("", {"t": {1, 2}})
    assert await q.get_job_counts() == dict.fromkeys(
        ("waiting", "active", "delayed", "completed", "failed", "paused", "waiting-children"), 0
    )


async def test_a_plain_add_writes_what_the_general_add_writes(make_queue: Any) -> None:
    # `add` with a name and data only runs add_plain.lua (its command packed once but for the
    # name and data, on the fast path), the same job in a batch runs add.lua: both leave the
    # same envelope, list entry and event
    q = make_queue()
    name, data = "café ✓", {"é": "ü", "n": [1, 2.5, None]}
    plain = await q.add(name, data)
    (general,) = await q.add_bulk([(name, data)])
    assert int(general.id) == int(plain.id) + 1
    assert await q.redis.lrange(q.keys.wait, 0, -1) == [plain.id.encode(), general.id.encode()]
    stored = [await q.redis.hget(q.keys.jobs, job.id) for job in (plain, general)]
    bodies = [json.loads(body) for body in stored]
    assert all(isinstance(body.pop("ts"), int) for body in bodies)
    assert bodies[0] == bodies[1] == {"n": name, "d": data}
    added = [e for e in await events(q) if e["ev"] == "added"]
    assert [e.pop("id") for e in added] == [plain.id, general.id]
    assert all(e.pop("ts") for e in added)
    assert added == [{"ev": "added", "name": name, "st": "waiting"}] * 2
    for job in (plain, general):
        got = await q.get_job(job.id)
        assert got is not None and (got.name, got.data) == (name, data)


async def test_a_plain_add_on_a_hand_written_id_writes_nothing(make_queue: Any) -> None:
    # the counter's ids cannot be given (digits only are refused), so only a key written by
    # hand can hold the next one: the add returns that job and writes nothing of its own
    q = make_queue()
    first = await q.add("x", 1)
    taken = str(int(first.id) + 1)
    await q.redis.hset(q.keys.jobs, taken, json.dumps({"n": "by-hand", "d": 0, "ts": 1}))
    stream = await q.redis.xlen(q.keys.events)
    job = await q.add("x", 2)
    assert (job.id, job.name, job.data) == (taken, "by-hand", 0)
    assert await q.redis.lrange(q.keys.wait, 0, -1) == [first.id.encode()]
    assert await q.redis.xlen(q.keys.events) == stream
    assert (await q.add("x", 3)).id == str(int(taken) + 1)


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
    assert [e["ev"] for e in await events(q) if e.get("id") == jid] == [
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
    times = sorted(int(e["ts"]) for e in await events(q) if e["ev"] == "active")
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
    assert (await events(q))[-1] == {
        "ev": "progress",
        "id": "p1",
        "p": "40",
        "ts": (await events(q))[-1]["ts"],
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
    kept = await events(q)
    assert kept[-1] == {"ev": "completed", "id": f"j{n - 1}", "a": "1", "ts": kept[-1]["ts"]}
    assert all(e["ev"] != "added" for e in kept)  # the oldest went first


async def test_no_events_when_the_stream_is_off(make_queue: Any) -> None:
    q = make_queue(events_maxlen=0)
    await q.add("x", None, job_id="quiet")
    _, [(jid, tok, _)] = await take(q, 1)
    assert await finish(q, [(jid, tok, "c", "null", "", 0, 0)]) == [1]
    assert not await q.redis.exists(q.keys.events)
    assert await q.get_job_state("quiet") == JobState.COMPLETED


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"job_id": "bad id"}, InvalidJobError),
        ({"job_id": "123"}, InvalidJobError),
        ({"job_id": "x" * 201}, InvalidJobError),
        ({"delay": -1}, InvalidJobError),
        ({"delay": float("nan")}, InvalidJobError),
        ({"priority": 2**21}, InvalidJobError),
        ({"attempts": 0}, InvalidJobError),
    ],
)
async def test_bad_options_write_nothing(
    make_queue: Any, kwargs: dict[str, Any], error: type
) -> None:
    q = make_queue()
    with pytest.raises(error):
        await q.add("x", {"ok": 1}, **kwargs)
    assert await q.redis.keys(q.keys.base + "*") == []


@pytest.mark.parametrize(
    "data",
    [float("nan"), {1, 2}, object(), {"x": float("inf")}, "lone \udc80", {"\ud800": 1}],
)
async def test_bad_data_writes_nothing(make_queue: Any, data: Any) -> None:
    q = make_queue()
    with pytest.raises(InvalidJobError):
        await q.add("x", data)
    with pytest.raises(InvalidJobError):
        await q.add_bulk([("ok", 1), ("x", data)])
    assert await q.redis.keys(q.keys.base + "*") == []


async def test_payload_limit(make_queue: Any) -> None:
    q = make_queue(max_payload=100)
    await q.add("x", "a" * 98)  # 100 bytes of JSON with the quotes: at the limit
    with pytest.raises(PayloadTooLargeError):
        await q.add("x", "a" * 99)


def test_code_table() -> None:
    from jobqueue import JobNotFoundError, LeaseLostError

    raise_for_code(0)
    with pytest.raises(LeaseLostError):
        raise_for_code(-2)
    with pytest.raises(JobNotFoundError):
        raise_for_code(-1)
