"""Schedules on every backend: ticks of an interval with three workers (exactly one job each),
the missed-ticks policy, racing tickers, upsert (same spec keeps the next run, a new spec starts
over), remove, cron in a time zone, and a scheduler loop that survives a bad entry."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from engine_helpers import redis_ms, wait_for, wait_redis_clock
from schedule_helpers import check_interval_ticks, ticks_of

from jobqueue import ConfigError, InvalidJobError, Job, Queue, Schedule, Worker
from jobqueue.schedules._loop import tick_schedulers

pytestmark = pytest.mark.integration


def ms(dt: datetime) -> int:
    return round(dt.timestamp() * 1000)


async def test_three_workers_make_one_job_per_tick(make_queue: Any) -> None:
    queues: list[Queue] = [make_queue("sched") for _ in range(3)]
    runs: Counter[str] = Counter()

    async def handler(job: Job) -> None:
        runs[job.id] += 1

    workers = [
        Worker(q, handler, handle_signals=False, scheduler_interval=0.02, name=f"w{i}")
        for i, q in enumerate(queues)
    ]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        s = await queues[0].upsert_scheduler("tick", every=0.2, name="beat", data={"n": 1})
        assert s.every == 0.2 and s.cron is None and s.name == "beat"

        async def eight_done() -> bool:
            return (await queues[0].get_job_counts())["completed"] >= 8

        await wait_for(eight_done, what="8 ticks completed")
    finally:
        await queues[0].remove_scheduler("tick")
        for w in workers:
            await w.close()
        await asyncio.gather(*tasks)
    ticks = await ticks_of(queues[0], "tick")
    assert len(ticks) >= 8
    assert ticks[0].tick_ms == ms(s.next_run)  # the first run: one interval after the upsert
    check_interval_ticks(ticks, 200)
    # each tick's job ran once, on whichever worker took it (one added as the workers closed
    # may wait for the next worker)
    assert set(runs.values()) == {1}, runs
    unrun = [t.job_id for t in ticks if t.job_id not in runs]
    assert all([await queues[0].get_job_state(i) == "waiting" for i in unrun]), unrun


async def test_missed_ticks_are_coalesced_into_one_job(make_queue: Any) -> None:
    q: Queue = make_queue("missed")
    s = await q.upsert_scheduler("m", every=0.1, name="catch-up")
    first = ms(s.next_run)
    # no worker runs while five ticks fall due
    await wait_redis_clock(q.redis, first + 5 * 100 + 1)
    added, _ = await tick_schedulers(q)  # what a worker's scheduler does when it comes back
    assert added == 1
    [tick] = await ticks_of(q, "m")
    assert tick.tick_ms == first  # the first missed tick, standing for the whole period
    (after,) = await q.get_schedulers()
    nxt = ms(after.next_run)
    # resumed at the first run after now (the call read the clock past first + 500), on the
    # interval's grid: the missed ticks made no job each, and no future tick was skipped
    assert (nxt - first) % 100 == 0 and first + 600 <= nxt <= tick.created_ms + 100
    assert after.last_run is not None and ms(after.last_run) == first
    assert (await tick_schedulers(q))[0] == 0  # nothing more is due yet
    await wait_redis_clock(q.redis, nxt)
    while (await tick_schedulers(q))[0] == 0:  # due on the Redis clock: the next call adds it
        await asyncio.sleep(0.01)
    check_interval_ticks(await ticks_of(q, "m"), 100)


async def test_racing_tickers_add_one_job_for_a_tick(make_queue: Any) -> None:
    queues: list[Queue] = [make_queue("race") for _ in range(8)]
    s = await queues[0].upsert_scheduler("r", every=0.05, name="x")
    await wait_redis_clock(queues[0].redis, ms(s.next_run))
    results = await asyncio.gather(*(tick_schedulers(q) for q in queues))
    assert sum(added for added, _ in results) == 1
    assert len(await ticks_of(queues[0], "r")) == 1


async def test_upsert_keeps_or_restarts_the_schedule(make_queue: Any) -> None:
    q: Queue = make_queue("up")
    a = await q.upsert_scheduler("u", every=60, name="old", data={"v": 1}, attempts=2)
    # the same schedule again (a redeploy): the next run is kept, the job changes
    b = await q.upsert_scheduler("u", every=60, name="new", data={"v": 2}, priority=3)
    assert b.next_run == a.next_run
    assert (b.name, b.data, b.priority, b.attempts) == ("new", {"v": 2}, 3, None)
    # a new interval starts over from now
    c = await q.upsert_scheduler("u", every=30, name="new")
    assert c.every == 30 and c.next_run < a.next_run
    # and a cron replaces the interval
    d = await q.upsert_scheduler("u", cron="0 6 * * 1-5", tz="America/New_York", name="new")
    assert (d.every, d.cron, d.tz) == (None, "0 6 * * 1-5", "America/New_York")
    local = d.next_run.astimezone(ZoneInfo("America/New_York"))
    assert (local.hour, local.minute, local.weekday() < 5) == (6, 0, True)
    now = datetime.fromtimestamp(await redis_ms(q.redis) / 1000, ZoneInfo("America/New_York"))
    assert d.next_run == croniter("0 6 * * 1-5", now).get_next(datetime)
    assert [s.id for s in await q.get_schedulers()] == ["u"]
    assert isinstance((await q.get_schedulers())[0], Schedule)


async def test_the_job_of_a_tick_carries_the_options(make_queue: Any) -> None:
    q: Queue = make_queue("opts")
    s = await q.upsert_scheduler("o", every=0.05, name="n", data=[1, 2], attempts=4, priority=2)
    await wait_redis_clock(q.redis, ms(s.next_run))
    assert (await tick_schedulers(q))[0] == 1
    [tick] = await ticks_of(q, "o")
    job = await q.get_job(tick.job_id)
    assert job is not None
    assert (job.name, job.data, job.max_attempts, job.priority) == ("n", [1, 2], 4, 2)
    assert tick.job_id == f"sched:o:{tick.tick_ms}" == s.job_id_prefix + str(tick.tick_ms)


async def test_remove_stops_the_schedule(make_queue: Any) -> None:
    q: Queue = make_queue("rm")
    s = await q.upsert_scheduler("gone", every=0.05, name="x")
    await q.upsert_scheduler("kept", every=3600, name="y")
    assert await q.remove_scheduler("gone") is True
    assert await q.remove_scheduler("gone") is False
    await wait_redis_clock(q.redis, ms(s.next_run) + 100)
    assert (await tick_schedulers(q))[0] == 0
    assert await ticks_of(q, "gone") == []
    assert [x.id for x in await q.get_schedulers()] == ["kept"]


async def test_a_cron_with_seconds_ticks(make_queue: Any) -> None:
    q: Queue = make_queue("cron")
    s = await q.upsert_scheduler("sec", cron="* * * * * *", name="x")  # every second
    assert ms(s.next_run) % 1000 == 0
    await wait_redis_clock(q.redis, ms(s.next_run))
    assert (await tick_schedulers(q))[0] == 1
    (after,) = await q.get_schedulers()
    assert ms(after.next_run) == ms(s.next_run) + 1000


async def test_an_entry_out_of_step_with_its_scheduler_is_mended(make_queue: Any) -> None:
    q: Queue = make_queue("mend")
    s = await q.upsert_scheduler("m", every=3600, name="x")
    await q.redis.zadd(q.keys.schedulers, {"m": 1})  # "due" long ago; the hash says in an hour
    added, wait_ms = await tick_schedulers(q)
    assert added == 0 and wait_ms == -1  # no job, and no reason to call again at once
    assert await q.redis.zscore(q.keys.schedulers, "m") == ms(s.next_run)


async def test_the_scheduler_loop_survives_a_bad_entry(make_queue: Any) -> None:
    q: Queue = make_queue("bad")
    await q.upsert_scheduler("broken", every=0.05, name="x")
    await q.upsert_scheduler("good", every=0.05, name="y")
    # a scheduler whose stored spec cannot be read (written by hand, or by another version)
    await q.redis.hset(q.keys.scheduler("broken"), mapping={"every": "", "cron": "nonsense"})
    errors: list[BaseException] = []
    w = Worker(
        q, lambda job: None, handle_signals=False, scheduler_interval=0.02,
        on_error=errors.append,
    )  # fmt: skip
    task = asyncio.create_task(w.run())
    try:

        async def good_ticked() -> bool:
            return len(await ticks_of(q, "good")) >= 2

        await wait_for(good_ticked, what="the good scheduler to tick twice")
    finally:
        await w.close()
        await task
    assert await ticks_of(q, "broken") == []
    assert errors == []  # logged and skipped: not an error of the worker


async def test_invalid_schedules_are_refused_and_write_nothing(make_queue: Any) -> None:
    q: Queue = make_queue("inv")
    bad: list[dict[str, Any]] = [
        {"every": 1, "cron": "* * * * *"},
        {},
        {"every": 0},
        {"every": -1},
        {"every": float("nan")},
        {"every": True},
        {"cron": "61 * * * *"},
        {"cron": "every day"},
        {"cron": "* * * * *", "tz": "Mars/Olympus"},
    ]
    for options in bad:
        with pytest.raises(ConfigError):
            await q.upsert_scheduler("x", name="n", **options)
    with pytest.raises(ConfigError, match="bad id"):
        await q.upsert_scheduler("bad id", every=1, name="n")
    with pytest.raises(InvalidJobError):
        await q.upsert_scheduler("x", every=1, name="n", data={1, 2})
    with pytest.raises(InvalidJobError):
        await q.upsert_scheduler("x", every=1, name="")
    assert await q.get_schedulers() == []
    with pytest.raises(ConfigError):
        Worker(q, lambda job: None, scheduler_interval=0)
