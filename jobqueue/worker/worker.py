"""The worker: takes jobs in batches, runs their handlers, renews their leases, reports
outcomes in batches (each report also takes the next jobs), recovers stalled jobs, and shuts
down gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..core.fastconn import FastConnection
from ..core.redact import redact
from ..core.scripts import raise_for_code
from ..errors import ConfigError, ErrorType, InvalidJobError
from ..job import Job, JobState, decode_envelope, dumps
from ..queue import Queue
from . import heartbeat as health
from . import leases, outcomes
from .outcomes import Outcome

__all__ = ["Handler", "Worker"]

log = logging.getLogger(__name__)

Handler = Callable[[Job], Awaitable[Any]]
"""`async def handler(job) -> JSON value`."""

# Errors after which the worker backs off and tries again: Redis is away or restarting.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    ConnectionError,
    OSError,
)


class Worker:
    """Runs the jobs of one queue.

    Args:
        queue: the queue to work on.
        handler: `async def handler(job) -> JSON value`, or a mapping from job name to handler
            (a job whose name has no handler fails at once).
        concurrency: jobs run at the same time by this worker (the queue's
            `QueueConfig.concurrency` caps all workers together).
        name: shown in heartbeats and tokens (default `host:pid:random`).
        shutdown_grace: seconds in-flight jobs get to finish after SIGTERM or `close()`;
            then they are cancelled and handed back to the queue at once.
        handle_signals: install SIGTERM/SIGINT handlers while `run()` runs (main thread only).
        reconnect_backoff: (first, max) seconds between attempts while Redis is unreachable.
    """

    def __init__(
        self,
        queue: Queue,
        handler: Handler | Mapping[str, Handler],
        *,
        concurrency: int = 1,
        name: str | None = None,
        shutdown_grace: float = 25.0,
        handle_signals: bool = True,
        reconnect_backoff: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if shutdown_grace < 0:
            raise ConfigError(f"shutdown_grace must be >= 0, got {shutdown_grace!r}")
        first, most = reconnect_backoff
        if not 0 < first <= most:
            raise ConfigError(
                f"reconnect_backoff must be 0 < first <= max, got {reconnect_backoff!r}"
            )
        self.queue = queue
        self.config = queue.config
        self._handler = handler
        self.concurrency = concurrency
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.shutdown_grace = shutdown_grace
        self.handle_signals = handle_signals
        self._backoff_first, self._backoff_max = reconnect_backoff
        self._running: dict[str, tuple[Job, asyncio.Task[None]]] = {}
        self._outcomes: list[Outcome] = []
        self._wake: asyncio.Future[None] | None = None
        self._stopping = False
        self._handing_back = False
        self._lost: set[str] = set()
        self._done = asyncio.Event()
        self._started = False
        self._signals = 0
        self._blocker: Redis | None = None
        self._fast_blocker: FastConnection | None = None
        self._delays = self.config.effective_retry_delays
        self._rng = random.Random()
        self.completed = 0
        self.failed = 0
        self.last_take = 0.0
        cfg = self.config
        rate = cfg.rate_limit
        kc, kca, kf, kfa = cfg.retention_ms
        # ARGV 1..12 of finish.lua (3, n, is filled per call)
        self._finish_head: list[Any] = [
            queue.keys.base,
            cfg.events_maxlen,
            0,
            self.name,
            int(cfg.lease * 1000),
            cfg.concurrency or 0,
            rate.max if rate else 0,
            int(rate.per * 1000) if rate else 0,
            kc,
            kca,
            kf,
            kfa,
        ]

    # -- public ---------------------------------------------------------------------------

    @property
    def running(self) -> int:
        """Jobs running now."""
        return len(self._running)

    async def run(self) -> None:
        """Work until `close()` or SIGTERM/SIGINT (a second signal stops at once)."""
        if self._started:
            raise RuntimeError("a Worker runs once; make a new one")
        self._started = True
        loop = asyncio.get_running_loop()
        installed = self._install_signals(loop)
        helpers: list[asyncio.Task[None]] = []
        try:
            await self._until_connected(self.queue.connect)
            pool_kwargs = dict(self.queue.redis.connection_pool.connection_kwargs)
            # the blocking connection gets a socket timeout longer than any block, so a read
            # that never settles (a half-dead connection) ends in a reconnect, not a hang
            pool_kwargs["socket_timeout"] = self.config.drain_delay + 10.0
            pool = self.queue.redis.connection_pool
            self._blocker = Redis(
                connection_pool=ConnectionPool(
                    connection_class=pool.connection_class, **pool_kwargs
                )
            )
            if self.queue.scripts.fast is not None:
                # the wake-up is on the latency path: a lean connection of its own for it
                self._fast_blocker = FastConnection.from_client(self._blocker)
            helpers = [
                loop.create_task(leases.renew_loop(self), name=f"jq-renew-{self.name}"),
                loop.create_task(leases.stall_loop(self), name=f"jq-stall-{self.name}"),
                loop.create_task(health.heartbeat_loop(self), name=f"jq-beat-{self.name}"),
                loop.create_task(health.cancel_listener(self), name=f"jq-cancel-{self.name}"),
            ]
            log.info(
                "worker %s started on queue %s (concurrency %d)",
                self.name,
                self.queue.name,
                self.concurrency,
            )
            await self._main()
        finally:
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for _, task in list(self._running.values()):
                task.cancel()
            if self._fast_blocker is not None:
                await self._fast_blocker.aclose()
            if self._blocker is not None:
                await self._blocker.aclose()
            for sig in installed:
                loop.remove_signal_handler(sig)
            self._done.set()
            log.info(
                "worker %s stopped: %d completed, %d failed", self.name, self.completed, self.failed
            )

    async def close(self, *, force: bool = False) -> None:
        """Stop taking jobs; let running ones finish within the grace period (or hand them
        back at once with `force`), then return when the worker has stopped."""
        self._begin_stop(force=force)
        if self._started:
            await self._done.wait()

    # -- signals and stopping -------------------------------------------------------------

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        import threading

        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return []
        installed: list[int] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):
                pass
        return installed

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
                loop.call_later(self.shutdown_grace, self._hand_back_all)
        if force:
            self._hand_back_all()
        self._poke()

    def _hand_back_all(self) -> None:
        self._handing_back = True
        for _, task in list(self._running.values()):
            task.cancel()

    def _poke(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    # -- the main loop --------------------------------------------------------------------

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        want_take = True
        hint_ms = 0
        wake_at: float | None = None  # when a delayed job or a token is due, per the scripts
        blocker: asyncio.Task[bool] | None = None
        failures = 0
        try:
            while True:
                if self._stopping and not self._running and not self._outcomes:
                    break
                free = 0 if self._stopping else self.concurrency - len(self._running)
                if self._outcomes or (want_take and free > 0):
                    batch, self._outcomes = self._outcomes, []
                    try:
                        jobs, hint_ms = await self._finish_and_take(batch, free)
                    except TRANSIENT_ERRORS as exc:
                        self._outcomes[:0] = batch
                        failures += 1
                        await self._back_off(exc, failures)
                        continue
                    if failures:
                        log.info("worker %s: redis is back", self.name)
                        failures = 0
                    for job in jobs:
                        self._start(job)
                    want_take = bool(jobs) and len(jobs) >= free
                    if free > 0 and not jobs:
                        wake_at = loop.time() + hint_ms / 1000 if hint_ms > 0 else None
                    continue
                self._wake = loop.create_future()
                waiters: list[asyncio.Future[Any]] = [self._wake]
                if free > 0 and not self._stopping:
                    if blocker is None:
                        blocker = loop.create_task(self._block(hint_ms))
                    waiters.append(blocker)
                timeout = None
                if wake_at is not None and free > 0:
                    # a block started earlier may outlast the newest hint: wake on time anyway
                    timeout = max(0.0, wake_at - loop.time())
                done, _ = await asyncio.wait(
                    waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                self._wake = None
                if not done and wake_at is not None:
                    wake_at = None
                    want_take = True
                if blocker is not None and blocker.done():
                    task, blocker = blocker, None
                    try:
                        popped = task.result()
                    except TRANSIENT_ERRORS as exc:
                        failures += 1
                        await self._back_off(exc, failures)
                        popped = False
                    want_take = True
                    if popped and self.concurrency - len(self._running) <= 0:
                        # we cannot use this wake-up: leave it for another worker
                        await self._repoke()
        finally:
            if blocker is not None:
                blocker.cancel()
                with contextlib.suppress(BaseException):
                    await blocker

    async def _repoke(self) -> None:
        with contextlib.suppress(*TRANSIENT_ERRORS):
            await self.queue.redis.zadd(self.queue.keys.marker, {"0": 0})

    async def _block(self, hint_ms: int) -> bool:
        """Block in Redis until a job may be ready; True when woken by the marker."""
        assert self._blocker is not None
        timeout = self.config.drain_delay
        if hint_ms > 0:
            timeout = min(timeout, hint_ms / 1000)
        timeout = max(timeout, 0.001)
        if self._fast_blocker is not None:
            reply = await self._fast_blocker.execute("BZPOPMIN", self.queue.keys.marker, timeout)
        else:
            reply = await self._blocker.bzpopmin(self.queue.keys.marker, timeout=timeout)
        return reply is not None

    async def _back_off(self, exc: BaseException, failures: int) -> None:
        delay = min(self._backoff_max, self._backoff_first * 2 ** (failures - 1))
        delay += self._rng.uniform(0, delay / 4)
        # one line per attempt, and attempts slow down: no tight error loop in the logs
        log.warning(
            "worker %s: redis unavailable (%s); retrying in %.2fs",
            self.name,
            redact(f"{type(exc).__name__}: {exc}"),
            delay,
        )
        if self._stopping and not self._running and failures > 3:
            # shutting down with nothing running: give up on the outcomes we could not send
            # (their leases expire and the stall check runs them again: at least once)
            log.warning("worker %s: dropping %d unsent outcomes", self.name, len(self._outcomes))
            self._outcomes.clear()
        await asyncio.sleep(delay)

    async def _until_connected(self, fn: Callable[[], Awaitable[None]]) -> None:
        failures = 0
        while True:
            try:
                await fn()
                return
            except TRANSIENT_ERRORS as exc:
                failures += 1
                if self._stopping:
                    raise
                await self._back_off(exc, failures)

    async def _finish_and_take(self, batch: list[Outcome], n: int) -> tuple[list[Job], int]:
        args = list(self._finish_head)
        args[2] = n
        args.append(len(batch))
        for outcome in batch:
            args.extend(outcome)
        try:
            codes, reply = await self.queue.scripts.run("finish", self.queue._key_list, args)
        except ResponseError as exc:
            if "OOM" in str(exc):
                raise RedisConnectionError(f"redis is out of memory: {exc}") from exc
            raise
        for outcome, code in zip(batch, codes, strict=True):
            code = int(code)
            if code == -2:
                log.warning(
                    "job %s:%s: lease lost before its outcome was recorded (another worker "
                    "may have run it); outcome dropped",
                    self.queue.name,
                    outcome[0],
                )
            elif code < 0:
                raise_for_code(code, outcome[0])
        self.last_take = time.time()
        return self._decode_take(reply)

    def _decode_take(self, reply: list[Any]) -> tuple[list[Job], int]:
        hint = int(reply[0])
        jobs: list[Job] = []
        for i in range(1, len(reply), 4):
            raw_id, env_raw, raw_token, attempt = reply[i : i + 4]
            job_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            token = raw_token.decode() if isinstance(raw_token, bytes) else str(raw_token)
            try:
                env = decode_envelope(env_raw)
            except InvalidJobError as exc:
                # a corrupt job cannot run: fail it for good instead of looping on it
                self._outcomes.append(
                    (job_id, token, "f", str(exc), ErrorType.VALIDATION_ERROR.value, -1, 1)
                )
                continue
            attempt = int(attempt)
            jobs.append(
                Job(
                    self.queue,
                    job_id,
                    env,
                    state=JobState.ACTIVE,
                    run_state={"a": attempt - 1},
                    token=token,
                    attempt=attempt,
                )
            )
        return jobs, hint

    # -- running jobs ---------------------------------------------------------------------

    def _start(self, job: Job) -> None:
        task = asyncio.get_running_loop().create_task(self._execute(job))
        self._running[job.id] = (job, task)

    def _handler_for(self, job: Job) -> Handler | None:
        if callable(self._handler):
            return self._handler
        return self._handler.get(job.name)

    async def _execute(self, job: Job) -> None:
        outcome: Outcome | None = None
        timeout = self.config.timeout
        cm = asyncio.timeout(timeout) if timeout else None
        try:
            handler = self._handler_for(job)
            if handler is None:
                raise InvalidJobError(f"no handler for job name {job.name!r}")
            if cm is not None:
                async with cm:
                    result = await handler(job)
            else:
                result = await handler(job)
            payload = dumps(result, limit=self.config.max_payload, what="job result")
            outcome = outcomes.completed(job, payload)
            self.completed += 1
        except asyncio.CancelledError:
            if job.id in self._lost:
                outcome = None  # the lease is gone: another worker owns the job now
            elif job.cancel_reason is not None:
                outcome = self._failure_outcome(job, None, ErrorType.CANCELLED, job.cancel_reason)
            else:
                outcome = outcomes.handed_back(job)
        except InvalidJobError as exc:
            outcome = self._failure_outcome(job, None, ErrorType.VALIDATION_ERROR, str(exc))
        except Exception as exc:
            error: BaseException = exc
            if cm is not None and cm.expired():
                error = TimeoutError(f"job timed out after {timeout:g}s")
            outcome = self._failure_outcome(job, error)
        finally:
            self._running.pop(job.id, None)
            self._lost.discard(job.id)
            if outcome is not None:
                self._outcomes.append(outcome)
            self._poke()

    def _failure_outcome(
        self,
        job: Job,
        exc: BaseException | None,
        final_type: ErrorType | None = None,
        message: str = "",
    ) -> Outcome:
        self.failed += 1
        if exc is None:
            etype = final_type or ErrorType.UNKNOWN
            log.info("job %s:%s failed (%s): %s", self.queue.name, job.id, etype, message)
            return outcomes.failed_for_good(job, etype, message)
        outcome, c = outcomes.failure(self.config, job, exc, delays=self._delays, rng=self._rng)
        log.info(
            "job %s:%s attempt %d failed (%s%s): %s",
            self.queue.name,
            job.id,
            job.attempt,
            c.error_type,
            "" if c.retryable else ", not retried",
            outcome[3],
        )
        return outcome

    def _cancel_running(self, job_id: str, reason: str) -> None:
        entry = self._running.get(job_id)
        if entry is not None and entry[0].cancel_reason is None:
            entry[0].cancel_reason = reason or "cancelled"
            entry[1].cancel()
