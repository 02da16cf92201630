"""`Worker(calls_in_flight=)`: several finish/take calls in flight at once, never more jobs
running or asked for than the worker's concurrency.

Calls in flight are counted by a wrapper on the worker's own call (`FinishCalls._run`), jobs
running by the handler itself: no timing is involved."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from engine_helpers import HANG, wait_for

from jobqueue import ConfigError, Job, Queue, QueueConfig, Worker

pytestmark = pytest.mark.integration


def _queue(name: str, redis_url: str, prefix: str) -> Queue:
    """A queue that keeps every completed job (the tests count them) and wakes often."""
    config = QueueConfig(name, drain_delay=0.5, keep_completed=(1000, 3600))
    return Queue(config, redis=redis_url, prefix=prefix)


class Watch:
    """Counts the calls of a worker in flight and the handlers running."""

    def __init__(self) -> None:
        self.calls = 0
        self.peak_calls = 0
        self.running = 0
        self.peak_running = 0
        self.asked: list[int] = []
        self.held_or_asked: list[int] = []  # jobs running plus slots asked for, at each call
        self.done = 0

    def wrap(self, worker: Worker) -> None:
        calls = worker._calls
        run = calls._run

        async def counted(seq: int, batch: Any, take: int) -> tuple[int, int]:
            self.calls += 1
            self.peak_calls = max(self.peak_calls, self.calls)
            self.asked.append(take)
            self.held_or_asked.append(len(worker._running) + calls.reserved)
            try:
                return await run(seq, batch, take)
            finally:
                self.calls -= 1

        calls._run = counted  # type: ignore[method-assign]

    async def handler(self, job: Job) -> None:
        self.running += 1
        self.peak_running = max(self.peak_running, self.running)
        try:
            for _ in range(int(job.data) % 4):  # ends at different turns of the loop
                await asyncio.sleep(0)
        finally:
            self.running -= 1
            self.done += 1


@pytest.mark.parametrize(
    ("concurrency", "depth", "peak"),
    [(4, 1, 1), (4, 2, 2), (5, 2, 2), (10, 3, 3), (1, 2, 1)],
    ids=["c4-one-call", "c4-two-calls", "c5-two-calls", "c10-three-calls", "c1-two-calls"],
)
async def test_calls_in_flight_overlap_without_exceeding_concurrency(
    redis_url: str, prefix: str, concurrency: int, depth: int, peak: int
) -> None:
    q = _queue("calls", redis_url, prefix)
    n = 300
    await q.add_bulk([("x", i) for i in range(n)])
    watch = Watch()
    w = Worker(
        q, watch.handler, concurrency=concurrency, calls_in_flight=depth, handle_signals=False
    )
    watch.wrap(w)
    task = asyncio.create_task(w.run())
    try:

        async def drained() -> bool:
            return watch.done >= n and (await q.get_job_counts())["completed"] == n

        await wait_for(drained, what=f"{n} jobs")
    finally:
        await w.close()
        await task
        await q.close()
    share = -(-concurrency // depth)
    assert watch.peak_calls == peak  # the calls really overlap (and never more than asked)
    assert watch.calls == 0  # none left in flight after close
    assert 1 <= watch.peak_running <= concurrency
    assert max(watch.asked) == share
    assert max(watch.held_or_asked) <= concurrency
    assert w.completed == n


async def test_two_calls_in_flight_while_jobs_run(redis_url: str, prefix: str) -> None:
    """With jobs held, a call goes out while another is in flight and jobs run: the calls
    that finish the first jobs and take the next overlap with the running handlers."""
    q = Queue(QueueConfig("calls2", drain_delay=0.5), redis=redis_url, prefix=prefix)
    gates = [asyncio.Event() for _ in range(4)]
    started: list[int] = []
    await q.add_bulk([("x", i) for i in range(6)])

    async def handler(job: Job) -> None:
        started.append(int(job.data))
        if int(job.data) < 4:
            await gates[int(job.data)].wait()

    watch = Watch()
    w = Worker(q, handler, concurrency=4, calls_in_flight=2, handle_signals=False)
    watch.wrap(w)
    task = asyncio.create_task(w.run())
    try:

        async def four_running() -> bool:
            return len(started) == 4

        await wait_for(four_running, what="4 jobs running")
        assert watch.peak_calls == 2 and w.running == 4
        gates[0].set()  # one slot frees: a call reports it and takes job 4 ...

        async def five_started() -> bool:
            return len(started) >= 5

        await wait_for(five_started, what="job 4 to start")
        assert w.running <= 4  # ... into the freed slot only
        for gate in gates[1:]:
            gate.set()

        async def all_done() -> bool:
            return (await q.get_job_counts())["completed"] == 6

        await wait_for(all_done, what="6 jobs")
    finally:
        await w.close()
        await asyncio.wait_for(task, HANG)
        await q.close()
    assert sorted(started) == list(range(6))
    assert max(watch.held_or_asked) <= 4


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", "Auto", None])
def test_calls_in_flight_is_validated(bad: Any) -> None:
    q = Queue(QueueConfig("v"), redis="redis://127.0.0.1:1/0")
    message = f'calls_in_flight must be "auto" or an int >= 1, got {bad!r}'
    with pytest.raises(ConfigError, match=re.escape(message)):
        Worker(q, lambda job: None, calls_in_flight=bad)


class QuickWorker(Worker):
    SHARED_HOLD = 0.05  # back to two calls soon after the other worker stops


async def test_auto_keeps_one_call_beside_another_worker_and_two_alone(
    redis_url: str, prefix: str
) -> None:
    """Worker A holds 10 jobs; worker B ("auto", the default) drains beside it with one call
    in flight, and with two once A's jobs ended. A worker with a fixed depth keeps it."""
    q = _queue("auto", redis_url, prefix)
    gate = asyncio.Event()
    held: list[str] = []

    async def hold(job: Job) -> None:
        held.append(job.id)
        await gate.wait()

    async def quick(job: Job) -> None:
        return None

    await q.add_bulk([("x", i) for i in range(10)])
    a = Worker(q, hold, concurrency=10, calls_in_flight=1, handle_signals=False)
    a_task = asyncio.create_task(a.run())
    b = QuickWorker(q, quick, concurrency=2, handle_signals=False)
    fixed = Worker(q, quick, concurrency=2, calls_in_flight=2, handle_signals=False)
    tasks: list[asyncio.Task[None]] = []
    depths: list[int] = []
    try:

        async def a_holds_ten() -> bool:
            return len(held) == 10

        await wait_for(a_holds_ten, what="worker A to hold 10 jobs")
        assert b.calls_in_flight_now == 2  # alone so far (as far as it knows)
        wrap_depths(b, depths)
        tasks = [asyncio.create_task(w.run()) for w in (b, fixed)]
        await q.add_bulk([("x", i) for i in range(400)])

        async def one_call() -> bool:
            return b.calls_in_flight_now == 1

        await wait_for(one_call, what="B to see worker A's jobs")
        assert b.calls_in_flight_now == 1, depths
        assert fixed.calls_in_flight_now == 2
        gate.set()  # A's jobs end; A, B and the fixed one drain the rest, then only B works
        await a.close()
        await fixed.close()

        async def drained() -> bool:
            return (await q.get_job_counts())["completed"] == 410

        await wait_for(drained, what="410 jobs")

        async def two_calls() -> bool:
            if (await q.get_job_counts())["waiting"] == 0:  # keep B busy until it switches
                await q.add_bulk([("x", i) for i in range(200)])
            return b.calls_in_flight_now == 2

        await wait_for(two_calls, what="B alone to keep two calls in flight again")
    finally:
        gate.set()
        for w in (a, b, fixed):
            await w.close()
        await asyncio.wait_for(a_task, HANG)
        for t in tasks:
            await asyncio.wait_for(t, HANG)
        await q.close()
    assert depths[0] == 1 and 2 in depths  # one call beside A, two alone after


