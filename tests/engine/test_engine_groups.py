"""Groups: round-robin between groups within a priority level, the per-group concurrency cap,
and every path that moves or removes waiting jobs keeping the group structures consistent (a
seeded random walk over all of them). On Redis, Valkey and fakeredis."""

from __future__ import annotations

import random
from typing import Any

import pytest
from engine_helpers import wait_for
from groups_helpers import check_groups, finish, names, take

from jobqueue import Bucket, Dedup, InvalidJobError, JobState, Limiter, QueueStateError
from jobqueue.core.replies import Retention

pytestmark = pytest.mark.integration


async def test_one_worker_takes_from_the_groups_in_turn(make_queue: Any) -> None:
    q = make_queue()
    await q.add_bulk([{"name": "a", "data": i, "group": "A"} for i in range(20)])
    await q.add_bulk([{"name": "b", "data": i, "group": "B"} for i in range(20)])
    await q.add_bulk([{"name": "c", "data": i, "group": "C"} for i in range(4)])
    order = []
    for _ in range(44):
        [(job_id, _token)] = await take(q, 1)
        order.append(job_id)
    groups = await names(q, order)
    assert groups[:12] == ["A", "B", "C"] * 4
    assert groups[12:] == ["A", "B"] * 16
    # FIFO within each group
    datas = [(await q.get_job(i)).data for i in order]  # type: ignore[union-attr]
    assert [d for d, g in zip(datas, groups, strict=True) if g == "A"] == list(range(20))
    assert await take(q, 1) == []
    await check_groups(q)


async def test_a_batch_take_is_round_robin_too(make_queue: Any) -> None:
    q = make_queue()
    await q.add_bulk([{"name": "a", "group": "A"} for _ in range(10)])
    await q.add_bulk([{"name": "b", "group": "B"} for _ in range(10)])
    jobs = await take(q, 6)
    assert await names(q, [j for j, _ in jobs]) == ["A", "B"] * 3
    await check_groups(q)


@pytest.mark.parametrize("slots", [1, 4])
async def test_a_newcomer_group_waits_at_most_one_job_per_slot(make_queue: Any, slots: int) -> None:
    q = make_queue()
    await q.add_bulk([{"name": "a", "group": "A"} for _ in range(300)])
    running = await take(q, slots)  # every slot busy with A
    newcomer = await q.add("b", None, group="B")
    started_before = 0
    while True:
        job_id, token = running.pop(0)
        _, got = await finish(q, [(job_id, token, "c", "null", "", 0, 0)], n=1)
        [(next_id, next_token)] = got
        if next_id == newcomer.id:
            break
        started_before += 1
        running.append((next_id, next_token))
    # B's job started after at most one more job of A per slot (here: one in all)
    assert started_before <= slots
    assert started_before == 1
    await check_groups(q)


async def test_ungrouped_jobs_take_turns_like_groups_of_one(make_queue: Any) -> None:
    q = make_queue()
    await q.add_bulk([{"name": "a", "group": "A"} for _ in range(3)])
    await q.add_bulk([{"name": "u"} for _ in range(2)])
    jobs = await take(q, 10)
    assert await names(q, [j for j, _ in jobs]) == ["A", "u", "u", "A", "A"]


async def test_priority_levels_come_first_then_groups_in_turn(make_queue: Any) -> None:
    q = make_queue()
    await q.add_bulk([{"name": "a", "group": "A", "priority": 0} for _ in range(3)])
    await q.add_bulk([{"name": "b", "group": "B", "priority": 5} for _ in range(2)])
    await q.add_bulk([{"name": "c", "group": "C", "priority": 5} for _ in range(2)])
    await q.add("low", None, priority=-1)
    await q.add("top", None, priority=9)
    jobs = await take(q, 20)
    assert await names(q, [j for j, _ in jobs]) == [
        "top", "B", "C", "B", "C", "A", "A", "A", "low",
    ]  # fmt: skip
    await check_groups(q)


async def test_a_group_follows_its_highest_priority_job(make_queue: Any) -> None:
    q = make_queue()
    await q.add_bulk([{"name": "a", "group": "A"} for _ in range(2)])
    await q.add("b", None, group="B")
    urgent = await q.add("a-urgent", None, group="A", priority=3)
    await check_groups(q)
    jobs = await take(q, 10)
    assert jobs[0][0] == urgent.id
    assert await names(q, [j for j, _ in jobs[1:]]) == ["B", "A", "A"]


