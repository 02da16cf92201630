"""Dynamic children end to end with real worker processes: a worker killed (SIGKILL) right
after its job added children and before its wait outcome was recorded. The stall check gives
the job back, the re-run adds no child twice (the ids are derived from the parent and its
step), and the parent runs its fan-in step once.

Nothing depends on the machine's speed: the handler waits on a gate the test opens, and every
wait is on a state or a log line (deadlines only bound a hang)."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from engine_helpers import HANG, WorkerProcess, flow_worker, open_gate, read_log, wait_for

from jobqueue import JobState, Queue

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


async def entries(side: aioredis.Redis, prefix: str, ev: str, job_id: str) -> list[dict[str, Any]]:
    return [e for e in await read_log(side, prefix) if e["ev"] == ev and e["id"] == job_id]


async def test_a_worker_killed_after_add_children_and_before_its_wait(
    redis_url: str,
    prefix: str,
    procs: list[WorkerProcess],
    side: aioredis.Redis,
    flow_queues: tuple[Queue, Queue],
) -> None:
    top, low = flow_queues
    await top.add(
        "rank", {"kids": {"n": 3, "queue": "low", "gate": True}, "children": True}, job_id="p"
    )
    first = flow_worker(redis_url, prefix, "top")
    procs.append(first)

    async def added() -> bool:
        return bool(await entries(side, prefix, "added", "p"))

    await wait_for(added, what="the parent to add its children")
    first.kill()  # its handler holds at the gate: the wait outcome was never sent
    assert await top.get_job_state("p") == JobState.ACTIVE
    assert (await low.get_job_counts())["waiting"] == 3

    # another machine: the stall check gives the parent back; its re-run adds the same children
    procs.append(flow_worker(redis_url, prefix, "top"))
    procs.append(flow_worker(redis_url, prefix, "low"))
    await open_gate(side, prefix)
    parent = await top.get_job("p")
    assert parent is not None
    result = await parent.wait_until_finished(timeout=HANG)
    refs = [f"low:top:p:0.{i}" for i in range(3)]
    assert sorted(result["children"]) == refs

    starts = await entries(side, prefix, "start", "p")
    assert [e["step"] for e in starts] == [0, 0, 1]  # killed, re-run, fan-in once
    assert [e["attempt"] for e in starts] == [1, 1, 1]  # no attempt spent by waiting
    assert len(await entries(side, prefix, "added", "p")) == 2
    low_added = [
        fields for _, fields in await low.redis.xrange(low.keys.events) if fields[b"ev"] == b"added"
    ]
    assert len(low_added) == 3  # no child twice
    counts = await low.get_job_counts()
    assert (counts["completed"], counts["waiting"], counts["active"]) == (3, 0, 0)
    for ref in refs:
        assert len(await entries(side, prefix, "start", ref.split(":", 1)[1])) == 1
    stalled = [f for _, f in await top.redis.xrange(top.keys.events) if f[b"ev"] == b"stalled"]
    assert len(stalled) == 1
