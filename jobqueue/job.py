"""The job: what a handler receives and what `Queue.get_job` returns."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, NoReturn, Protocol

from redis.asyncio import Redis

from .config import QueueConfig
from .core.codec import decode_envelope
from .core.codec import text as _s
from .core.keys import QueueKeys, queue_of_base
from .core.replies import CancelOutcome, JobRecord, TakenJob
from .core.scripts import Scripts
from .core.states import JobState
from .errors import (
    ErrorType,
    InvalidJobError,
    LeaseLostError,
    QueueStateError,
    UnrecoverableError,
    WaitForChildren,
)
from .events import DEFAULT_BLOCK, wait_for_job
from .flows.types import Child, ChildFailure

__all__ = ["CURRENT_JOB", "Job", "JobQueue", "get_current_job"]


class JobQueue(Protocol):
    """What a `Job` needs of its queue (`Queue` is one); `Job.queue` is typed by it."""

    @property
    def name(self) -> str: ...

    @property
    def config(self) -> QueueConfig: ...

    @property
    def redis(self) -> Redis: ...

    @property
    def keys(self) -> QueueKeys: ...

    @property
    def scripts(self) -> Scripts: ...

    async def add(
        self,
        name: str,
        data: Any = None,
        *,
        job_id: str | None = None,
        delay: float = 0.0,
        priority: int = 0,
        attempts: int | None = None,
    ) -> Job: ...

    async def get_job_state(self, job_id: str) -> JobState | None: ...

    async def add_job_log(self, job_id: str, line: str) -> int: ...

    async def get_job_logs(self, job_id: str, start: int = 0, end: int = -1) -> list[str]: ...

    async def retry_job(self, job_id: str) -> None: ...

    async def cancel(
        self, job_id: str, reason: str = "cancelled", *, children: bool = False
    ) -> CancelOutcome: ...

    async def remove(self, job_id: str) -> bool: ...

    async def _add_children(
        self,
        job_id: str,
        token: str,
        children: Sequence[Child],
        *,
        id_prefix: str,
        first: int = 0,
    ) -> list[str]: ...


CURRENT_JOB: ContextVar[Job | None] = ContextVar("jobqueue_current_job", default=None)
"""The job whose handler runs in this context (the worker sets it around each handler; a
thread started inside inherits it through `contextvars`)."""


def get_current_job() -> Job | None:
    """The job whose handler is running in this task or thread, or None outside a handler.

    Works in async handlers and in plain `def` handlers (run in the worker's thread pool), so
    code deep inside a handler can log to its job or read its id without passing it around.
    """
    return CURRENT_JOB.get()


def _ms_to_dt(value: Any) -> datetime | None:
    if value in (None, b"", ""):
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


class Job:
    """A job of a queue.

    Attributes:
        id: the job id (given at `add`, or a counter value).
        name: the job name given at `add`.
        data: the JSON data given at `add`.
        state: `JobState` when read (call `get_state()` for the current one).
        progress: 0..100 as last reported.
        attempts_made: finished attempts (failed ones and the successful one).
        max_attempts: total attempts allowed.
        priority: higher runs first.
        group: the group given at `add` (fair share between groups), or None.
        deduplicated: set on the job `Queue.add` returned for a duplicate (see `Dedup`):
            "dropped" (this is the job that holds the key) or "replaced" (its data was
            replaced by the duplicate's); None otherwise.
        result: the handler's return value once completed.
        error_message, error_type: of the last failed attempt.
        created_at, started_at, finished_at: UTC datetimes from the Redis clock.
        attempt: (in a handler) the number of the attempt running now, from 1.
        token: (in a handler) the fencing token of this attempt's lease.
        parent: for a flow child, its parent as `"<queue>:<id>"`, else None.
        step: how many times the job waited for children it added (`add_children`, then
            `wait_for_children`): 0 on its first run, 1 once it ran again after the first
            wait... It tells a step handler which phase it is in; it is not an attempt (error
            retries do not change it, and waiting spends no attempt).
    """

    __slots__ = (
        "_children_added",
        "_on_progress",
        "_queue",
        "_trace",
        "attempt",
        "attempts_made",
        "cancel_reason",
        "created_at",
        "data",
        "deduplicated",
        "error_message",
        "error_type",
        "finished_at",
        "group",
        "id",
        "max_attempts",
        "name",
        "parent",
        "priority",
        "progress",
        "result",
        "started_at",
        "state",
        "step",
        "token",
    )

    def __init__(
        self,
        queue: JobQueue,
        job_id: str,
        envelope: Mapping[str, Any],
        *,
        state: JobState | str = JobState.WAITING,
        run_state: Mapping[str, Any] | None = None,
        token: str | None = None,
        attempt: int = 0,
    ) -> None:
        self._queue = queue
        self._on_progress: Callable[[Job, int], None] | None = None
        self._children_added = 0  # by this run: numbers the next children without ids
        self.id = job_id
        self.name: str = envelope["n"]
        self.data: Any = envelope.get("d")
        self.max_attempts: int = int(envelope.get("at", queue.config.attempts))
        self.priority: int = int(envelope.get("p", 0))
        self.group: str | None = envelope.get("g")
        # the trace context of the span that added it (OpenTelemetry, see `_otel`), or None
        self._trace: Any = envelope.get("tp")
        self.deduplicated: str | None = None
        self.created_at = _ms_to_dt(envelope.get("ts"))
        self.state = state if type(state) is JobState else JobState(state)
        self.token = token
        self.attempt = attempt
        self.cancel_reason: str | None = None
        self.parent: str | None = None
        self.result: Any = None
        self.error_message: str | None = None
        self.error_type: str | None = None
        if not run_state:  # a job just added: nothing has run yet (the enqueue hot path)
            self.attempts_made = self.progress = self.step = 0
            self.started_at = self.finished_at = None
            return
        rs = run_state
        self.attempts_made = int(rs.get("a", 0))
        self.progress = int(rs.get("p", 0))
        raw_result = rs.get("r")
        if raw_result not in (None, b"", ""):
            self.result = json.loads(raw_result)
        if rs.get("em") is not None:
            self.error_message = _s(rs["em"])
        if rs.get("et") is not None:
            self.error_type = _s(rs["et"])
        self.started_at = _ms_to_dt(rs.get("ts"))
        self.finished_at = _ms_to_dt(rs.get("tf"))
        self.step = int(rs.get("ws", 0))
        parent_base, parent_id = rs.get("pb"), rs.get("pi")
        if parent_base is not None and parent_id is not None:
            self.parent = f"{queue_of_base(_s(parent_base))}:{_s(parent_id)}"

    @classmethod
    def from_record(cls, queue: JobQueue, job_id: str, record: JobRecord) -> Job:
        """A job as `Scripts.get_job` read it (a corrupt envelope shows as an empty job, so
        that it can still be seen and removed)."""
        try:
            env = decode_envelope(record.envelope)
        except InvalidJobError:
            env = {"n": "", "d": None}
        return cls(queue, job_id, env, state=record.state, run_state=record.run_state)

    @classmethod
    def from_taken(cls, queue: JobQueue, taken: TakenJob, env: dict[str, Any]) -> Job:
        """The running job a take handed a worker: its attempt, its step and its lease token."""
        # no run state to parse (the worker's hot path): the two fields a take gives are set
        job = cls(
            queue, taken.job_id, env, state=JobState.ACTIVE, token=taken.token,
            attempt=taken.attempt,
        )  # fmt: skip
        job.attempts_made = taken.attempt - 1
        job.step = taken.step
        return job

    def __repr__(self) -> str:
        return f"<Job {self._queue.name}:{self.id} {self.name} {self.state}>"

    @property
    def queue(self) -> JobQueue:
        """The queue this job belongs to."""
        return self._queue

    @property
    def cancelled(self) -> bool:
        """True once someone asked to cancel this running job."""
        return self.cancel_reason is not None

    async def update_progress(self, progress: int) -> None:
        """Record progress 0..100 of the running attempt (fenced by its lease).

        Raises:
            InvalidJobError: progress is not an int within 0..100.
            LeaseLostError: this worker no longer holds the job.
        """
        if isinstance(progress, bool) or not isinstance(progress, int) or not 0 <= progress <= 100:
            raise InvalidJobError(f"progress must be an int within 0..100, got {progress!r}")
        if self.token is None:
            raise LeaseLostError(f"job {self.id} is not running in this process")
        await self._queue.scripts.progress(self.id, self.token, progress)
        self.progress = progress
        if self._on_progress is not None:
            self._on_progress(self, progress)

    async def settle(self, usage: Mapping[str, float]) -> None:
        """Charge what this attempt really used (e.g. the tokens of a model call) to its
        queue's shared limiter. The first settle of an attempt also refunds the cost its start
        reserved; call it after each call the attempt makes.

        Args:
            usage: bucket name -> amount used, e.g. `{"requests": 1, "input_tokens": 812}`.

        Raises:
            ConfigError: the queue has no shared limiter, or a bucket it does not have.
            LeaseLostError: this worker no longer holds the job (nothing written).
        """
        config = self._queue.config
        encoded = config.check_cost(usage, what="usage")
        if self.token is None:
            raise LeaseLostError(f"job {self.id} is not running in this process")
        assert config.limiter is not None  # check_cost refused a queue without one
        await self._queue.scripts.settle(
            self.id, self.token, encoded, buckets=config.limiter.encode_buckets()
        )

    async def reserve(self, cost: Mapping[str, float]) -> float:
        """Hold more of the queue's shared limiter for this attempt's next call, once its size
        is known (e.g. from its prompt, beyond what the job's cost reserved at start). The
        amount is spent at once, even into debt, so other jobs wait behind it; the next
        `settle` gives it back and charges the real usage.

        Args:
            cost: bucket name -> amount, e.g. `{"requests": 1, "input_tokens": 5200}`.

        Returns:
            Seconds until the buckets could pay it: wait that long before the call to stay
            within the limits (0: at once).

        Raises:
            ConfigError: the queue has no shared limiter, or a bucket it does not have.
            UnrecoverableError: a bucket's capacity is below the amount: the call can never
                fit (error type VALIDATION_ERROR; nothing held).
            LeaseLostError: this worker no longer holds the job (nothing written).
        """
        config = self._queue.config
        encoded = config.check_cost(cost, what="reservation")
        if self.token is None:
            raise LeaseLostError(f"job {self.id} is not running in this process")
        assert config.limiter is not None  # check_cost refused a queue without one
        wait, bucket, capacity = await self._queue.scripts.reserve(
            self.id, self.token, encoded, buckets=config.limiter.encode_buckets()
        )
        if bucket is not None:
            raise UnrecoverableError(
                f"job {self.id} needs {dict(cost).get(bucket)} {bucket} for one call, more than "
                f"limiter {config.limiter.name!r} allows ({capacity:g} per "
                f"{config.limiter.buckets[bucket].per:g}s): it can never fit",
                error_type=ErrorType.VALIDATION_ERROR,
            )
        return wait

    async def get_state(self) -> JobState | None:
        """The job's current state, read from Redis (None once it was removed)."""
        return await self._queue.get_job_state(self.id)

    async def log(self, line: str) -> int:
        """Append a line to the job's log (kept with the job: the newest 1000 lines, each cut
        to 4 KB). Returns the number of lines.

        Raises:
            JobNotFoundError: the job no longer exists.
        """
        return await self._queue.add_job_log(self.id, line)

    async def get_logs(self, start: int = 0, end: int = -1) -> list[str]:
        """Lines `start..end` of the job's log (inclusive), oldest first."""
        return await self._queue.get_job_logs(self.id, start, end)

    async def retry(self) -> None:
        """Move this failed job back to waiting, attempts reset to 0 (its error is kept).

        Raises:
            JobNotFoundError: the job no longer exists.
            QueueStateError: the job has not failed.
        """
        await self._queue.retry_job(self.id)
        self.state = JobState.WAITING
        self.attempts_made = 0

    async def cancel(self, reason: str = "cancelled", *, children: bool = False) -> CancelOutcome:
        """Cancel this job, and with `children` every job of its flow under it (see
        `Queue.cancel`): "removed", "signalled", "finished" or "not_found"."""
        return await self._queue.cancel(self.id, reason, children=children)

    async def add_children(self, children: Sequence[Child]) -> list[str]:
        """Add children to this running job (a dynamic flow), atomically, under its lease.

        The job goes on running; it waits for them when its handler raises `WaitForChildren`
        (`await job.wait_for_children()`), and then runs again (`step` one higher) once every
        child has ended, reading their results with `children_results()`. Children may have
        children of their own, on any queue of this job's hash slot (as for
        `Queue.add_flow`); `on_failure` works as for a flow's children (a `"fail"` child that
        fails while the job runs fails it when it waits).

        Idempotent per child id, so a handler retried after an error or a crash adds nothing
        twice: a child the job already has (waiting, running or ended) is left as it is with
        everything under it. A child without `job_id` gets one derived from this job, its
        `step` and its order among the children this run added (`<queue>:<id>:<step>.<n>`),
        the same for a handler that adds the same children in the same order.

        Args:
            children: at least one `Child`.

        Returns:
            The children's references `"<queue>:<id>"` (the keys of `children_results()`),
            in order.

        Raises:
            LeaseLostError: this worker no longer holds the job (nothing written).
            QueueStateError: the job is being cancelled (nothing written).
            InvalidJobError: a bad child, or a child id taken by a job that is not this
                job's child (nothing written).
            CrossSlotFlowError: a child's queue is not in this job's hash slot.
        """
        if self.token is None:
            raise LeaseLostError(f"job {self.id} is not running in this process")
        try:
            refs = await self._queue._add_children(
                self.id,
                self.token,
                children,
                id_prefix=f"{self._queue.name}:{self.id}:{self.step}.",
                first=self._children_added,
            )
        except QueueStateError:
            # cancelled while it ran: the worker ends the attempt as CANCELLED, not retried
            if self.cancel_reason is None:
                self.cancel_reason = "cancelled"
            raise
        self._children_added += len(refs)
        return refs

    async def wait_for_children(self) -> NoReturn:
        """End this attempt by waiting for the children added with `add_children`: raises
        `WaitForChildren`, which the worker records (let it propagate). No attempt is spent."""
        raise WaitForChildren(f"job {self.id} waits for its children")

    async def children_results(self) -> dict[str, Any]:
        """The results of this flow parent's completed children, by `"<queue>:<id>"`.

        Complete once the parent runs (every child has ended); a child that failed is not
        here (see `children_failures`). For a job that added children in several steps:
        the children of every step so far.
        """
        raw = await self._queue.redis.hgetall(self._queue.keys.children_results(self.id))
        return {_s(k): json.loads(v) for k, v in raw.items()}

    async def pending_children(self) -> list[str]:
        """The children this flow parent still waits for, as `"<queue>:<id>"` (empty once it
        is released, failed or removed)."""
        raw = await self._queue.redis.hkeys(self._queue.keys.dependencies(self.id))
        return sorted(_s(k) for k in raw)

    async def children_failures(self) -> dict[str, ChildFailure]:
        """The children with `on_failure="continue"` that failed (or were cancelled or
        removed), by `"<queue>:<id>"`."""
        raw = await self._queue.redis.hgetall(self._queue.keys.children_failures(self.id))
        out = {}
        for k, v in raw.items():
            value = json.loads(v)
            out[_s(k)] = ChildFailure(str(value.get("et") or ""), str(value.get("em") or ""))
        return out

    async def remove(self) -> bool:
        """Delete this job if it is not running (see `Queue.remove`)."""
        return await self._queue.remove(self.id)

    async def wait_until_finished(
        self, timeout: float | None = None, *, block: float = DEFAULT_BLOCK
    ) -> Any:
        """Wait for the job to end, without polling (blocking reads of the event stream).

        Args:
            timeout: seconds to wait at most (None = no limit).
            block: seconds per blocking read of the event stream; after each read that saw
                nothing the job's state is read again (a safety net should the stream be
                trimmed past the reader).

        Returns:
            The handler's result once the job completed.

        Raises:
            JobFailedError: the job failed (for good: retries are waited for).
            JobNotFoundError: the job does not exist or was removed.
            TimeoutError: `timeout` passed first.
        """
        return await wait_for_job(self._queue, self.id, timeout, block=block)