async def test_group_concurrency_cap(make_queue: Any) -> None:
    q = make_queue(group_concurrency=2)
    await q.add_bulk([{"name": "a", "group": "A"} for _ in range(5)])
    await q.add_bulk([{"name": "b", "group": "B"} for _ in range(5)])
    await q.add_bulk([{"name": "c", "group": "C", "group_concurrency": 1} for _ in range(5)])
    await q.add("u", None)
    first = await take(q, 20)
    assert sorted(await names(q, [j for j, _ in first])) == ["A", "A", "B", "B", "C", "u"]
    await check_groups(q)
    assert await take(q, 20) == []  # every group at its cap
    counts = await q.get_job_counts()
    assert counts["waiting"] == 3 + 3 + 4 and counts["active"] == 6
    # a finished job of A frees one slot of A, and only of A
    groups = await names(q, [j for j, _ in first])
    a_job = next(j for j, g in zip(first, groups, strict=True) if g == "A")
    codes, more = await finish(q, [(a_job[0], a_job[1], "c", "null", "", 0, 0)], n=20)
    assert codes == [1]
    assert await names(q, [j for j, _ in more]) == ["A"]
    await check_groups(q)


async def test_a_stalled_job_frees_its_group_slot(make_queue: Any) -> None:
    q = make_queue(group_concurrency=1)
    await q.add_bulk([{"name": "a", "group": "A"} for _ in range(2)])
    [(job_id, _)] = await take(q, 5, lease_ms=1)
    assert await take(q, 5) == []

    async def requeued() -> bool:
        reply = await q.scripts.recover(
            owner="me", max_stalls=5, lock_ms=1, batch=10, retention=Retention()
        )
        return reply is not None and reply.requeued == [job_id]

    await wait_for(requeued, what="the stall check to requeue the job")
    await check_groups(q)
    again = await take(q, 5)
    assert [j for j, _ in again] == [job_id]  # back at the front of its group
    await check_groups(q)


async def test_groups_on_a_shared_limiter(make_queue: Any) -> None:
    lim = Limiter("lim", {"requests": Bucket(100, per=60), "tokens": Bucket(50, per=60)})
    q = make_queue(limiter=lim, cost={"requests": 1})
    await q.add_bulk([{"name": "a", "group": "A"} for _ in range(4)])
    too_big = await q.add("b", None, group="B", cost={"requests": 1, "tokens": 500})
    await q.add_bulk([{"name": "b", "group": "B"} for _ in range(2)])
    await q.add("c", None, group="C")
    jobs = await take(q, 1)
    jobs += await take(q, 10)
    # the job whose cost can never fit failed at once, in its turn; the rest alternate
    assert await names(q, [j for j, _ in jobs]) == ["A", "C", "A", "B", "A", "B", "A"]
    got = await q.get_job(too_big.id)
    assert got is not None and got.state == JobState.FAILED
    assert got.error_type == "VALIDATION_ERROR"
    await check_groups(q)
    assert (await q.redis.hgetall(q.keys.groups)).get(b"a:B") == b"2"


async def test_bad_groups_are_refused(make_queue: Any) -> None:
    q = make_queue()
    for bad in ("", "a b", "x" * 101, "a!b", 7):
        with pytest.raises(InvalidJobError):
            await q.add("x", None, group=bad)
    with pytest.raises(InvalidJobError):
        await q.add("x", None, group_concurrency=2)
    with pytest.raises(InvalidJobError):
        await q.add("x", None, group="g", group_concurrency=0)
    assert (await q.get_job_counts())["waiting"] == 0


async def test_listing_waiting_jobs_shows_grouped_ones(make_queue: Any) -> None:
    q = make_queue(group_concurrency=1)
    jobs = await q.add_bulk([{"name": "a", "group": "A"} for _ in range(3)])
    plain = await q.add("u", None)
    await take(q, 1)  # A at its cap: its token is parked
    listed = await q.get_job_ids(JobState.WAITING)
    assert sorted(listed) == sorted([plain.id, jobs[1].id, jobs[2].id])
    got = await q.get_job(jobs[1].id)
    assert got is not None and got.group == "A" and got.state == JobState.WAITING


