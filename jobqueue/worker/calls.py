"""A worker's finish/take calls: each reports a batch of outcomes and takes jobs for the free
slots in one script call (`Scripts.finish`).

Up to `depth` calls are in flight at once (`Worker(calls_in_flight=)`), each asking for at
most `ceil(concurrency / depth)` jobs, so that while the jobs one call brought run here, the
next call runs in Redis (one call at a time makes the two take turns). The slots that calls in
flight asked for count as taken: the jobs running plus those asked for never exceed the
worker's concurrency, and nothing is taken ahead of a free slot (the queue's concurrency cap
and the leases count a taken job as active).

With `depth="auto"` (the Worker's default) a worker alone on its queue keeps two calls in
flight, and one call when other workers drain the queue too: those overlap its calls already,
and a call that carries all the free slots costs Redis less per job than two that split them
(two processes at c10 on one Redis: 38k jobs/s with two calls each, 53k with one). It learns of
the others from the active count `finish` returns: more jobs active than this worker can hold
means someone else holds some; `shared_hold` seconds without that sign bring two calls back.

A call that fails gives its outcomes back, ahead of those not sent yet and after those of the
calls sent before it, so each job's outcomes are sent again in the order they were made.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..core.codec import decode_envelope
from ..core.replies import LEASE_LOST, Outcome, Retention, TakeLimits, TakenJob, TakeReply
from ..errors import ErrorType, InvalidJobError
from ..job import Job
from ..queue import Queue
from .hooks import HookRunner
from .running import WorkerStats

__all__ = ["Call", "FinishCalls"]

log = logging.getLogger("jobqueue.worker.worker")


@dataclass(slots=True, eq=False)
class Call:
    """One finish/take call sent.

    Attributes:
        seq: its number (1, 2, ...: the order the calls were sent in).
        batch: the outcomes it reports.
        asked: the jobs it asked for.
        task: runs it; its result is (jobs started, the take's wait hint in ms).
    """

    seq: int
    batch: list[Outcome]
    asked: int
    task: asyncio.Task[tuple[int, int]]


class FinishCalls:
    """The finish/take calls of one worker, and the outcomes waiting for the next one.

    Args:
        queue: the worker's queue.
        hooks: fires the outcome hooks once an outcome is recorded.
        stats: `last_take` is set by every call that succeeds.
        depth: calls in flight at most, or "auto" (2 alone on the queue, 1 beside other
            workers).
        concurrency: the worker's slots.
        start: starts a job taken (called as soon as its call returns).
        on_settled: called when a call ends, failed or not (wakes the worker's loop).
    """

    def __init__(
        self,
        queue: Queue,
        hooks: HookRunner,
        stats: WorkerStats,
        *,
        depth: int | Literal["auto"],
        concurrency: int,
        start: Callable[[Job], None],
        on_settled: Callable[[], None],
    ) -> None:
        self.queue = queue
        self.hooks = hooks
        self.concurrency = concurrency
        self.auto = depth == "auto"
        self.depth = 0
        """Calls in flight at most, now."""
        self.share = 0
        """Most jobs one call asks for."""
        self._set_depth(2 if depth == "auto" else depth)
        self.shared_hold = 1.0
        """With `auto`: seconds without a sign of other workers before two calls come back
        (`Worker.SHARED_HOLD`)."""
        self._shared_until = 0.0
        self.outcomes: list[Outcome] = []
        """Outcomes waiting for the next call."""
        self.reported: dict[str, tuple[Job, Any]] = {}
        """What the outcome hooks need of an outcome not yet recorded: its job and its result
        or error (filled only when a hook is set)."""
        self.reserved = 0
        """Slots asked for by the calls in flight."""
        self.sent = 0
        """Calls sent so far (the `seq` of the latest)."""
        self._calls: deque[Call] = deque()
        self._restored = 0  # outcomes at the head of `outcomes` given back by failed calls
        self._stats = stats
        self._start = start
        self._on_settled = on_settled
        self._limits = queue.config.take_limits(stats.name)
        self._retention = Retention(*queue.config.retention_ms)

    def _set_depth(self, depth: int) -> None:
        self.depth = depth
        self.share = -(-self.concurrency // depth)

    def _adapt(self, call_seq: int, active: int) -> None:
        """One call or two, from the queue's active count after call `call_seq`."""
        # this worker's own jobs active when the call ran: at most its slots, plus the jobs
        # whose outcomes Redis had not recorded yet (in later calls, or not sent)
        later = sum(len(c.batch) for c in self._calls if c.seq > call_seq)
        mine = self.concurrency + later + len(self.outcomes)
        now = time.monotonic()
        if active > mine:
            self._shared_until = now + self.shared_hold
            if self.depth != 1:
                log.debug(
                    "queue %s: other workers drain it too: one call in flight", self.queue.name
                )
                self._set_depth(1)
        elif self.depth != 2 and now >= self._shared_until:
            log.debug("queue %s: no other worker drains it: two calls", self.queue.name)
            self._set_depth(2)

    def __len__(self) -> int:
        return len(self._calls)

    @property
    def full(self) -> bool:
        """As many calls in flight as allowed."""
        return len(self._calls) >= self.depth

    def send(self, free: int) -> None:
        """Send a call with every outcome waiting, asking for up to `free` jobs (at most
        `share`)."""
        batch, self.outcomes = self.outcomes, []
        self._restored = 0
        take = min(free, self.share) if free > 0 else 0
        self.sent += 1
        self.reserved += take
        task = asyncio.get_running_loop().create_task(self._run(self.sent, batch, take))
        self._calls.append(Call(self.sent, batch, take, task))
        task.add_done_callback(lambda _: self._on_settled())

    def head_done(self) -> bool:
        """The oldest call in flight has ended."""
        return bool(self._calls) and self._calls[0].task.done()

    def pop(self) -> Call:
        """Remove the oldest call (ended: see `head_done`)."""
        return self._calls.popleft()

    async def settle(self) -> None:
        """Wait until every call in flight has ended (their tasks never raise here)."""
        if self._calls:
            await asyncio.wait([c.task for c in self._calls])

    def give_back(self, call: Call) -> None:
        """A failed call's outcomes wait for the next call again, after those of calls sent
        before it that failed too and ahead of the ones made since."""
        at = self._restored
        self.outcomes[at:at] = call.batch
        self._restored = at + len(call.batch)

    def drop(self) -> None:
        """Forget the outcomes waiting (a forced stop that cannot record them)."""
        self.outcomes.clear()
        self.reported.clear()
        self._restored = 0

    async def aclose(self) -> None:
        """Cancel the calls still in flight (only when the worker's loop itself is cancelled:
        it otherwise waits for them) and wait for them."""
        calls, self._calls = list(self._calls), deque()
        for call in calls:
            call.task.cancel()
        for call in calls:
            try:
                await call.task
            except BaseException:
                pass

    async def _run(self, seq: int, batch: list[Outcome], take: int) -> tuple[int, int]:
        try:
            reply = await self.queue.scripts.finish(
                batch, take=take, limits=self._limits, retention=self._retention
            )
        finally:
            self.reserved -= take
        reported = self.reported
        for outcome, code in zip(batch, reply.codes, strict=True):
            if code == LEASE_LOST:
                log.warning(
                    "job %s:%s: lease lost before its outcome was recorded (another worker "
                    "may have run it); outcome dropped",
                    self.queue.name,
                    outcome.job_id,
                )
                reported.pop(outcome.job_id, None)
            elif reported and (entry := reported.pop(outcome.job_id, None)) is not None:
                self.hooks.outcome(outcome, code, *entry)
        self._stats.last_take = time.time()
        if self.auto:
            self._adapt(seq, reply.active)
        return self._start_taken(reply.taken, self._start), reply.taken.wait_ms

    def send_behind(
        self,
        free: int,
        take: Callable[[int, TakeLimits], Awaitable[TakeReply]],
        start: Callable[[Job], None],
    ) -> tuple[int, asyncio.Task[tuple[int, int]]]:
        """Take up to `free` jobs (at most `share`) with `take` (the wake-up's, behind its
        block: `Wakeup.take`), outside the calls in flight; the slots count as asked for
        until it ends. Returns the slots asked for and the task, whose result is as a call's
        (jobs started, the wait hint); `start` starts each job taken."""
        asked = min(free, self.share)
        self.reserved += asked
        task = asyncio.get_running_loop().create_task(self._run_behind(asked, take, start))
        return asked, task

    async def _run_behind(
        self,
        asked: int,
        take: Callable[[int, TakeLimits], Awaitable[TakeReply]],
        start: Callable[[Job], None],
    ) -> tuple[int, int]:
        try:
            reply = await take(asked, self._limits)
        finally:
            self.reserved -= asked
        self._stats.last_take = time.time()
        return self._start_taken(reply, start), reply.wait_ms

    def _start_taken(self, taken: TakeReply, start: Callable[[Job], None]) -> int:
        started = 0
        for t in taken.jobs:
            job = self._job_of(t)
            if job is not None:
                start(job)
                started += 1
        return started

    def _job_of(self, taken: TakenJob) -> Job | None:
        try:
            env = decode_envelope(taken.envelope)
        except InvalidJobError as exc:
            # a corrupt job cannot run: fail it for good instead of looping on it
            etype = ErrorType.VALIDATION_ERROR.value
            self.outcomes.append(Outcome(taken.job_id, taken.token, "f", str(exc), etype, -1, 1))
            return None
        return Job.from_taken(self.queue, taken, env)
