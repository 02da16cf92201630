"""Dynamic children (Redis 7, Valkey and fakeredis): a running job adds children
(`Job.add_children`) and ends its attempt by waiting for them (`WaitForChildren`, outcome 'w'),
then runs again (`job.step` one higher) with their results. The orders that matter are forced
by driving the scripts one atomic call at a time: a child that ends before its parent's wait
outcome is recorded; a late worker; a handler retried after it added children; a cancel of the
tree while the parent runs. Then the same with real workers in this process: a judge-like
revise loop, and the parent's timeout not counting the wait."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import pytest
from engine_helpers import redis_ms, stream_events, wait_for, wait_redis_clock
from test_engine_contracts import finish, limits, recover, recover_until

from jobqueue import (
    Child,
    ChildFailure,
    CrossSlotFlowError,
    InvalidJobError,
    Job,
    JobState,
    LeaseLostError,
    Limiter,
    Queue,
    QueueStateError,
    WaitForChildren,
    Worker,
)

pytestmark = pytest.mark.integration

SLOT = Limiter("dynslot", {})
"""A limiter without buckets: it only puts its queues in one hash slot (a flow spans them)."""


def ok(job_id: str, token: str, result: Any) -> tuple[Any, ...]:
    return (job_id, token, "c", json.dumps(result), "", 0, 3)


def wait(job_id: str, token: str) -> tuple[Any, ...]:
    """The outcome a worker reports when the handler raised `WaitForChildren`."""
    return (job_id, token, "w", "", "", 0, 0)


def fail(job_id: str, token: str, *, retry_ms: int = -1, attempts: int = 3) -> tuple[Any, ...]:
    return (job_id, token, "f", f"{job_id} broke", "UNKNOWN", retry_ms, attempts)


async def take(q: Queue, n: int = 10, worker: str = "w1", lease_ms: int = 30_000) -> dict[str, Job]:
    """Take every ready job, as the worker does: id -> the running `Job` (token, step...)."""
    reply = await q.scripts.take(n, limits(q, worker, lease_ms))
    out = {}
    for t in reply.jobs:
        job = await q.get_job(t.job_id)
        assert job is not None
        job.token, job.attempt = t.token, t.attempt
        assert job.step == t.step
        out[t.job_id] = job
    return out


async def state(q: Queue, job_id: str) -> JobState | None:
    return await q.get_job_state(job_id)


def count(evs: list[dict[str, str]], ev: str, job_id: str | None = None) -> int:
    return sum(1 for e in evs if e["ev"] == ev and (job_id is None or e["id"] == job_id))


async def test_a_job_adds_children_waits_and_runs_again_with_their_results(
    make_queue: Any,
) -> None:
    q = make_queue("dyn", attempts=1)
    await q.add("rank", {"n": 2}, job_id="p")
    p = (await take(q))["p"]
    assert p.step == 0
    refs = await p.add_children([Child(queue=q, name="part", data=i) for i in (1, 2)])
    # no ids given: derived from the parent, its step and the order (stable across retries)
    assert refs == ["dyn:dyn:p:0.0", "dyn:dyn:p:0.1"]
    assert await state(q, "p") == JobState.ACTIVE  # it runs on until it waits
    assert await p.pending_children() == sorted(refs)
    child = await q.get_job("dyn:p:0.0")
    assert child is not None and child.parent == "dyn:p" and child.data == 1

    assert await finish(q, [wait("p", p.token or "")]) == [2]
    assert await state(q, "p") == JobState.WAITING_CHILDREN
    counts = await q.get_job_counts()
    assert (counts["waiting-children"], counts["waiting"], counts["active"]) == (1, 2, 0)
    evs = await stream_events(q)
    assert count(evs, "waiting-children", "p") == 1

    kids = await take(q)
    assert set(kids) == {"dyn:p:0.0", "dyn:p:0.1"}  # the parent is not ready
    await finish(q, [ok(i, j.token or "", j.data * 10) for i, j in kids.items()])
    assert await state(q, "p") == JobState.WAITING

    again = (await take(q))["p"]
    # waiting spent no attempt (the queue allows one) and counted one step
    assert (again.step, again.attempt, again.attempts_made) == (1, 1, 0)
    assert await again.children_results() == {refs[0]: 10, refs[1]: 20}
    assert await finish(q, [ok("p", again.token or "", "done")]) == [1]
    done = await q.get_job("p")
    assert done is not None and (done.state, done.attempts_made, done.step) == (
        JobState.COMPLETED,
        1,
        1,
    )


@pytest.mark.parametrize("pending", [0, 1])
async def test_children_that_end_before_the_wait_outcome_wake_the_parent_once(
    make_queue: Any, pending: int
) -> None:
    # the race: the parent's children end while its handler still runs (their ends cannot
    # release it: it is not waiting yet); its wait outcome, recorded after, sees what is left
    q = make_queue("dyn")
    await q.add("judge", job_id="p")
    p = (await take(q))["p"]
    await p.add_children([Child(queue=q, name="a", job_id=f"c{i}") for i in range(2)])
    kids = await take(q)
    ending = ["c0", "c1"][: 2 - pending]
    await finish(q, [ok(i, kids[i].token or "", i) for i in ending])
    assert await state(q, "p") == JobState.ACTIVE
    assert count(await stream_events(q), "waiting", "p") == 0

    assert await finish(q, [wait("p", p.token or "")]) == [2]
    if pending:
        assert await state(q, "p") == JobState.WAITING_CHILDREN
        assert await take(q) == {}
        await finish(q, [ok("c1", kids["c1"].token or "", "c1")])
    assert await state(q, "p") == JobState.WAITING
    evs = await stream_events(q)
    assert count(evs, "waiting", "p") == 1
    again = await take(q)
    assert list(again) == ["p"] and again["p"].step == 1
    assert await again["p"].children_results() == {"dyn:c0": "c0", "dyn:c1": "c1"}
    assert await take(q) == {}  # not ready twice
    assert await finish(q, [ok("p", again["p"].token or "", 1)]) == [1]
    assert count(await stream_events(q), "active", "p") == 2  # ran exactly once more


async def test_a_late_worker_can_neither_add_children_nor_move_the_parent(
    make_queue: Any,
) -> None:
    q = make_queue("dyn")
    await q.add("judge", job_id="p")
    late = (await take(q, lease_ms=1))["p"]
    await recover_until(q, [1, 0])  # its lease expired: back in the queue
    current = (await take(q, worker="w2"))["p"]
    with pytest.raises(LeaseLostError):
        await late.add_children([Child(queue=q, name="a", job_id="a")])
    assert await q.get_job("a") is None
    assert await finish(q, [wait("p", late.token or "")]) == [-2]
    assert await state(q, "p") == JobState.ACTIVE
    # the current holder goes on as if nothing happened
    await current.add_children([Child(queue=q, name="a", job_id="a")])
    assert await finish(q, [wait("p", current.token or "")], worker="w2") == [2]
    assert await state(q, "p") == JobState.WAITING_CHILDREN
    # a job read outside a handler has no lease at all
    outside = await q.get_job("p")
    assert outside is not None
    with pytest.raises(LeaseLostError):
        await outside.add_children([Child(queue=q, name="b")])


async def test_a_retried_handler_adds_nothing_twice(make_queue: Any) -> None:
    q = make_queue("dyn")
    await q.add("rank", job_id="p")
    children = [
        Child(queue=q, name="a", job_id="a"),
        Child(queue=q, name="b", children=[Child(queue=q, name="leaf")]),
        Child(queue=q, name="c"),
    ]
    p = (await take(q))["p"]
    first = await p.add_children(children)
    assert first == ["dyn:a", "dyn:dyn:p:0.1", "dyn:dyn:p:0.2"]
    assert await p.add_children(children) != first  # a second call of one run adds new ones
    kids = await take(q)
    assert await finish(q, [ok("a", kids["a"].token or "", "A")]) == [1]
    # the attempt fails after adding children; the retry adds them again: nothing new
    assert await finish(q, [fail("p", p.token or "", retry_ms=0)]) == [2]
    added = count(await stream_events(q), "added")
    retried = (await take(q))["p"]
    assert retried.step == 0
    assert await retried.add_children(children) == first
    assert count(await stream_events(q), "added") == added
    leaf = await q.get_job("dyn:p:0.1.0")
    assert leaf is not None and leaf.parent == "dyn:dyn:p:0.1"
    # an id of a job that is not its child refuses the whole call: nothing written
    await q.add("other", job_id="taken")
    with pytest.raises(InvalidJobError, match="taken"):
        await retried.add_children([Child(queue=q, name="n", job_id="new"),
                                    Child(queue=q, name="t", job_id="taken")])  # fmt: skip
    assert await q.get_job("new") is None
    with pytest.raises(InvalidJobError):
        await retried.add_children([])
    assert count(await stream_events(q), "added") == added + 1  # only "taken"


async def test_children_on_another_queue_of_the_slot_and_nested(make_queue: Any) -> None:
    top = make_queue("top", limiter=SLOT)
    low = make_queue("low", limiter=SLOT)
    alone = make_queue("alone")
    await top.add("rank", job_id="p")
    p = (await take(top))["p"]
    with pytest.raises(CrossSlotFlowError):
        await p.add_children([Child(queue=alone, name="x")])
    refs = await p.add_children(
        [Child(queue=low, name="mid", job_id="m", children=[Child(queue="top", name="leaf")])]
    )
    assert refs == ["low:m"]
    assert await finish(top, [wait("p", p.token or "")]) == [2]
    assert await state(low, "m") == JobState.WAITING_CHILDREN
    leaf = await take(top)
    assert list(leaf) == ["m.0"]
    await finish(top, [ok("m.0", leaf["m.0"].token or "", 1)])
    mid = await take(low)
    await finish(low, [ok("m", mid["m"].token or "", "mid")])
    again = await take(top)
    assert list(again) == ["p"]
    assert await again["p"].children_results() == {"low:m": "mid"}


async def test_on_failure_of_a_child_added_while_the_parent_runs(make_queue: Any) -> None:
    q = make_queue("dyn")
    await q.add("judge", job_id="p")
    p = (await take(q))["p"]
    await p.add_children(
        [
            Child(queue=q, name="a", job_id="cont", on_failure="continue"),
            Child(queue=q, name="b", job_id="ign", on_failure="ignore"),
        ]
    )
    kids = await take(q)
    await finish(q, [fail(i, k.token or "") for i, k in kids.items()])
    await finish(q, [wait("p", p.token or "")])
    again = (await take(q))["p"]
    assert await again.children_failures() == {"dyn:cont": ChildFailure("UNKNOWN", "cont broke")}
    # a "fail" child that fails while the parent runs fails it when it waits
    await again.add_children([Child(queue=q, name="c", job_id="bad", on_failure="fail")])
    kids = await take(q)
    await finish(q, [fail("bad", kids["bad"].token or "")])
    assert await state(q, "p") == JobState.ACTIVE
    assert await finish(q, [wait("p", again.token or "")]) == [1]
    parent = await q.get_job("p")
    assert parent is not None and (parent.state, parent.error_type) == (
        JobState.FAILED,
        "CHILD_FAILED",
    )
    assert parent.error_message == "child dyn:bad failed: bad broke"
    assert await take(q) == {}
    # retried by hand, it goes on from its step; the failure that ended it is forgotten
    await q.retry_job("p")
    retried = (await take(q))["p"]
    assert retried.step == 2
    assert await finish(q, [wait("p", retried.token or "")]) == [2]
    assert await state(q, "p") == JobState.WAITING  # nothing pending: ready at once


async def test_cancel_of_the_tree_covers_children_added_dynamically(make_queue: Any) -> None:
    q = make_queue("dyn")
    await q.add("judge", job_id="p")
    p = (await take(q))["p"]
    await p.add_children(
        [Child(queue=q, name="a", job_id="run"),
         Child(queue=q, name="b", job_id="mid", children=[Child(queue=q, name="l", job_id="l")])]
    )  # fmt: skip
    await take(q, 1)  # "run" runs
    assert await q.cancel("p", "stop", children=True) == "signalled"
    assert await q.get_job("mid") is None and await q.get_job("l") is None
    assert await q.redis.hget(q.keys.cancels, "run") == b"stop"
    with pytest.raises(QueueStateError, match="cancelled"):
        await p.add_children([Child(queue=q, name="late", job_id="late")])
    assert p.cancel_reason is not None and await q.get_job("late") is None
    # its wait outcome (sent before its worker saw the cancel) ends it: it never comes back
    assert await finish(q, [wait("p", p.token or "")]) == [1]
    parent = await q.get_job("p")
    assert parent is not None and (parent.state, parent.error_type) == (
        JobState.FAILED,
        "CANCELLED",
    )
    assert await take(q) == {}

    # a parent waiting for dynamic children, cancelled with its tree
    await q.add("judge", job_id="p2")
    p2 = (await take(q))["p2"]
    await p2.add_children([Child(queue=q, name="a", job_id="k")])
    await finish(q, [wait("p2", p2.token or "")])
    assert await q.cancel("p2", children=True) == "removed"
    assert await q.get_job("k") is None and await q.get_job("p2") is None
    assert (await q.get_job_counts())["waiting-children"] == 0


async def test_the_stall_check_leaves_a_waiting_parent_alone(make_queue: Any) -> None:
    q = make_queue("dyn")
    await q.add("judge", job_id="p")
    p = (await take(q, lease_ms=1))["p"]
    await p.add_children([Child(queue=q, name="a", job_id="a")])
    assert await finish(q, [wait("p", p.token or "")]) == [2]
    now = await redis_ms(q.redis)
    await wait_redis_clock(q.redis, now + 5)  # past the lease it had
    assert await recover(q) == [0, 0]
    assert await state(q, "p") == JobState.WAITING_CHILDREN


# -- with workers ---------------------------------------------------------------------------


async def run_until(workers: list[Worker], done: Any, what: str) -> None:
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        await wait_for(done, what=what)
    finally:
        for w in workers:
            await w.close()
        await asyncio.gather(*tasks)


async def test_a_judge_revises_up_to_three_times_then_completes(make_queue: Any) -> None:
    judges = make_queue("judge", limiter=SLOT, attempts=1, drain_delay=0.2)
    analyses = make_queue("analysis", limiter=SLOT, drain_delay=0.2)
    runs: Counter[str] = Counter()
    max_revisions = 3

    async def judge(job: Job) -> Any:
        runs["judge"] += 1
        verdicts = await job.children_results()
        latest = verdicts.get(f"analysis:{job.id}:{job.step - 1}") if job.step else None
        if job.step == 0 or (latest == "reject" and job.step <= max_revisions):
            await job.add_children(
                [Child(queue=analyses, name="analyse", job_id=f"{job.id}:{job.step}",
                       data={"round": job.step, "reasons": f"reasons of round {job.step}"})]
            )  # fmt: skip
            await job.wait_for_children()
        return {"steps": job.step, "verdicts": verdicts}

    async def analyse(job: Job) -> Any:
        runs["analyse"] += 1
        return "reject"  # the judge never approves: the loop stops at its bound

    await judges.add("judge", job_id="j")
    workers = [
        Worker(judges, judge, handle_signals=False, shutdown_grace=0.5),
        Worker(analyses, analyse, handle_signals=False, shutdown_grace=0.5),
    ]

    async def done() -> bool:
        return await judges.get_job_state("j") == JobState.COMPLETED

    await run_until(workers, done, "the judge to complete")
    job = await judges.get_job("j")
    assert job is not None
    assert job.result["steps"] == max_revisions + 1
    assert sorted(job.result["verdicts"]) == [f"analysis:j:{i}" for i in range(4)]
    # one first analysis and three revisions; the judge ran once per step; one attempt spent
    assert (runs["analyse"], runs["judge"], job.attempts_made) == (4, 5, 1)


async def test_waiting_for_children_does_not_count_against_the_timeout(
    make_queue: Any,
) -> None:
    timeout = 0.3
    q = make_queue("dyn", limiter=SLOT, timeout=timeout, attempts=1, drain_delay=0.2)
    kids = make_queue("kids", limiter=SLOT, drain_delay=0.2)
    gate = asyncio.Event()

    async def handler(job: Job) -> Any:
        if job.name == "child":
            await gate.wait()
            return "late"
        if job.step == 0:
            await job.add_children([Child(queue=kids, name="child", job_id="c")])
            raise WaitForChildren()
        return await job.children_results()

    await q.add("parent", job_id="p")
    workers = [
        Worker(queue, handler, handle_signals=False, shutdown_grace=0.5) for queue in (q, kids)
    ]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:

        async def waiting() -> bool:
            return await q.get_job_state("p") == JobState.WAITING_CHILDREN

        await wait_for(waiting, what="the parent to wait for its child")
        # the parent has waited longer than its timeout, on the Redis clock
        await wait_redis_clock(q.redis, await redis_ms(q.redis) + int(timeout * 2000))
        gate.set()
        parent = await q.get_job("p")
        assert parent is not None
        assert await parent.wait_until_finished(timeout=30) == {"kids:c": "late"}
    finally:
        gate.set()
        for w in workers:
            await w.close()
        await asyncio.gather(*tasks)


async def test_workers_children_that_end_before_their_parent_waits(make_queue: Any) -> None:
    # the ranking step: five children, all ended before the handler raises WaitForChildren
    q = make_queue("rank", limiter=SLOT, attempts=1, drain_delay=0.2)
    kids = make_queue("stock", limiter=SLOT, drain_delay=0.2)
    runs: Counter[int] = Counter()

    async def ranking(job: Job) -> Any:
        runs[job.step] += 1
        if job.step == 0:
            refs = await job.add_children(
                [Child(queue=kids, name="analyse", data=t) for t in "ABCDE"]
            )

            async def all_done() -> bool:
                ids = [r.split(":", 1)[1] for r in refs]
                return [await kids.get_job_state(i) for i in ids] == [JobState.COMPLETED] * 5

            await wait_for(all_done, what="the children to complete before the parent waits")
            await job.wait_for_children()
        return sorted((await job.children_results()).values())

    async def analyse(job: Job) -> Any:
        return job.data

    await q.add("rank", job_id="r")
    workers = [
        Worker(q, ranking, handle_signals=False, shutdown_grace=0.5),
        Worker(kids, analyse, concurrency=5, handle_signals=False, shutdown_grace=0.5),
    ]

    async def done() -> bool:
        return await q.get_job_state("r") == JobState.COMPLETED

    await run_until(workers, done, "the ranking job to complete")
    job = await q.get_job("r")
    assert job is not None and job.result == list("ABCDE")
    assert runs == {0: 1, 1: 1}
