"""`Schedule`: one scheduler as stored, typed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["Schedule"]


def ms_to_datetime(ms: int) -> datetime:
    """A Redis-clock time in ms as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, UTC)


@dataclass(frozen=True, slots=True)
class Schedule:
    """One scheduler of a queue (`Queue.get_schedulers`).

    Attributes:
        id: the scheduler id.
        queue: the queue its jobs are added to.
        every: the interval in seconds, or None for a cron schedule.
        cron: the cron expression, or None for an interval.
        tz: the cron's time zone (IANA name).
        name: the name of the job each tick adds.
        data: that job's data (JSON).
        attempts: that job's attempts (None = the queue's).
        priority: that job's priority.
        next_run: when the next tick is due (Redis clock, UTC).
        last_run: the last tick produced (its scheduled time), or None.
        job_id_prefix: each tick's job id is this followed by the tick's time in ms.
    """

    id: str
    queue: str
    every: float | None
    cron: str | None
    tz: str
    name: str
    data: Any
    attempts: int | None
    priority: int
    next_run: datetime
    last_run: datetime | None

    @property
    def job_id_prefix(self) -> str:
        """Each tick's job id is `sched:<id>:<tick ms>`: this, then the tick's time in ms."""
        return f"sched:{self.id}:"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (times as ISO 8601)."""
        return {
            "id": self.id,
            "queue": self.queue,
            "every": self.every,
            "cron": self.cron,
            "tz": self.tz,
            "name": self.name,
            "data": self.data,
            "attempts": self.attempts,
            "priority": self.priority,
            "next_run": self.next_run.isoformat(),
            "last_run": self.last_run.isoformat() if self.last_run else None,
        }
