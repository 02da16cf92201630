"""The worker: takes jobs in batches, runs their handlers, reports outcomes in batches (each
report also takes the next jobs), and shuts down gracefully. Lease renewal, the stall check,
the heartbeat and the cancel listener run beside it (`leases`, `heartbeat`, `cancels`) and see
it only through `RunningJobs` and `WorkerStats`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Literal

from ..core.backoff import exponential_delay
from ..core.connection import REDIS_ERRORS
from ..errors import ConfigError
from ..job import Job
from ..queue import Queue
from ..schedules._loop import check_scheduler_interval
from ._execution import JobExecution
from ._options import check_worker_options
from ._procpool import make_runner
from ._signals import install_stop_signals
from .calls import FinishCalls
from .health import WorkerHealth
from .hooks import Hook, HookRunner, WorkerHooks
from .isolation import ProcessIsolation
from .running import RunningJobs, WorkerStats
from .upkeep import start_upkeep
from .wakeup import IdleWait, Wakeup

__all__ = ["Handler", "Worker"]

log = logging.getLogger(__name__)

Handler = Callable[[Job], Awaitable[Any] | Any]
"""`async def handler(job) -> JSON value`, or a plain `def` (run in the worker's thread pool)."""


class Worker(JobExecution):
    """Runs the jobs of one queue.

    Args:
        queue: the queue to work on.
        handler: `async def handler(job) -> JSON value` or a plain `def` (run in a thread pool
            so it cannot block the event loop), or a mapping from job name to handler (a job
            whose name has none fails at once, not retried). Default: the functions registered
            on the queue with `@queue.task`.
        concurrency: jobs run at the same time by this worker (the queue's
            `QueueConfig.concurrency` caps all workers together).
        calls_in_flight: finish/take calls (each reports outcomes and takes jobs) in flight
            at once, each asking for at most `ceil(concurrency / calls_in_flight)` jobs: with
            2, one call runs in Redis while the jobs of the other run here. Slots asked for
            count as taken, so jobs are never taken ahead of a free slot. 1 = one call at a
            time. "auto" (default): 2 while this worker is alone on the queue, 1 while other
            workers drain it too (their calls overlap its own already, and one call for all
            the free slots costs Redis less per job); see `calls_in_flight_now`.
        name: shown in heartbeats and tokens (default `host:pid:random`).
        shutdown_grace: seconds in-flight jobs get to finish after SIGTERM or `close()`;
            then they are cancelled and handed back to the queue at once.
        handle_signals: install SIGTERM/SIGINT handlers while `run()` runs (main thread only).
        reconnect_backoff: (first, max) seconds between attempts while Redis fails (jitter
            adds up to a quarter); every Redis error (unreachable, OOM, READONLY after a
            failover, LOADING, BUSY, MISCONF...) is backed off from, never ends the worker.
        error_log_every: seconds between two log lines about one loop that keeps failing
            (the first error and the recovery are always logged).
        isolation: None runs handlers in this process; "process" (or a `ProcessIsolation`
            with options) runs each job in a child process of a pool, so that a handler that
            crashes, leaks or hangs fails its job, not the worker (see `worker.isolation`).
        scheduler_interval: seconds between looks for due ticks of the queue's schedulers
            (`Queue.upsert_scheduler`) when none is due sooner; None = this worker does not
            tick them (some worker of the queue must).
        on_active, on_progress, on_completed, on_failed, on_stalled, on_error: lifecycle
            hooks (see `WorkerHooks`): plain functions or coroutine functions.
    """

    RECANCEL_EVERY: ClassVar[float] = 0.2
    """Seconds between cancellations of handlers still running after a forced stop (set it on
    an instance or a subclass to change it)."""

    SHARED_HOLD: ClassVar[float] = 1.0
    """With `calls_in_flight="auto"`: seconds without a sign of other workers on the queue
    before a worker keeps two calls in flight again (on an instance before `run()`, or a
    subclass)."""

    def __init__(
        self,
        queue: Queue,
        handler: Handler | Mapping[str, Handler] | None = None,
        *,
        concurrency: int = 1,
        calls_in_flight: int | Literal["auto"] = "auto",
        name: str | None = None,
        shutdown_grace: float = 25.0,
        handle_signals: bool = True,
        reconnect_backoff: tuple[float, float] = (0.1, 5.0),
        error_log_every: float = 30.0,
        isolation: Literal["process"] | ProcessIsolation | None = None,
        scheduler_interval: float | None = 1.0,
        on_active: Hook | None = None,
        on_progress: Hook | None = None,
        on_completed: Hook | None = None,
        on_failed: Hook | None = None,
        on_stalled: Hook | None = None,
        on_error: Hook | None = None,
    ) -> None:
        check_worker_options(
            handler=handler, concurrency=concurrency, calls_in_flight=calls_in_flight,
            name=name, shutdown_grace=shutdown_grace, reconnect_backoff=reconnect_backoff,
        )  # fmt: skip
        if handler is None:
            handler = getattr(queue, "tasks", None)
            if not handler:
                raise ConfigError(
                    f"no handler given and no task registered on queue {queue.name!r}"
                )
        self.queue = queue
        self.config = queue.config
        self.concurrency = concurrency
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.shutdown_grace = shutdown_grace
        self.handle_signals = handle_signals
        self._backoff = reconnect_backoff
        self.scheduler_interval = check_scheduler_interval(scheduler_interval)
        self._running = RunningJobs()
        self._stats = WorkerStats(self.name, queue.name, concurrency)
        self._health = WorkerHealth(self._stats, log_every=error_log_every)
        hooks = WorkerHooks(on_active, on_progress, on_completed, on_failed, on_stalled, on_error)
        self._calls = FinishCalls(
            queue, HookRunner(hooks), self._stats, depth=calls_in_flight,
            concurrency=concurrency, start=self._start, on_settled=self._poke,
        )  # fmt: skip
        self._use_hooks(hooks)
        self._executor: ThreadPoolExecutor | None = None
        self._runner = make_runner(handler, self.config, self._executor_for, isolation)
        self._direct = self._runner.direct
        self._max_payload = self.config.max_payload
        self._wake: asyncio.Future[None] | None = None
        self._stopping = False
        self._forced = False
        self._done = asyncio.Event()
        self._started = False
        self._signals = 0
        self._wakeup = Wakeup(queue, self.name)
        self._delays = self.config.effective_retry_delays
        self._rng = random.Random()

    # -- public ---------------------------------------------------------------------------

    @property
    def running(self) -> int:
        """Jobs running now."""
        return len(self._running)

    @property
    def completed(self) -> int:
        """Jobs this worker completed."""
        return self._stats.completed

    @property
    def failed(self) -> int:
        """Attempts of this worker that failed."""
        return self._stats.failed

    @property
    def calls_in_flight_now(self) -> int:
        """Finish/take calls this worker keeps in flight at most now (with "auto": 2 alone on
        the queue, 1 beside other workers)."""
        return self._calls.depth

    @property
    def degraded(self) -> str | None:
        """Which of this worker's loops fail now and why (as its heartbeat says); None when
        all work. It carries on meanwhile, backing off (`reconnect_backoff`)."""
        return self._stats.degraded

    @property
    def last_take(self) -> float:
        """When this worker last took jobs or reported outcomes (epoch seconds, 0 = never)."""
        return self._stats.last_take

    def add_hooks(self, hooks: WorkerHooks) -> None:
        """Add lifecycle hooks before `run()`; each runs after the one already set for its
        event (e.g. `jobqueue.metrics.instrument` adds its own beside the user's)."""
        if self._started:
            raise RuntimeError("add hooks before the worker runs")
        self._use_hooks(self.hooks.merged(hooks))

    def _use_hooks(self, hooks: WorkerHooks) -> None:
        self.hooks, self._hooks = hooks, HookRunner(hooks)
        self._calls.hooks = self._hooks
        self._on_progress = self._hooks.progress_callback()
        self._outcome_hooks = hooks.any_outcome

    async def run(self) -> None:
        """Work until `close()` or SIGTERM/SIGINT (a second signal stops at once).

        Errors it meets (Redis unreachable, a failover, a handler's exception) are logged and
        backed off from; only a signal or `close()` ends it.
        """
        if self._started:
            raise RuntimeError("a Worker runs once; make a new one")
        self._started = True
        loop = asyncio.get_running_loop()
        installed = install_stop_signals(loop, self._on_signal, enabled=self.handle_signals)
        helpers: list[asyncio.Task[None]] = []
        try:
            if not await self._until_connected():
                return  # closed before Redis could be reached
            helpers = self._start_helpers()
            log.info(
                "worker %s started on queue %s (concurrency %d)",
                self.name, self.queue.name, self.concurrency,
            )  # fmt: skip
            await self._main()
        finally:
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._running.stop_all()
            await self._runner.aclose()
            await self._hooks.drain(timeout=self.shutdown_grace)
            await self._wakeup.aclose()
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
            for sig in installed:
                loop.remove_signal_handler(sig)
            self._done.set()
            log.info(
                "worker %s stopped: %d completed, %d failed",
                self.name, self._stats.completed, self._stats.failed,
            )  # fmt: skip

    async def close(self, *, force: bool = False) -> None:
        """Stop taking jobs; let running ones finish within the grace period (or hand them
        back at once with `force`), then return when the worker has stopped."""
        self._begin_stop(force=force)
        if self._started:
            await self._done.wait()

    def _start_helpers(self) -> list[asyncio.Task[None]]:
        on_stalled = self.hooks.on_stalled
        stalled = None if on_stalled is None else lambda i, s: self._hooks.fire(on_stalled, i, s)
        return start_upkeep(
            self.queue, running=self._running, stats=self._stats, health=self._health,
            backoff=self._backoff, scheduler_interval=self.scheduler_interval,
            on_stalled=stalled, on_error=lambda e: self._hooks.fire(self.hooks.on_error, e),
        )  # fmt: skip

    def _executor_for(self) -> ThreadPoolExecutor:
        # made on first use: a worker of async handlers never starts a thread
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.concurrency, thread_name_prefix=f"jq-{self.queue.name}"
            )
        return self._executor

    # -- signals and stopping -------------------------------------------------------------

    def _on_signal(self, sig: int) -> None:
        self._signals += 1
        log.info(
            "worker %s got %s: %s",
            self.name,
            signal.Signals(sig).name,
            "stopping now" if self._signals > 1 else "finishing running jobs",
        )
        self._begin_stop(force=self._signals > 1)

    def _begin_stop(self, *, force: bool) -> None:
        loop = asyncio.get_running_loop()
        if not self._stopping:
            self._stopping = True
            if self.shutdown_grace > 0 and not force:
                loop.call_later(self.shutdown_grace, self._force_stop)
        if force or self.shutdown_grace == 0:
            self._force_stop()
        self._poke()

    def _force_stop(self) -> None:
        """Cancel every running handler; the main loop cancels again every `RECANCEL_EVERY`
        seconds those that do not end (a handler whose own Redis client dropped the
        cancellation, which redis-py can do on Python 3.11, would else hold up the stop)."""
        self._forced = True
        self._running.stop_all()
        self._poke()

    def _poke(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    # -- the main loop --------------------------------------------------------------------

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        calls = self._calls
        calls.shared_hold = self.SHARED_HOLD
        want_take = True
        # a short take by a call sent before the latest wake-up does not undo that wake-up
        woken_after = 0
        hint_ms = 0
        wake_at: float | None = None  # when a delayed job or a token is due, per the scripts
        idle_wait: IdleWait | None = None  # a block, or (fast path) one with a take behind it
        failures = 0
        sent = False
        try:
            while True:
                error: BaseException | None = None
                succeeded = False
                while calls.head_done():  # the calls that ended, in the order they were sent
                    call = calls.pop()
                    exc = call.task.exception()
                    if exc is not None:
                        calls.give_back(call)
                        error = error or exc
                        await calls.settle()  # the others too, before backing off once
                        continue
                    succeeded = True
                    started, hint = call.task.result()
                    if call.asked > 0:
                        hint_ms = hint
                        if call.seq > woken_after:
                            want_take = started >= call.asked
                            if not started:
                                wake_at = loop.time() + hint_ms / 1000 if hint_ms > 0 else None
                if error is not None:
                    failures += 1
                    await self._back_off(error, failures)
                    continue
                if succeeded and failures:  # the counter is shared by both: both are fine now
                    failures = 0
                    self._health.ok("take/finish")
                    self._health.ok("wake-up")
                ended = self._stopping and not self._running and not calls.outcomes and not calls
                if ended and (idle_wait is None or not idle_wait.asked or self._forced):
                    break  # (forced: what a take behind took comes back after its lease)
                if self._stopping and idle_wait is not None:
                    await idle_wait.interrupt()  # its take runs now; what it takes goes back
                free = 0 if self._stopping else self._free_slots()
                if not calls.full and (calls.outcomes or (want_take and free > 0)):
                    if sent:
                        # two calls in one pass: let the first one's write go out before the
                        # next is made, so that Redis reads them apart and their replies (and
                        # with them the jobs they bring) come back apart
                        sent = False
                        await asyncio.sleep(0)
                        continue
                    calls.send(free)
                    sent = True
                    continue
                sent = False
                self._wake = loop.create_future()
                waiters: list[asyncio.Future[Any]] = [self._wake]
                idle = free > 0 and not want_take and not self._stopping
                if idle and idle_wait is None:
                    idle_wait = self._wakeup.wait(free, hint_ms, calls, self._start_new)
                if idle_wait is not None and (idle or idle_wait.asked):
                    waiters.append(idle_wait.task)
                timeout = None
                if wake_at is not None and (free > 0 or (idle_wait and idle_wait.asked)):
                    # a block started earlier may outlast the newest hint: wake on time anyway
                    timeout = max(0.0, wake_at - loop.time())
                if self._forced:
                    timeout = self.RECANCEL_EVERY
                done, _ = await asyncio.wait(
                    waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                self._wake = None
                if self._forced:
                    self._running.stop_all()  # again, for handlers that missed it
                if not done and wake_at is not None:
                    wake_at = None
                    want_take, woken_after = True, calls.sent
                    if idle_wait is not None:  # its take holds the slots: run it now
                        await idle_wait.interrupt()
                if idle_wait is not None and idle_wait.task.done():
                    over, idle_wait = idle_wait, None
                    try:
                        result = over.task.result()
                    except Exception as exc:
                        failures += 1
                        await self._back_off(exc, failures, loop="wake-up")
                        result = None
                    else:
                        self._health.ok("wake-up")
                    want_take, woken_after = True, calls.sent
                    if over.asked and result is not None:  # the take behind the block ran
                        started, hint_ms = result
                        want_take = started >= over.asked
                        if not started:
                            wake_at = loop.time() + hint_ms / 1000 if hint_ms > 0 else None
                    elif result and self._free_slots() <= 0:
                        # we cannot use this wake-up: leave it for another worker
                        await self._wakeup.pass_on()
        finally:
            if idle_wait is not None:
                idle_wait.task.cancel()
                with contextlib.suppress(BaseException):
                    await idle_wait.task
            await calls.aclose()

    def _free_slots(self) -> int:
        """Slots neither running a job nor asked for by a call in flight."""
        return self.concurrency - len(self._running) - self._calls.reserved

    async def _back_off(
        self, exc: BaseException, failures: int, *, loop: str = "take/finish"
    ) -> None:
        lo, hi = self._backoff
        delay = exponential_delay(lo, failures, cap=hi, jitter=0.25, rng=self._rng)
        # logged rate-limited there: an outage is one line, not one per attempt
        self._health.failed(loop, exc, retry_in=delay)
        self._hooks.fire(self.hooks.on_error, exc)
        outcomes = self._calls.outcomes
        if self._forced and not self._running and outcomes:
            # a forced stop (grace over, a second signal, close(force=True)) gives up on the
            # outcomes it could not send: their leases expire and the stall check runs them
            # again (at least once). Until then they are kept and sent again, with the same
            # tokens, so a completed handler is not run again for a lost reply.
            log.warning(
                "worker %s: stopping; %d outcome(s) could not be recorded (%s): their jobs "
                "run again after their lease", self.name, len(outcomes),
                ", ".join(o.job_id for o in outcomes[:5]),
            )  # fmt: skip
            self._calls.drop()
        await asyncio.sleep(delay)

    async def _until_connected(self) -> bool:
        """Check the server, backing off while it is away; False if closed meanwhile."""
        failures = 0
        while not self._stopping:
            try:
                await self.queue.connect()
            except REDIS_ERRORS as exc:
                failures += 1
                await self._back_off(exc, failures, loop="connect")
            else:
                self._health.ok("connect")
                return True
        return False
