"""Run events: the payload of one, and its enqueueing where a run ends.

`emit_run_ended(rt, run_id, status)` is called by every writer that makes a run's status
final (the fan-in of the stages, the research's failure hook, the budget's end of a stopped
run, `cancel_run`), inside that writer's transaction when it has one. The job id is the
event's (`run.completed:<run>`): a writer that runs again (at-least-once) enqueues nothing
more, and the message keeps one `webhook-id` on every try. The delivery checks the run's
committed status before it sends (`pipeline.webhooks.delivery`), so an event whose
transaction rolled back is not sent until its run really ends so.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from jobqueue import Job
from pipeline.db import clean_text
from pipeline.runtime import Runtime
from pipeline.webhooks.queue import WEBHOOK_JOB

__all__ = [
    "EVENTS",
    "EVENT_OF_STATUS",
    "emit_run_ended",
    "event_job_id",
    "message_id",
    "run_event_payload",
]

#: The event of each final status of a run.
EVENT_OF_STATUS: dict[str, str] = {
    "completed": "run.completed",
    "failed": "run.failed",
    "cancelled": "run.cancelled",
    "budget_exceeded": "run.budget_exceeded",
}
#: Every event type sent.
EVENTS: tuple[str, ...] = tuple(EVENT_OF_STATUS.values())

_RUN = """
SELECT id, user_id, sector_name, status, user_tier, budget_usd, spent_usd, error_message,
       created_at, completed_at, cancelled_at, budget_exceeded_at
FROM sector_analysis WHERE id = $1
"""
_SUBS = """
SELECT status, count(*) AS n FROM sub_sector WHERE sector_analysis_id = $1 GROUP BY status
"""
_STOCKS = """
SELECT s.status, count(*) AS n FROM stock s JOIN sub_sector ss ON ss.id = s.sub_sector_id
WHERE ss.sector_analysis_id = $1 AND ss.status NOT IN ('awaiting_approval') GROUP BY s.status
"""


def event_job_id(run_id: UUID, event: str) -> str:
    """The job id of one event of one run: the same every time it is emitted."""
    return f"{event}:{run_id}"


def message_id(run_id: UUID, event: str) -> str:
    """The `webhook-id` of one event of one run, the same on every try."""
    return f"msg_{run_id}_{event}"


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _usd(value: Any) -> float | None:
    return None if value is None else round(float(value), 6)


async def run_event_payload(
    conn: asyncpg.Connection | asyncpg.Pool, run_id: UUID, event: str
) -> dict[str, Any] | None:
    """The Standard Webhooks payload of an event: `{"type", "timestamp", "data"}`, `data`
    summarising the run (sub-sectors and stocks by status, spend against budget). None when
    the run does not exist."""
    row = await conn.fetchrow(_RUN, run_id)
    if row is None:
        return None
    subs = {r["status"]: int(r["n"]) for r in await conn.fetch(_SUBS, run_id)}
    stocks = {r["status"]: int(r["n"]) for r in await conn.fetch(_STOCKS, run_id)}
    data: dict[str, Any] = {
        "run_id": str(row["id"]),
        "sector": row["sector_name"],
        "user_id": row["user_id"],
        "user_tier": row["user_tier"],
        "status": row["status"],
        "created_at": _iso(row["created_at"]),
        "completed_at": _iso(row["completed_at"]),
        "cancelled_at": _iso(row["cancelled_at"]),
        "budget_exceeded_at": _iso(row["budget_exceeded_at"]),
        "error": clean_text(row["error_message"], 500),
        "sub_sectors": {"total": sum(subs.values()), "by_status": subs},
        "stocks": {"total": sum(stocks.values()), "by_status": stocks},
        "spent_usd": _usd(row["spent_usd"]),
        "budget_usd": _usd(row["budget_usd"]),
    }
    return {
        "type": event,
        "timestamp": _iso(datetime.now(UTC)),
        "data": data,
    }


async def emit_run_ended(
    rt: Runtime,
    run_id: UUID | None,
    status: str | None,
    *,
    conn: asyncpg.Connection | None = None,
) -> Job | None:
    """Enqueue the webhook of a run that ended with `status` (once per run and event).

    A no-op when webhooks are off (`PIPELINE_WEBHOOK_URL` unset: no queue traffic at all) or
    the status is not final.

    Args:
        rt: The runtime (its `webhooks` queue).
        run_id: The run.
        status: Its final status (`completed`, `failed`, `cancelled`, `budget_exceeded`).
        conn: The writer's connection, inside the transaction that ended the run (the payload
            reads what it wrote); default: the pool.

    Returns:
        The delivery job, None when nothing was enqueued.
    """
    event = EVENT_OF_STATUS.get(status or "")
    if rt.webhooks is None or run_id is None or event is None:
        return None
    payload = await run_event_payload(conn if conn is not None else rt.pool, run_id, event)
    if payload is None:
        return None
    return await rt.webhooks.add(
        WEBHOOK_JOB,
        {
            "msg_id": message_id(run_id, event),
            "event": event,
            "run_id": str(run_id),
            "payload": payload,
        },
        job_id=event_job_id(run_id, event),
    )
