"""Groups with real worker processes: a per-group concurrency cap held across two processes,
and round-robin between groups seen in the order the processes start jobs.

Nothing here depends on the machine's speed: handlers wait on a gate the test opens, and every
wait is on a state (deadlines only bound a hang)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from engine_helpers import WorkerProcess, open_gate, read_log, wait_for

from jobqueue import Queue, QueueConfig

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


async def test_group_cap_is_held_across_two_processes(
    redis_url: str, prefix: str, procs: list[WorkerProcess], side: aioredis.Redis
) -> None:
    q = Queue(QueueConfig("gc", group_concurrency=2), redis=redis_url, prefix=prefix)
    await q.pause()
    group_of = {}
    for group in ("A", "B"):
        for job in await q.add_bulk(
            [{"name": "x", "data": {"gate": True, "sleep": 0.02}, "group": group}] * 8
        ):
            group_of[job.id] = group
    cfg = {"name": "gc", "drain_delay": 0.5}
    for _ in range(2):
        procs.append(WorkerProcess(redis_url, prefix, cfg, concurrency=3))
    await q.resume()

    # 6 free slots, but 2 per group: 4 jobs run, held at the gate, in both processes (one
    # process holds 3 at most)
    async def four_running() -> bool:
        return len([e for e in await read_log(side, prefix) if e["ev"] == "start"]) >= 4

    await wait_for(four_running, what="4 gated jobs to start")
    assert len({e["pid"] for e in await read_log(side, prefix)}) == 2
    counts = await q.get_job_counts()
    assert counts["active"] == 4 and counts["waiting"] == 12
    running = await q.redis.hgetall(q.keys.groups)
    assert running[b"a:A"] == b"2" and running[b"a:B"] == b"2"
    await open_gate(side, prefix)

    async def all_done() -> bool:
        return (await q.get_job_counts())["completed"] == 16

    await wait_for(all_done, what="16 jobs")
    log = await read_log(side, prefix)
    # a job's start is logged after its take and its end before its slot is released: the
    # jobs running in log order are a subset of those Redis counted, never more than 2
    running_now: dict[str, int] = {"A": 0, "B": 0}
    for e in log:
        g = group_of[e["id"]]
        running_now[g] += 1 if e["ev"] == "start" else -1
        assert running_now[g] <= 2, (g, e)
    await q.close()


async def test_processes_take_from_groups_in_turn(
    redis_url: str, prefix: str, procs: list[WorkerProcess], side: aioredis.Redis
) -> None:
    q = Queue(QueueConfig("rr"), redis=redis_url, prefix=prefix)
    await q.pause()
    group_of = {}
    for job in await q.add_bulk([{"name": "x", "group": "big"}] * 40):
        group_of[job.id] = "big"
    for job in await q.add_bulk([{"name": "x", "group": "small"}] * 3):
        group_of[job.id] = "small"
    procs.append(WorkerProcess(redis_url, prefix, {"name": "rr"}, concurrency=1))
    await q.resume()

    async def all_done() -> bool:
        return (await q.get_job_counts())["completed"] == 43

    await wait_for(all_done, what="43 jobs")
    order = [group_of[e["id"]] for e in await read_log(side, prefix) if e["ev"] == "start"]
    # the small group's 3 jobs start among the first 6, not after the 40 of the big one
    assert order[:6] == ["big", "small"] * 3
    await q.close()
