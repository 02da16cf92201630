"""The job: what a handler receives and what `Queue.get_job` returns."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .core.codec import text as _s
from .errors import InvalidJobError, LeaseLostError, PayloadTooLargeError

if TYPE_CHECKING:
    from .queue import Queue

__all__ = ["Job", "JobState", "decode_envelope", "dumps"]


class JobState(StrEnum):
    """Where a job is in its life."""

    WAITING = "waiting"
    PAUSED = "paused"
    DELAYED = "delayed"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"


TERMINAL_STATES = frozenset({JobState.COMPLETED, JobState.FAILED})


def dumps(value: Any, *, limit: int, what: str) -> str:
    """Strict JSON (no NaN, no sets or objects) within `limit` bytes, else a typed error."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidJobError(f"{what} is not JSON-serializable: {exc}") from None
    size = len(text.encode())
    if size > limit:
        raise PayloadTooLargeError(f"{what} is {size} bytes of JSON, over the limit of {limit}")
    return text


def decode_envelope(raw: bytes | str) -> dict[str, Any]:
    """Parse a stored job envelope; raises InvalidJobError when it is not a JSON object."""
    try:
        env = json.loads(raw)
    except ValueError as exc:
        raise InvalidJobError(f"stored job is not valid JSON: {exc}") from None
    if not isinstance(env, dict) or "n" not in env:
        raise InvalidJobError("stored job is not a job envelope")
    return env


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
        result: the handler's return value once completed.
        error_message, error_type: of the last failed attempt.
        created_at, started_at, finished_at: UTC datetimes from the Redis clock.
        attempt: (in a handler) the number of the attempt running now, from 1.
        token: (in a handler) the fencing token of this attempt's lease.
    """

    __slots__ = (
        "_queue",
        "attempt",
        "attempts_made",
        "cancel_reason",
        "created_at",
        "data",
        "error_message",
        "error_type",
        "finished_at",
        "id",
        "max_attempts",
        "name",
        "priority",
        "progress",
        "result",
        "started_at",
        "state",
        "token",
    )

    def __init__(
        self,
        queue: Queue,
        job_id: str,
        envelope: Mapping[str, Any],
        *,
        state: JobState | str = JobState.WAITING,
        run_state: Mapping[str, Any] | None = None,
        token: str | None = None,
        attempt: int = 0,
    ) -> None:
        self._queue = queue
        self.id = job_id
        self.name: str = envelope["n"]
        self.data: Any = envelope.get("d")
        self.max_attempts: int = int(envelope.get("at", queue.config.attempts))
        self.priority: int = int(envelope.get("p", 0))
        self.created_at = _ms_to_dt(envelope.get("ts"))
        self.state = JobState(state)
        self.token = token
        self.attempt = attempt
        self.cancel_reason: str | None = None
        rs = run_state or {}
        self.attempts_made = int(rs.get("a", 0))
        self.progress = int(rs.get("p", 0))
        raw_result = rs.get("r")
        self.result: Any = json.loads(raw_result) if raw_result not in (None, b"", "") else None
        self.error_message: str | None = _s(rs["em"]) if rs.get("em") is not None else None
        self.error_type: str | None = _s(rs["et"]) if rs.get("et") is not None else None
        self.started_at = _ms_to_dt(rs.get("ts"))
        self.finished_at = _ms_to_dt(rs.get("tf"))

    def __repr__(self) -> str:
        return f"<Job {self._queue.name}:{self.id} {self.name} {self.state}>"

    @property
    def queue(self) -> Queue:
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
        await self._queue._update_progress(self.id, self.token, progress)
        self.progress = progress

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

    async def cancel(self, reason: str = "cancelled") -> str:
        """Cancel this job (see `Queue.cancel`): "removed", "signalled", "finished" or
        "not_found"."""
        return await self._queue.cancel(self.id, reason)

    async def remove(self) -> bool:
        """Delete this job if it is not running (see `Queue.remove`)."""
        return await self._queue.remove(self.id)

    async def wait_until_finished(self, timeout: float | None = None) -> Any:
        """Wait for the job to end, without polling (blocking reads of the event stream).

        Args:
            timeout: seconds to wait at most (None = no limit).

        Returns:
            The handler's result once the job completed.

        Raises:
            JobFailedError: the job failed (for good: retries are waited for).
            JobNotFoundError: the job does not exist or was removed.
            TimeoutError: `timeout` passed first.
        """
        from .events import wait_for_job

        return await wait_for_job(self._queue, self.id, timeout)
