"""Flows and groups together: a flow's jobs that name a group wait in it once they are ready
(added ready, promoted after a delay, or released when their own children ended), served in
turn with the other groups and held to the group's cap; the group structures stay
consistent throughout. On Redis, Valkey and fakeredis."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from groups_helpers import check_groups, finish, names, take

from jobqueue import Child, JobState, Limiter, Queue

pytestmark = pytest.mark.integration

SLOT = Limiter("flowgroups", {})


def ok(job_id: str, token: str, result: Any = None) -> tuple[Any, ...]:
    return (job_id, token, "c", json.dumps(result), "", 0, 3)


async def test_a_flows_grouped_children_take_turns_with_other_groups(make_queue: Any) -> None:
    q = make_queue("fg")
    await q.add_flow(
        "parent",
        job_id="pa",
        children=[Child(queue=q, name="a", group="A", job_id=f"a{i}") for i in range(6)],
    )
    await q.add_flow(
        "parent",
        job_id="pb",
        children=[Child(queue=q, name="b", group="B", job_id=f"b{i}") for i in range(2)],
    )
    await check_groups(q)
    order = [job_id for job_id, _ in await take(q, 6)]
    assert await names(q, order) == ["A", "B", "A", "B", "A", "A"]
    assert (await q.get_job("a0")).group == "A"  # type: ignore[union-attr]
    await check_groups(q)


async def test_a_released_parent_waits_in_its_group(make_queue: Any) -> None:
    q = make_queue("fgp")
    await q.add_bulk([{"name": "x", "group": "X"} for _ in range(3)])
    parent = await q.add_flow(
        "parent", job_id="p", group="P", children=[Child(queue=q, name="c", job_id="c")]
    )
    assert parent.state == JobState.WAITING_CHILDREN
    taken = dict(await take(q, 2))  # X's head and the child, in turn
    assert "c" in taken
    codes, _ = await finish(q, [ok("c", taken["c"])])
    assert codes == [1]
    assert await q.get_job_state("p") == JobState.WAITING
    await check_groups(q)
    # P is a group of its own now, in turn with X
    order = [job_id for job_id, _ in await take(q, 3)]
    assert "p" in order[:2]
    assert (await q.get_job("p")).group == "P"  # type: ignore[union-attr]
    await check_groups(q)


async def test_grouped_children_keep_the_group_cap(make_queue: Any) -> None:
    q = make_queue("fgc", group_concurrency=1)
    await q.add_flow(
        "parent",
        job_id="p",
        children=[Child(queue=q, name="a", group="A", job_id=f"a{i}") for i in range(3)],
    )
    first = await take(q, 10)
    assert [j for j, _ in first] == ["a0"]  # A's cap: one at a time
    codes, more = await finish(q, [ok(*first[0])], n=10)
    assert codes == [1] and [j for j, _ in more] == ["a1"]
    await check_groups(q)


async def test_a_delayed_grouped_child_joins_its_group_when_due(make_queue: Any) -> None:
    q = make_queue("fgd")
    await q.add_flow(
        "parent",
        job_id="p",
        children=[Child(queue=q, name="a", group="A", job_id="late", delay=0.001)],
    )
    assert await q.get_job_state("late") == JobState.DELAYED
    taken: list[Any] = []
    for _ in range(1000):  # the take promotes it once Redis's clock passed its due time
        taken = await take(q, 1)
        if taken:
            break
        await asyncio.sleep(0.005)
    assert [j for j, _ in taken] == ["late"]
    assert await names(q, ["late"]) == ["A"]
    await check_groups(q)


async def test_a_running_jobs_grouped_children_across_queues(make_queue: Any) -> None:
    parents: Queue = make_queue("fgx-p", limiter=SLOT)
    kids: Queue = make_queue("fgx-k", limiter=SLOT)
    await parents.add("parent", job_id="p")
    [(job_id, token)] = await take(parents, 1)
    job = await parents.get_job(job_id)
    assert job is not None
    job.token = token
    await job.add_children(
        [Child(queue=kids, name="k", group=g, job_id=f"{g}{i}") for g in "AB" for i in range(2)]
    )
    order = [j for j, _ in await take(kids, 4)]
    assert await names(kids, order) == ["A", "B", "A", "B"]
    await check_groups(kids)


async def test_a_tree_cancel_takes_grouped_jobs_out_of_their_groups(make_queue: Any) -> None:
    parents: Queue = make_queue("fgt-p", limiter=SLOT)
    kids: Queue = make_queue("fgt-k", limiter=SLOT)
    await parents.add_flow(
        "parent",
        job_id="p",
        group="P",
        children=[
            Child(queue=kids, name="k", group="A", job_id="a", children=[
                Child(queue=kids, name="leaf", group="B", job_id="b"),
            ]),
            Child(queue=parents, name="own", group="P", job_id="own"),
        ],
    )  # fmt: skip
    await kids.add("other", job_id="x", group="B")  # not of the tree: stays
    assert await parents.cancel("p", "stop", children=True) == "removed"
    for q in (parents, kids):
        await check_groups(q)
    assert await kids.get_job_ids(JobState.WAITING) == ["x"]
    assert await parents.get_job_counts() == dict.fromkeys(await parents.get_job_counts(), 0)
