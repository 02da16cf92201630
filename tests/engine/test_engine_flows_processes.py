"""Flows end to end with real worker processes: a worker killed (SIGKILL) while the last child
runs, and right as it finishes, runs no parent twice and loses nothing; so does a wide flow over
two queues and three processes, one killed; a tree cancelled while its children run in two
processes stops them and starts nothing more.

Nothing depends on the machine's speed: handlers wait on a gate the test opens, and every wait
is on a state or a log line (deadlines only bound a hang)."""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aioredis
from engine_helpers import HANG, WorkerProcess, flow_worker, open_gate, read_log, wait_for

from jobqueue import Child, JobState, Queue

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


async def log_has(side: aioredis.Redis, prefix: str, ev: str, job_id: str) -> bool:
    return any(e["ev"] == ev and e["id"] == job_id for e in await read_log(side, prefix))


async def count(side: aioredis.Redis, prefix: str, ev: str, job_id: str) -> int:
    return sum(1 for e in await read_log(side, prefix) if e["ev"] == ev and e["id"] == job_id)


async def add_tree(top: Queue, low: Queue) -> None:
    await top.add_flow(
        "parent",
        {"children": True},
        job_id="p",
        children=[
            Child(queue=low, name="c", job_id="c1"),
            Child(queue=low, name="c", job_id="c2"),
            Child(queue=low, name="c", job_id="last", data={"gate": True}),
        ],
    )


@pytest.mark.parametrize("kill_at", ["running", "finishing"])
async def test_a_worker_killed_at_the_last_child_runs_the_parent_once(
    redis_url: str,
    prefix: str,
    procs: list[WorkerProcess],
    side: aioredis.Redis,
    flow_queues: tuple[Queue, Queue],
    kill_at: str,
) -> None:
    top, low = flow_queues
    await add_tree(top, low)
    first = flow_worker(redis_url, prefix, "low")
    procs.append(first)

    async def started() -> bool:
        return await log_has(side, prefix, "start", "last")

    await wait_for(started, what="the last child to start")
    if kill_at == "finishing":
        # the handler returned: the kill lands before, during or after its `finish` call
        await open_gate(side, prefix)

        async def ended() -> bool:
            return await log_has(side, prefix, "end", "last")

        await wait_for(ended, what="the last child's handler to return")
    first.kill()
    assert await top.get_job_state("p") in (JobState.WAITING_CHILDREN, JobState.WAITING)

    # another machine: a worker of the children's queue (the stall check gives it the lost
    # child back if its end was never recorded) and one of the parent's
    procs.append(flow_worker(redis_url, prefix, "low"))
    procs.append(flow_worker(redis_url, prefix, "top"))
    await open_gate(side, prefix)
    parent = await top.get_job("p")
    assert parent is not None
    result = await parent.wait_until_finished(timeout=HANG)
    assert set(result["children"]) == {"low:c1", "low:c2", "low:last"}
    assert await count(side, prefix, "start", "p") == 1
    if kill_at == "running":
        assert await count(side, prefix, "start", "last") == 2  # run again after the stall
    assert await count(side, prefix, "end", "last") >= 1
    counts = await top.get_job_counts()
    assert (counts["completed"], counts["waiting-children"], counts["active"]) == (1, 0, 0)


async def test_cancel_of_a_tree_running_in_two_processes(
    redis_url: str,
    prefix: str,
    procs: list[WorkerProcess],
    side: aioredis.Redis,
    flow_queues: tuple[Queue, Queue],
) -> None:
    top, low = flow_queues
    await top.add_flow(
        "root",
        job_id="r",
        children=[
            Child(queue=low, name="mid", job_id="m",
                  children=[Child(queue=top, name="leaf", job_id="l", data={"gate": True})]),
            Child(queue=low, name="side", job_id="s", data={"gate": True}),
            Child(queue=low, name="later", job_id="w", delay=3600),
        ],
    )  # fmt: skip
    procs.append(flow_worker(redis_url, prefix, "top"))
    procs.append(flow_worker(redis_url, prefix, "low"))

    async def both_running() -> bool:
        return await log_has(side, prefix, "start", "l") and await log_has(
            side, prefix, "start", "s"
        )

    await wait_for(both_running, what="a child to run in each process")
    pids = {e["pid"] for e in await read_log(side, prefix) if e["ev"] == "start"}
    assert len(pids) == 2
    t0 = time.monotonic()
    assert await top.cancel("r", "stop the run", children=True) == "removed"
    for job_id in ("r", "m", "w"):
        assert await top.get_job(job_id) is None and await low.get_job(job_id) is None

    async def stopped() -> bool:
        states = [await top.get_job_state("l"), await low.get_job_state("s")]
        return states == [JobState.FAILED, JobState.FAILED]

    await wait_for(stopped, what="both running children to end cancelled")
    elapsed = time.monotonic() - t0
    for q, job_id in ((top, "l"), (low, "s")):
        job = await q.get_job(job_id)
        assert job is not None
        assert (job.error_type, job.error_message) == ("CANCELLED", "stop the run")
    print(f"cancel of the tree to both running children stopped: {elapsed * 1000:.0f} ms")
    # nothing of the tree runs afterwards, nothing is left to run, and no handler finished
    await open_gate(side, prefix)
    log = await read_log(side, prefix)
    assert {e["id"] for e in log if e["ev"] == "start"} == {"l", "s"}
    assert not [e for e in log if e["ev"] == "end"]
    for q in (top, low):
        counts = await q.get_job_counts()
        assert counts["waiting"] + counts["delayed"] + counts["active"] == 0, counts
        assert counts["waiting-children"] == 0


async def test_a_wide_flow_over_three_processes_one_killed_fans_in_once(
    redis_url: str,
    prefix: str,
    procs: list[WorkerProcess],
    side: aioredis.Redis,
    flow_queues: tuple[Queue, Queue],
) -> None:
    top, low = flow_queues
    n = 60
    await top.add_flow(
        "parent",
        {"children": True},
        job_id="p",
        children=[
            Child(queue=(top, low)[i % 2], name="c", job_id=f"c{i}", data={"sleep": 0.05})
            for i in range(n)
        ],
    )
    victim = flow_worker(redis_url, prefix, "low", concurrency=4)
    procs.append(victim)

    async def some_done() -> bool:
        ends = [e for e in await read_log(side, prefix) if e["ev"] == "end"]
        return len(ends) >= 3

    await wait_for(some_done, what="the first worker to finish a few children")
    victim.kill()  # with children running, or right as one finishes
    procs += [flow_worker(redis_url, prefix, "low"), flow_worker(redis_url, prefix, "top")]
    parent = await top.get_job("p")
    assert parent is not None
    result = await parent.wait_until_finished(timeout=HANG)
    assert set(result["children"]) == {f"{('top', 'low')[i % 2]}:c{i}" for i in range(n)}
    assert await count(side, prefix, "start", "p") == 1