def wrap_depths(worker: Worker, depths: list[int]) -> None:
    """Record every change of the worker's depth."""
    calls = worker._calls
    set_depth = calls._set_depth

    def recorded(depth: int) -> None:
        depths.append(depth)
        set_depth(depth)

    calls._set_depth = recorded  # type: ignore[method-assign]


async def test_two_failed_calls_give_their_outcomes_back_in_order(
    redis_url: str, prefix: str
) -> None:
    """Jobs 0 and 1 end one after the other, and the two calls that report them fail while
    both are in flight: the next call reports both outcomes again, job 0's first, and every
    job runs once."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    q = _queue("calls3", redis_url, prefix)
    n = 6
    await q.add_bulk([("x", i) for i in range(n)])
    gates = [asyncio.Event() for _ in range(4)]
    ids: dict[int, str] = {}
    runs: list[int] = []

    async def handler(job: Job) -> None:
        ids[int(job.data)] = job.id
        runs.append(int(job.data))
        if int(job.data) < 4:
            await gates[int(job.data)].wait()

    w = Worker(q, handler, concurrency=4, handle_signals=False, reconnect_backoff=(0.01, 0.05))
    finish = q.scripts.finish
    batches: list[list[str]] = []  # the job ids reported by each call that reports some
    both_in = asyncio.Event()

    async def failing(outcomes: Any, **kw: Any) -> Any:
        if outcomes:
            batches.append([o.job_id for o in outcomes])
            number = len(batches)
            if number <= 2:
                if number == 2:
                    both_in.set()
                await both_in.wait()  # the first waits for the second: both in flight
                raise RedisConnectionError("injected")
        return await finish(outcomes, **kw)

    q.scripts.finish = failing  # type: ignore[method-assign]
    task = asyncio.create_task(w.run())
    try:

        async def running(k: int) -> bool:
            return len(runs) >= k

        await wait_for(lambda: running(4), what="jobs 0-3 running")
        gates[0].set()

        async def first_held() -> bool:
            return len(batches) >= 1

        await wait_for(first_held, what="the call reporting job 0")
        gates[1].set()

        async def resent() -> bool:
            return len(batches) >= 3

        await wait_for(resent, what="the outcomes sent again")
        gates[2].set()
        gates[3].set()

        async def drained() -> bool:
            return (await q.get_job_counts())["completed"] == n

        await wait_for(drained, what=f"{n} jobs")
    finally:
        for gate in gates:
            gate.set()
        await w.close()
        await asyncio.wait_for(task, HANG)
        await q.close()
    assert batches[:2] == [[ids[0]], [ids[1]]]  # two calls in flight, each with one outcome
    assert batches[2][:2] == [ids[0], ids[1]]  # sent again first, in the order they were made
    assert sorted(runs) == list(range(n))  # no job ran twice: no outcome was lost
