"""Flows on the scripts (Redis 7, Valkey and fakeredis): a parent waits in `waiting-children`
until each child has ended, then runs with its children's results; every `on_failure`; nested
trees; trees spanning two queues of one slot; retries, stalls and removals counted once; tree
cancel. Jobs are taken and finished through the scripts the worker uses, so each step is one
atomic call whose effect is checked right after it."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import pytest
from engine_helpers import stream_events, wait_for
from test_engine_contracts import finish, recover_until, take

from jobqueue import (
    Child,
    ChildFailure,
    CrossSlotFlowError,
    InvalidJobError,
    Job,
    JobState,
    Limiter,
    Queue,
    UnrecoverableError,
    Worker,
)
from jobqueue.core.keys import QueueKeys

pytestmark = pytest.mark.integration

SLOT = Limiter("flowslot", {})
"""A limiter without buckets: it only puts its queues in one hash slot (a flow spans them)."""


def ok(job_id: str, token: str, result: Any) -> tuple[Any, ...]:
    return (job_id, token, "c", json.dumps(result), "", 0, 3)


def fail(job_id: str, token: str, *, retry_ms: int = -1, attempts: int = 3) -> tuple[Any, ...]:
    return (job_id, token, "f", f"{job_id} broke", "UNKNOWN", retry_ms, attempts)


async def take_all(q: Queue, n: int = 10) -> dict[str, str]:
    """Take every ready job: id -> token."""
    _, jobs = await take(q, n)
    return {job_id: token for job_id, token, _ in jobs}


async def state(q: Queue, job_id: str) -> JobState | None:
    return await q.get_job_state(job_id)


async def test_parent_waits_for_its_children_then_runs_with_their_results(
    make_queue: Any,
) -> None:
    q = make_queue("flow")
    parent = await q.add_flow(
        "sum",
        {"n": 2},
        job_id="p",
        children=[Child(queue=q, name="part", data=i, job_id=f"c{i}") for i in (1, 2)],
    )
    assert parent.id == "p" and parent.state == JobState.WAITING_CHILDREN
    assert await state(q, "p") == JobState.WAITING_CHILDREN
    counts = await q.get_job_counts()
    assert counts["waiting-children"] == 1 and counts["waiting"] == 2
    assert await q.get_job_ids(JobState.WAITING_CHILDREN) == ["p"]
    added = [(e["id"], e["st"]) for e in await stream_events(q) if e["ev"] == "added"]
    assert added == [("p", "waiting-children"), ("c1", "waiting"), ("c2", "waiting")]

    assert await parent.pending_children() == ["flow:c1", "flow:c2"]
    child = await q.get_job("c1")
    assert child is not None and child.parent == "flow:p"
    tokens = await take_all(q)
    assert set(tokens) == {"c1", "c2"}  # the parent is not ready
    assert await finish(q, [ok("c1", tokens["c1"], 10)]) == [1]
    assert await state(q, "p") == JobState.WAITING_CHILDREN
    assert await finish(q, [ok("c2", tokens["c2"], 32)]) == [1]
    assert await state(q, "p") == JobState.WAITING
    assert await parent.pending_children() == []
    assert (await q.get_job_counts())["waiting-children"] == 0
    assert [e["id"] for e in await stream_events(q) if e["ev"] == "waiting"] == ["p"]

    tokens = await take_all(q)
    assert list(tokens) == ["p"]
    job = await q.get_job("p")
    assert job is not None
    assert await job.children_results() == {"flow:c1": 10, "flow:c2": 32}
    assert await job.children_failures() == {}
    assert await finish(q, [ok("p", tokens["p"], 42)]) == [1]
    assert await state(q, "p") == JobState.COMPLETED


async def test_ids_from_the_counter_and_a_parent_added_twice(make_queue: Any) -> None:
    q = make_queue("flow")
    first = await q.add_flow(
        "p", job_id="root", children=[Child(queue="flow", name="c"), Child(queue=q, name="c")]
    )
    again = await q.add_flow("p", job_id="root", children=[Child(queue=q, name="other")])
    assert first.id == again.id == "root"
    assert again.state == JobState.WAITING_CHILDREN
    assert (await q.get_job_counts())["waiting"] == 2  # the second flow wrote nothing
    tokens = await take_all(q)
    assert all(k.isdigit() for k in tokens)
    await finish(q, [ok(i, t, i) for i, t in tokens.items()])
    job = await q.get_job("root")
    assert job is not None and job.state == JobState.WAITING
    assert await job.children_results() == {f"flow:{i}": i for i in tokens}


async def test_a_taken_child_id_refuses_the_whole_flow(make_queue: Any) -> None:
    q = make_queue("flow")
    await q.add("x", job_id="taken")
    with pytest.raises(InvalidJobError, match="taken"):
        await q.add_flow(
            "p",
            job_id="p",
            children=[Child(queue=q, name="a"), Child(queue=q, name="b", job_id="taken")],
        )
    with pytest.raises(InvalidJobError, match="twice"):
        await q.add_flow(
            "p",
            children=[Child(queue=q, name="a", job_id="d"), Child(queue=q, name="b", job_id="d")],
        )
    with pytest.raises(InvalidJobError, match="on_failure"):
        await q.add_flow("p", children=[Child(queue=q, name="a", on_failure="skip")])  # type: ignore[arg-type]
    with pytest.raises(InvalidJobError, match="children"):
        await q.add_flow("p", children=[])
    with pytest.raises(InvalidJobError, match="delay"):
        await q.add_flow(
            "p", children=[Child(queue=q, name="a", delay=1, children=[Child(queue=q, name="b")])]
        )
    assert await q.get_job("p") is None
    counts = await q.get_job_counts()
    assert counts["waiting"] == 1 and counts["waiting-children"] == 0


async def test_fail_fails_the_parent_at_once_and_later_children_change_nothing(
    make_queue: Any,
) -> None:
    q = make_queue("flow")
    await q.add_flow(
        "p",
        job_id="p",
        children=[
            Child(queue=q, name="a", job_id="a", on_failure="fail"),
            Child(queue=q, name="b", job_id="b"),
        ],
    )
    tokens = await take_all(q)
    # a failed attempt that will be retried is not an end: the parent still waits
    assert await finish(q, [fail("a", tokens["a"], retry_ms=0)]) == [2]
    assert await state(q, "p") == JobState.WAITING_CHILDREN
    tokens |= await take_all(q)
    assert await finish(q, [fail("a", tokens["a"], attempts=2)]) == [1]
    parent = await q.get_job("p")
    assert parent is not None and parent.state == JobState.FAILED
    assert parent.error_type == "CHILD_FAILED"
    assert parent.error_message == "child flow:a failed: a broke"
    # its other child runs on and ends; nothing of the parent changes, nothing runs it
    assert await finish(q, [ok("b", tokens["b"], 1)]) == [1]
    assert await state(q, "p") == JobState.FAILED
    assert await take_all(q) == {}


async def test_ignore_and_continue_let_the_parent_run(make_queue: Any) -> None:
    q = make_queue("flow")
    await q.add_flow(
        "p",
        job_id="p",
        children=[
            Child(queue=q, name="a", job_id="a", on_failure="ignore"),
            Child(queue=q, name="b", job_id="b", on_failure="continue"),
            Child(queue=q, name="c", job_id="c", on_failure="continue"),
        ],
    )
    tokens = await take_all(q)
    await finish(q, [fail("a", tokens["a"]), fail("b", tokens["b"])])
    assert await state(q, "p") == JobState.WAITING_CHILDREN
    await finish(q, [ok("c", tokens["c"], "fine")])
    parent = await q.get_job("p")
    assert parent is not None and parent.state == JobState.WAITING
    assert await parent.children_results() == {"flow:c": "fine"}
    assert await parent.children_failures() == {
        "flow:b": ChildFailure("UNKNOWN", "b broke"),
    }


async def test_nested_children_and_a_tree_spanning_two_queues(make_queue: Any) -> None:
    top = make_queue("top", limiter=SLOT)
    low = make_queue("low", limiter=SLOT)
    await top.add_flow(
        "root",
        job_id="r",
        children=[
            Child(
                queue=low,
                name="mid",
                job_id="m",
                children=[Child(queue="top", name="leaf", job_id=f"l{i}") for i in (1, 2)],
            ),
            Child(queue=low, name="side", job_id="s"),
        ],
    )
    assert (await top.get_job_counts())["waiting-children"] == 1
    assert (await low.get_job_counts())["waiting-children"] == 1
    assert await state(low, "m") == JobState.WAITING_CHILDREN
    leaf = await top.get_job("l1")
    assert leaf is not None and leaf.parent == "low:m"
    low_tokens = await take_all(low)
    assert list(low_tokens) == ["s"]
    leaf_tokens = await take_all(top)
    assert set(leaf_tokens) == {"l1", "l2"}
    await finish(top, [ok(i, t, i) for i, t in leaf_tokens.items()])
    assert await state(low, "m") == JobState.WAITING
    assert await state(top, "r") == JobState.WAITING_CHILDREN
    low_tokens |= await take_all(low)
    mid = await low.get_job("m")
    assert mid is not None
    assert await mid.children_results() == {"top:l1": "l1", "top:l2": "l2"}
    await finish(low, [ok("m", low_tokens["m"], "mid"), ok("s", low_tokens["s"], "side")])
    root = await top.get_job("r")
    assert root is not None and root.state == JobState.WAITING
    assert await root.children_results() == {"low:m": "mid", "low:s": "side"}


async def test_a_failing_grandchild_fails_up_the_tree(make_queue: Any) -> None:
    q = make_queue("flow")
    await q.add_flow(
        "root",
        job_id="r",
        children=[
            Child(queue=q, name="mid", job_id="m", on_failure="continue",
                  children=[Child(queue=q, name="leaf", job_id="l")]),
        ],
    )  # fmt: skip
    tokens = await take_all(q)
    await finish(q, [fail("l", tokens["l"])])
    mid = await q.get_job("m")
    assert mid is not None and (mid.state, mid.error_type) == (JobState.FAILED, "CHILD_FAILED")
    root = await q.get_job("r")
    assert root is not None and root.state == JobState.WAITING  # mid's policy is continue
    failures = await root.children_failures()
    assert failures["flow:m"].error_type == "CHILD_FAILED"


async def test_a_queue_of_another_slot_is_refused(make_queue: Any) -> None:
    a = make_queue("a")
    b = make_queue("b")
    on_slot = make_queue("c", limiter=SLOT)
    for other in (b, on_slot):
        with pytest.raises(CrossSlotFlowError, match="slot"):
            await a.add_flow("p", job_id="p", children=[Child(queue=other, name="x")])
    with pytest.raises(CrossSlotFlowError):
        await on_slot.add_flow("p", children=[Child(queue=a, name="x")])
    with pytest.raises(CrossSlotFlowError, match="no shared limiter"):
        await a.add_flow("p", job_id="p", children=[Child(queue="b", name="x")])
    assert await a.get_job("p") is None
    assert (await b.get_job_counts())["waiting"] == 0


def test_every_key_a_flow_touches_is_in_the_root_queues_slot() -> None:
    # the scripts build a flow's other queue keys from their base (keys.lua `queue_keys`):
    # for queues of one limiter, every such key hashes to the limiter's slot
    from jobqueue.core.keys import keys_from_key

    top, low = QueueKeys("jq", "top", slot="lim"), QueueKeys("jq", "low", slot="lim")
    names = ("wait", "prio", "priorities", "delayed", "active", "completed", "failed",
             "id_counter", "marker", "events", "cancels", "cancel_channel", "costs",
             "waiting_children", "jobs")  # fmt: skip
    built = [getattr(k, n) for k in (top, low) for n in names]
    built += [f(k)("7") for k in (top, low) for f in (
        lambda k: k.legacy_job, lambda k: k.state, lambda k: k.logs, lambda k: k.dependencies,
        lambda k: k.children_results, lambda k: k.children_failures)]  # fmt: skip
    assert {_slot(key) for key in built} == {_slot(top.base)}
    assert keys_from_key("jq", low.meta) == low


def _slot(key: str) -> int:
    from redis.crc import key_slot

    return int(key_slot(key.encode()))


async def test_a_late_or_repeated_end_is_counted_once(make_queue: Any) -> None:
    q = make_queue("flow")
    await q.add_flow(
        "p",
        job_id="p",
        children=[
            Child(queue=q, name="a", job_id="a", on_failure="continue"),
            Child(queue=q, name="b", job_id="b"),
        ],
    )
    _, jobs = await take(q, 2, lease_ms=1)
    tokens = {j: t for j, t, _ in jobs}
    # both leases expire: the stall check fails them (max_stalls=0), the parent hears once
    await recover_until(q, [0, 2], max_stalls=0)
    parent = await q.get_job("p")
    assert parent is not None and parent.state == JobState.FAILED  # b's policy is fail
    assert (
        parent.error_message == "child flow:b failed: job stalled more than the allowed 0 time(s)"
    )
    # the stalled worker's late outcomes are fenced off
    assert await finish(q, [ok("a", tokens["a"], 1), ok("b", tokens["b"], 1)]) == [-2, -2]
    # a manual retry of a failed child runs it again; its end changes no parent
    await q.retry_job("a")
    tokens = await take_all(q)
    assert await finish(q, [ok("a", tokens["a"], 1)]) == [1]
    assert await state(q, "p") == JobState.FAILED
    assert [e["id"] for e in await stream_events(q) if e["ev"] == "failed"].count("p") == 1


async def test_removing_or_cancelling_a_waiting_child_ends_it_for_its_parent(
    make_queue: Any,
) -> None:
    q = make_queue("flow")
    await q.add_flow(
        "p",
        job_id="p",
        children=[
            Child(queue=q, name="a", job_id="a", on_failure="ignore"),
            Child(queue=q, name="b", job_id="b", on_failure="continue"),
            Child(queue=q, name="c", job_id="c"),
        ],
    )
    assert await q.remove("a") is True
    assert await q.cancel("b", "not needed") == "removed"
    assert await state(q, "p") == JobState.WAITING_CHILDREN
    parent = await q.get_job("p")
    assert parent is not None
    assert await parent.children_failures() == {"flow:b": ChildFailure("CANCELLED", "not needed")}
    assert await q.cancel("c") == "removed"  # policy fail
    parent = await q.get_job("p")
    assert parent is not None and parent.state == JobState.FAILED
    assert parent.error_message == "child flow:c failed: cancelled"


async def test_removing_a_waiting_parent_leaves_its_children_to_run(make_queue: Any) -> None:
    q = make_queue("flow")
    await q.add_flow("p", job_id="p", children=[Child(queue=q, name="a", job_id="a")])
    assert await q.cancel("p") == "removed"
    assert await q.get_job("p") is None
    assert not await q.redis.exists(q.keys.dependencies("p"))
    assert (await q.get_job_counts())["waiting-children"] == 0
    tokens = await take_all(q)
    assert await finish(q, [ok("a", tokens["a"], 1)]) == [1]
    assert await q.get_job("p") is None


async def test_cancel_with_children_removes_the_tree_and_signals_running_jobs(
    make_queue: Any,
) -> None:
    top = make_queue("top", limiter=SLOT)
    low = make_queue("low", limiter=SLOT)
    await top.add_flow(
        "root",
        job_id="r",
        children=[
            Child(queue=low, name="mid", job_id="m",
                  children=[Child(queue=top, name="leaf", job_id="l1"),
                            Child(queue=top, name="leaf", job_id="l2")]),
            Child(queue=low, name="side", job_id="s"),
            Child(queue=low, name="done", job_id="d"),
        ],
    )  # fmt: skip
    leaf = await take_all(top)
    assert set(leaf) == {"l1", "l2"}
    await finish(top, [ok("l2", leaf["l2"], 2)])  # one leaf ended before the cancel
    low_tokens = await take_all(low)
    await finish(low, [ok("d", low_tokens["d"], 1)])
    assert set(low_tokens) == {"s", "d"}

    tree = await top.cancel_tree("r", "stop")
    assert tree.outcome == "removed"
    # the jobs of the tree it reached, by reference; the two that had ended are in neither
    assert sorted(tree.removed) == [f"{low.name}:m"]
    assert sorted(tree.signalled) == sorted([f"{top.name}:l1", f"{low.name}:s"])
    assert await top.get_job("r") is None and await low.get_job("m") is None
    # running jobs are flagged for their workers (the renew and the pub/sub channel)
    assert await top.redis.hget(top.keys.cancels, "l1") == b"stop"
    assert await low.redis.hget(low.keys.cancels, "s") == b"stop"
    cancelling = [
        e["id"] for q in (top, low) for e in await stream_events(q) if e["ev"] == "cancelling"
    ]
    assert sorted(cancelling) == ["l1", "s"]
    for q in (top, low):
        assert (await q.get_job_counts())["waiting-children"] == 0
    # the workers end them as cancelled: no parent comes back, nothing else runs
    await finish(top, [("l1", leaf["l1"], "f", "stop", "CANCELLED", -1, 3)])
    await finish(low, [("s", low_tokens["s"], "f", "stop", "CANCELLED", -1, 3)])
    assert await take_all(top) == {} and await take_all(low) == {}
    assert await top.get_job("r") is None
    assert await top.cancel("r", children=True) == "not_found"
    assert await low.cancel("d", children=True) == "finished"


async def test_cancel_of_a_subtree_ends_it_for_the_parent_above(make_queue: Any) -> None:
    q = make_queue("flow")
    await q.add_flow(
        "root",
        job_id="r",
        children=[
            Child(queue=q, name="mid", job_id="m", on_failure="ignore",
                  children=[Child(queue=q, name="leaf", job_id="l")]),
            Child(queue=q, name="other", job_id="o"),
        ],
    )  # fmt: skip
    assert await q.cancel("m", children=True) == "removed"
    assert await q.get_job("l") is None
    tokens = await take_all(q)
    assert list(tokens) == ["o"]
    await finish(q, [ok("o", tokens["o"], 1)])
    assert await state(q, "r") == JobState.WAITING


async def test_workers_run_a_flow_with_a_retried_child_and_every_policy(make_queue: Any) -> None:
    fast = {"retry_delays": {"UNKNOWN": 0.01}, "drain_delay": 0.2, "attempts": 2}
    top = make_queue("top", limiter=SLOT, **fast)
    low = make_queue("low", limiter=SLOT, **fast)
    runs: Counter[str] = Counter()

    async def handler(job: Job) -> Any:
        runs[job.id] += 1
        if job.name == "flaky" and job.attempt == 1:
            raise RuntimeError("first attempt fails")
        if job.name == "broken":
            raise UnrecoverableError("never works")
        if job.name == "parent":
            failures = await job.children_failures()
            return {
                "results": await job.children_results(),
                "failures": {k: f.message for k, f in failures.items()},
            }
        return job.data

    parent = await top.add_flow(
        "parent",
        job_id="p",
        children=[
            Child(queue=low, name="flaky", data=1, job_id="f"),
            Child(queue=low, name="broken", job_id="b", on_failure="continue"),
            Child(queue=low, name="broken", job_id="i", on_failure="ignore"),
            Child(queue=top, name="fine", data=2, job_id="o"),
        ],
    )
    workers = [Worker(q, handler, handle_signals=False, shutdown_grace=0.5) for q in (top, low)]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:

        async def done() -> bool:
            return await top.get_job_state(parent.id) == JobState.COMPLETED

        await wait_for(done, what="the parent to complete")
    finally:
        for w in workers:
            await w.close()
        await asyncio.gather(*tasks)
    job = await top.get_job("p")
    assert job is not None
    assert job.result == {
        "results": {"low:f": 1, "top:o": 2},
        "failures": {"low:b": "UnrecoverableError: never works"},
    }
    # the retried child counted once; the parent ran once
    assert (runs["f"], runs["p"]) == (2, 1)
