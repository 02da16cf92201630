"""Writers sharing a batch, read ahead, superseded events skipped, two mirrors on one group."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from status_helpers import HANG, Stream, uid, wait_until

from pipeline import status as st
from pipeline.mirror import StatusMirror
from pipeline.status_fold import apply_changes, change_from_event

MakeMirror = Callable[..., StatusMirror]


def _lives(n: int, seed: int) -> list[tuple[int, str, dict[str, Any]]]:
    """Events of `n` jobs (by job number), their lives interleaved in a seeded random order."""
    lives: list[list[tuple[str, dict[str, Any]]]] = []
    for j in range(n):
        life: list[tuple[str, dict[str, Any]]] = [
            ("added", {"name": f"type{j % 3}", "st": "waiting"}),
            ("active", {"a": 1}),
            ("progress", {"p": 40}),
        ]
        if j % 2:
            life += [
                ("retrying", {"a": 1, "et": "NETWORK_ERROR", "em": "boom"}),
                ("active", {"a": 2}),
            ]
        life.append(
            ("failed", {"a": 2, "et": "X", "em": "no"}) if j % 5 == 0 else ("completed", {"a": 2})
        )
        lives.append(life)
    rng, out = random.Random(seed), []
    cursors = [0] * n
    while any(c < len(lives[j]) for j, c in enumerate(cursors)):
        j = rng.choice([j for j, c in enumerate(cursors) if c < len(lives[j])])
        ev, fields = lives[j][cursors[j]]
        cursors[j] += 1
        out.append((j, ev, fields))
    return out


async def _rows(prefix: str, n: int) -> list[tuple[Any, ...]]:
    rows = []
    for j in range(n):
        r = await st.get_job_status(f"{prefix}{j}")
        assert r is not None, f"no row for job {j}"
        rows.append((r.job_type, r.status, r.progress, r.attempts, r.error_type, r.error_message))
    return rows


async def _run_until_applied(mirrors: list[StatusMirror], events: int) -> None:
    tasks = [asyncio.create_task(m.run()) for m in mirrors]

    async def applied() -> bool:
        return sum(m.stats.events for m in mirrors) >= events

    await wait_until(applied, what="the mirrors to apply every event")
    for m in mirrors:
        await asyncio.wait_for(m.close(), HANG)  # bounds a hang only
    await asyncio.wait_for(asyncio.gather(*tasks), HANG)
    assert all(m.stats.failures == 0 for m in mirrors)


async def test_writers_and_big_batches_give_the_rows_of_one_event_at_a_time(
    redis_client: aioredis.Redis, prefix: str, make_mirror: MakeMirror
) -> None:
    """The same events on three streams: applied one per transaction (the reference), in
    one big batch (events superseded within it skipped), and by three writers per batch in
    small batches read ahead: the same rows, field for field."""
    n, events = 40, _lives(40, seed=7)
    ref, big, three = (Stream(redis_client, prefix, uid("q")) for _ in range(3))
    pr, pb, p3 = uid("ref") + "-", uid("big") + "-", uid("three") + "-"
    for j, ev, fields in events:
        for stream, p in ((ref, pr), (big, pb), (three, p3)):
            await stream.emit(ev, f"{p}{j}", **fields)
    for stream, size in ((ref, 1), (big, 500)):
        mirror = make_mirror([stream.queue], batch_size=size)
        while await mirror.run_once():
            pass
    writers = make_mirror([three.queue], batch_size=9, writers=3)
    await _run_until_applied([writers], len(events))
    assert writers.stats.transactions > len(events) // 9  # batches were split
    assert await three.pending() == 0
    reference = await _rows(pr, n)
    assert await _rows(pb, n) == reference
    assert await _rows(p3, n) == reference


async def test_two_mirrors_on_one_group_converge_to_the_rows_of_one(
    redis_client: aioredis.Redis, prefix: str, make_mirror: MakeMirror
) -> None:
    """Two mirrors (two processes) share a group and commit a job's events in any order:
    each job ends in the status, attempts and type one mirror gives (the newest event wins;
    details of earlier states, like the progress a failed job had reached, may be lost)."""
    n, events = 40, _lives(40, seed=11)
    one, two = Stream(redis_client, prefix, uid("q")), Stream(redis_client, prefix, uid("q"))
    p1, p2 = uid("one") + "-", uid("two") + "-"
    for j, ev, fields in events:
        await one.emit(ev, f"{p1}{j}", **fields)
        await two.emit(ev, f"{p2}{j}", **fields)
    single = make_mirror([one.queue], batch_size=7)
    while await single.run_once():
        pass
    pair = [make_mirror([two.queue], batch_size=3, consumer=f"m{k}") for k in (1, 2)]
    await _run_until_applied(pair, len(events))
    assert await two.pending() == 0
    assert len(await redis_client.xinfo_consumers(two.key, "status-mirror")) == 2
    essentials = [r[:2] + r[3:4] for r in await _rows(p1, n)]
    assert [r[:2] + r[3:4] for r in await _rows(p2, n)] == essentials


async def test_an_older_added_applied_last_still_names_the_job(
    stream: Stream, make_mirror: MakeMirror, pool: asyncpg.Pool
) -> None:
    """Another consumer may commit a job's `completed` before its `added`: the row is
    completed and still gets the job's name."""
    mirror = make_mirror([stream.queue])
    job_id, q = uid(), stream.queue
    async with pool.acquire() as conn:
        await mirror.apply([(q, "1000-3", {"ev": "completed", "id": job_id, "a": "1"})], conn)
        await mirror.apply([(q, "1000-1", {"ev": "added", "id": job_id, "name": "t"})], conn)
        await mirror.apply([(q, "1000-2", {"ev": "active", "id": job_id, "a": "1"})], conn)
    r = await st.get_job_status(job_id)
    assert r is not None
    assert (r.job_type, r.status, r.attempts, r.event_ms, r.event_seq) == (
        "t",
        "completed",
        1,
        1000,
        3,
    )