async def _random_walk(q: Any, rng: random.Random, steps: int) -> list[tuple[str, str]]:
    held: list[tuple[str, str]] = []
    ids: list[str] = []
    for _ in range(steps):
        op = rng.choice(
            ["add", "add", "add", "bulk", "take", "take", "finish", "finish", "finish",
             "remove", "cancel", "stall", "recover", "retry", "clean", "drain", "pause"]
        )  # fmt: skip
        if op in ("add", "bulk"):
            specs = []
            for _ in range(1 if op == "add" else 3):
                spec: dict[str, Any] = {"name": "x", "priority": rng.choice([0, 0, 0, 3, -2])}
                group = rng.choice([None, "A", "B", "C", "C"])
                if group:
                    spec["group"] = group
                    spec["group_concurrency"] = rng.choice([None, 1, 2])
                if rng.random() < 0.15:
                    spec["delay"] = rng.choice([0.001, 0.02])
                if rng.random() < 0.2:  # a duplicate is dropped or moves its holder
                    spec["dedup"] = Dedup(rng.choice(["k1", "k2"]), replace=rng.random() < 0.6)
                specs.append(spec)
            ids += [j.id for j in await q.add_bulk(specs)]
        elif op == "take":
            held += await take(q, rng.randint(1, 3))
        elif op == "stall":
            await take(q, 1, worker="lost", lease_ms=1)  # its worker never comes back
        elif op == "finish" and held:
            job_id, token = held.pop(rng.randrange(len(held)))
            kind = rng.choice(["c", "f", "f", "h", "r", "d"])
            if kind == "c":
                outcome = (job_id, token, "c", "null", "", 0, 0)
            elif kind == "f":
                outcome = (job_id, token, "f", "boom", "UNKNOWN", rng.choice([0, 5, -1]), 3)
            elif kind == "h":
                outcome = (job_id, token, "h", "", "", 0, 0)
            else:
                outcome = (job_id, token, kind, "later", "RATE_LIMIT", rng.choice([1, 5]), 100)
            _, more = await finish(q, [outcome], n=rng.choice([0, 0, 1]))
            held += more
            if kind == "r":
                await q.redis.delete(q.keys.limited)  # the hold itself is not the point
        elif op in ("remove", "cancel") and ids:
            job_id = rng.choice(ids)
            if op == "remove":
                try:
                    await q.remove(job_id)
                except QueueStateError:
                    pass  # active
            else:
                await q.cancel(job_id)
        elif op == "recover":
            await q.scripts.recover(
                owner="me", max_stalls=2, lock_ms=1, batch=50, retention=Retention()
            )
        elif op == "retry":
            await q.scripts.retry_failed(batch=10, upto_ms=-1)
        elif op == "clean":
            await q.scripts.clean("waiting", grace_ms=0, limit=rng.randint(1, 3), scan_cap=50)
        elif op == "drain" and rng.random() < 0.3:
            await q.scripts.drain(rng.randint(1, 4))
        elif op == "pause":
            if await q.is_paused():
                await q.resume()
            else:
                await q.pause()
        await check_groups(q)
    return held


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_every_path_keeps_the_groups_consistent(make_queue: Any, seed: int) -> None:
    q = make_queue(attempts=3)
    rng = random.Random(seed)
    held = await _random_walk(q, rng, 150)
    # then everything left runs: nothing was lost or stranded in a group
    await q.resume()
    await q.redis.delete(q.keys.limited)
    for job_id, token in held:
        await finish(q, [(job_id, token, "c", "null", "", 0, 0)])
    for _ in range(500):
        await q.scripts.recover(  # the jobs of the lost worker (leases of 1 ms)
            owner="me", max_stalls=100, lock_ms=1, batch=50, retention=Retention()
        )
        due = await q.redis.zrange(q.keys.delayed, 0, -1)
        if due:  # make every delayed job due now (their delays are not the point here)
            await q.redis.zadd(q.keys.delayed, dict.fromkeys(due, 0))
        got = await take(q, 10)
        for job_id, token in got:
            await finish(q, [(job_id, token, "c", "null", "", 0, 0)])
        counts = await q.get_job_counts()
        if not got and counts["waiting"] == counts["delayed"] == 0:
            break
    counted = await check_groups(q)
    assert set(counted) <= {"completed", "failed"}
    assert {k.decode() for k in await q.redis.hkeys(q.keys.groups)} <= {"n", "t"} | {
        f"a:{g}" for g in "ABC"
    } | {f"c:{g}" for g in "ABC"}
