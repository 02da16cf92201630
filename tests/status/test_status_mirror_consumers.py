"""Several consumers of the mirror's group, and its read ahead: the same rows as one consumer."""

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


async def test_three_consumers_converge_to_the_rows_of_one(
    redis_client: aioredis.Redis, prefix: str, make_mirror: MakeMirror
) -> None:
    """One stream's events applied by one consumer and, on another stream, by three consumers
    reading ahead in small batches (committing in any order) give the same rows."""
    n, events = 40, _lives(40, seed=7)
    one, three = Stream(redis_client, prefix, uid("q")), Stream(redis_client, prefix, uid("q"))
    p1, p3 = uid("one") + "-", uid("three") + "-"
    for j, ev, fields in events:
        await one.emit(ev, f"{p1}{j}", **fields)
        await three.emit(ev, f"{p3}{j}", **fields)
    single = make_mirror([one.queue], batch_size=7)
    while await single.run_once():
        pass
    several = make_mirror([three.queue], batch_size=3, consumers=3)
    task = asyncio.create_task(several.run())

    async def applied() -> bool:
        return several.stats.events == len(events)

    await wait_until(applied, what="the three consumers to apply every event")
    await asyncio.wait_for(several.close(), HANG)  # bounds a hang only
    await asyncio.wait_for(task, HANG)
    assert several.stats.failures == 0
    assert await three.pending() == 0
    consumers = await redis_client.xinfo_consumers(three.key, "status-mirror")
    assert len(consumers) == 3  # each consumer joined the group under its own name
    assert await _rows(p3, n) == await _rows(p1, n)


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


def test_rejects_bad_consumers(redis_client: aioredis.Redis) -> None:
    with pytest.raises(ValueError, match="consumers must be >= 1, got 0"):
        StatusMirror(redis_client, ["q"], consumers=0)