async def test_only_events_older_than_a_completed_are_skipped(
    stream: Stream, make_mirror: MakeMirror, pool: asyncpg.Pool
) -> None:
    """`apply` given a batch out of order skips by stream id, not by place: a newer event
    listed before a job's `completed` still counts, as it does applied one at a time."""
    mirror = make_mirror([stream.queue])
    q, batch, single = stream.queue, uid(), uid()

    def events(job_id: str) -> list[tuple[str, str, dict[str, str]]]:
        return [
            (q, "1000-9", {"ev": "active", "id": job_id, "a": "2"}),
            (q, "1000-2", {"ev": "active", "id": job_id, "a": "1"}),
            (q, "1000-5", {"ev": "completed", "id": job_id, "a": "1"}),
            (q, "1000-1", {"ev": "added", "id": job_id, "name": "t"}),
        ]

    async with pool.acquire() as conn:
        await mirror.apply(events(batch), conn)
        for event in sorted(events(single), key=lambda e: int(e[1].split("-")[1])):
            await mirror.apply([event], conn)
    rows = [await st.get_job_status(j) for j in (batch, single)]
    assert [(r.job_type, r.status, r.attempts) for r in rows if r] == [("t", "completed", 2)] * 2


async def test_concurrent_batches_on_common_jobs_never_deadlock(pool: asyncpg.Pool) -> None:
    """Batches touching the same jobs, existing and new, committed at once: no deadlock, and
    every job ends at its newest event."""
    q, jobs = uid("q"), [uid() for _ in range(30)]
    rng = random.Random(3)

    async def batch(seq: int) -> None:
        picked = rng.sample(jobs, 20)
        changes = [
            change_from_event(q, f"{2000 + seq}-{i}", {"ev": "active", "id": j, "a": str(seq)})
            for i, j in enumerate(picked)
        ]
        async with pool.acquire() as conn:
            await apply_changes(conn, [c for c in changes if c is not None])

    for round_ in range(5):
        await asyncio.gather(*(batch(round_ * 10 + k) for k in range(6)))
    for job_id in jobs:
        r = await st.get_job_status(job_id)
        if r is not None:
            assert r.status == "active" and r.attempts == r.event_ms - 2000


def test_rejects_bad_writers(redis_client: aioredis.Redis) -> None:
    with pytest.raises(ValueError, match="writers must be >= 1, got 0"):
        StatusMirror(redis_client, ["q"], writers=0)
