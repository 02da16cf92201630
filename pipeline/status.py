"""Job status rows in PostgreSQL: the API handlers and web code use.

`create_job_status`, `get_job_status`, `get_jobs_by_related_id`, `update_job_status`,
`cancel_job_rows` and `cleanup_old_jobs_pg`; pass `conn=` to join the transaction of a domain
update, so a reader never sees one without the other. The rules every writer of `job_status`
follows (versions, finished rows stay finished, progress never decreases, no secrets in rows)
are described in `pipeline.status_model`; the status mirror's side (folding engine events
into rows) lives in `pipeline.status_fold`, whose `StatusChange` and `apply_changes` are
re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .db import Connection, acquire, clean_text
from .status_fold import StatusChange, apply_changes
from .status_model import (
    FINISHED,
    STATUSES,
    UNKNOWN_JOB_TYPE,
    JobStatusName,
    JobStatusRow,
)

__all__ = [
    "FINISHED",
    "UNKNOWN_JOB_TYPE",
    "JobStatusName",
    "JobStatusRow",
    "StatusChange",
    "apply_changes",
    "cancel_job_rows",
    "cleanup_old_jobs_pg",
    "create_job_status",
    "get_job_status",
    "get_jobs_by_related_id",
    "update_job_status",
]

_COLUMNS = (
    "job_id, queue, job_type, related_id, status, progress, error_message, error_type, "
    "attempts, event_ms, event_seq, created_at, updated_at"
)


def _row(record: Any) -> JobStatusRow:
    return JobStatusRow.model_validate(dict(record))


async def create_job_status(
    job_id: str,
    job_type: str,
    related_id: str | None = None,
    *,
    queue: str | None = None,
    conn: Connection | None = None,
) -> JobStatusRow:
    """Create the row of a job as `waiting`; calling it again changes nothing.

    When the row exists already (a retried enqueue, or the mirror was faster and created it
    from the `added` event) its status is left alone; only the fields the mirror cannot know
    are filled in when missing: `related_id`, `queue`, and a `job_type` of "unknown".

    Args:
        job_id: the queue's job id.
        job_type: the job name (stage).
        related_id: the domain object the job works on.
        queue: the queue's name.
        conn: a connection whose transaction to join; else the shared pool is used.

    Returns:
        The row as stored.
    """
    sql = f"""
        INSERT INTO job_status AS j (job_id, job_type, related_id, queue, status)
        VALUES ($1, $2, $3, $4, 'waiting')
        ON CONFLICT (job_id) DO UPDATE SET
            related_id = COALESCE(j.related_id, excluded.related_id),
            queue = COALESCE(j.queue, excluded.queue),
            job_type = CASE WHEN j.job_type = '{UNKNOWN_JOB_TYPE}'
                            THEN excluded.job_type ELSE j.job_type END
        RETURNING {_COLUMNS}
    """
    async with acquire(conn) as c:
        record = await c.fetchrow(sql, job_id, clean_text(job_type, 200), related_id, queue)
    return _row(record)


async def get_job_status(job_id: str, *, conn: Connection | None = None) -> JobStatusRow | None:
    """Return the row of a job, or None when there is none.

    Args:
        job_id: the queue's job id.
        conn: a connection to use; else the shared pool.
    """
    async with acquire(conn) as c:
        record = await c.fetchrow(f"SELECT {_COLUMNS} FROM job_status WHERE job_id = $1", job_id)
    return None if record is None else _row(record)


async def get_jobs_by_related_id(
    related_id: str, *, conn: Connection | None = None
) -> list[JobStatusRow]:
    """Return the rows of every job working on `related_id`, oldest first.

    Args:
        related_id: the domain object's id.
        conn: a connection to use; else the shared pool.
    """
    sql = f"SELECT {_COLUMNS} FROM job_status WHERE related_id = $1 ORDER BY created_at, job_id"
    async with acquire(conn) as c:
        records = await c.fetch(sql, related_id)
    return [_row(r) for r in records]


async def update_job_status(
    job_id: str,
    *,
    status: JobStatusName | None = None,
    progress: int | None = None,
    error_message: str | None = None,
    error_type: str | None = None,
    attempts: int | None = None,
    force: bool = False,
    conn: Connection | None = None,
) -> JobStatusRow | None:
    """Change a job's row directly; None arguments leave their column unchanged.

    Rules (skipped with `force=True`): an update moving a completed/failed/cancelled row back to
    waiting/active is ignored as a whole; without a status change progress only increases;
    becoming `completed` sets progress to 100 unless `progress` is given.

    Args:
        job_id: the queue's job id.
        status: new status.
        progress: new progress, 0..100.
        error_message: error text (redacted before it is stored).
        error_type: error type.
        attempts: attempts started so far.
        force: apply exactly what is given, even backwards.
        conn: a connection whose transaction to join; else the shared pool is used.

    Returns:
        The row after the call (unchanged when the update was refused), or None when the job
        has no row.

    Raises:
        ValueError: an unknown status, progress outside 0..100 or negative attempts.
    """
    if status is not None and status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {sorted(STATUSES)}")
    if progress is not None and not 0 <= progress <= 100:
        raise ValueError(f"progress {progress!r} is outside 0..100")
    if attempts is not None and attempts < 0:
        raise ValueError(f"attempts {attempts!r} is negative")
    sql = f"""
        UPDATE job_status AS j SET
            status = COALESCE($2, j.status),
            progress = CASE
                WHEN $3::int IS NULL THEN
                    CASE WHEN $2 = 'completed' AND j.status <> 'completed' THEN 100
                         ELSE j.progress END
                WHEN $7 OR COALESCE($2, j.status) <> j.status THEN $3
                ELSE GREATEST(j.progress, $3) END,
            error_message = COALESCE($4, j.error_message),
            error_type = COALESCE($5, j.error_type),
            attempts = COALESCE($6, j.attempts),
            updated_at = now()
        WHERE j.job_id = $1
          AND ($7 OR $2::text IS NULL OR $2 IN ('completed', 'failed', 'cancelled')
               OR j.status NOT IN ('completed', 'failed', 'cancelled'))
        RETURNING {_COLUMNS}
    """
    args = (job_id, status, progress, clean_text(error_message), clean_text(error_type, 200))
    async with acquire(conn) as c:
        record = await c.fetchrow(sql, *args, attempts, force)
        if record is None:
            # Either no such job or a refused backwards move: report the row as it is.
            return await get_job_status(job_id, conn=c)
    return _row(record)


async def cancel_job_rows(
    job_ids: Sequence[str], reason: str, *, conn: Connection | None = None
) -> int:
    """Mark the rows of jobs that were removed from their queue by a cancel (no event will
    finish them) `cancelled`; finished rows stay as they are.

    Args:
        job_ids: the jobs.
        reason: the error message recorded.
        conn: a connection to use; else the shared pool.

    Returns:
        The number of rows changed.
    """
    if not job_ids:
        return 0
    sql = """
        UPDATE job_status SET status = 'cancelled', error_type = 'CANCELLED',
            error_message = $2, updated_at = now()
        WHERE job_id = ANY($1::text[]) AND status IN ('waiting', 'active')
    """
    async with acquire(conn) as c:
        result = await c.execute(sql, list(job_ids), clean_text(reason))
    return int(result.rsplit(" ", 1)[-1])


async def cleanup_old_jobs_pg(days: float, *, conn: Connection | None = None) -> int:
    """Delete completed/failed/cancelled rows not updated for `days` days; waiting/active rows stay.

    Args:
        days: age threshold in days (fractions allowed).
        conn: a connection to use; else the shared pool.

    Returns:
        The number of rows deleted.

    Raises:
        ValueError: `days` is negative.
    """
    if days < 0:
        raise ValueError(f"days {days!r} is negative")
    sql = """
        DELETE FROM job_status
        WHERE status IN ('completed', 'failed', 'cancelled')
          AND updated_at < now() - make_interval(secs => $1::float8 * 86400)
    """
    async with acquire(conn) as c:
        result = await c.execute(sql, float(days))
    return int(result.rsplit(" ", 1)[-1])
