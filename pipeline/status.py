"""Job status rows in PostgreSQL: the API handlers use, and the rules every writer follows.

Two writers change `job_status`: handlers, through `create_job_status` / `update_job_status`,
usually inside the transaction of their own domain update (pass `conn=`) so a reader never sees
one without the other; and the status mirror (`pipeline.mirror`), through `apply_changes`, from
the queues' event streams. The rules both follow live here:

* **Versions.** A row stores the stream id `(event_ms, event_seq)` of the last event applied.
  An event not newer than it is ignored, so replays and late deliveries change nothing.
  Direct updates do not touch the version (they are not stream events).
* **Finished rows stay finished.** A `completed`/`failed` row is not moved back to
  `waiting`/`active` by a direct update (unless `force=True`) nor by a non-final event; a
  final event (`completed`/`failed`) still replaces it, and a re-`added` job (an `added` event
  on a row the mirror had already seen) starts over. This matters when a handler finished its
  row directly while the mirror was still catching up on that job's older events.
* **Progress never decreases while a job stays in one status**; it restarts at 0 when a job
  goes back to waiting and is 100 once completed.
* **No secrets or NULs in rows**: error texts are redacted (`pipeline.db.redact`), stripped of
  NUL (PostgreSQL rejects it in text) and truncated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict

from .db import Connection, acquire, clean_text

__all__ = [
    "FINISHED",
    "UNKNOWN_JOB_TYPE",
    "JobStatusName",
    "JobStatusRow",
    "StatusChange",
    "apply_changes",
    "cleanup_old_jobs_pg",
    "create_job_status",
    "get_job_status",
    "get_jobs_by_related_id",
    "update_job_status",
]

JobStatusName = Literal["waiting", "active", "completed", "failed"]
STATUSES: frozenset[str] = frozenset(get_args(JobStatusName))
FINISHED: frozenset[str] = frozenset({"completed", "failed"})
#: job_type of rows the mirror creates for jobs whose `added` event it never saw.
UNKNOWN_JOB_TYPE = "unknown"

_COLUMNS = (
    "job_id, queue, job_type, related_id, status, progress, error_message, error_type, "
    "attempts, event_ms, event_seq, created_at, updated_at"
)


class JobStatusRow(BaseModel):
    """One `job_status` row.

    Attributes:
        job_id: the queue's job id.
        queue: queue name, when known.
        job_type: the job name (stage), or "unknown" for a job only seen by the mirror.
        related_id: the domain object the job works on (e.g. a sector analysis id).
        status: waiting, active, completed or failed.
        progress: 0..100.
        error_message: last error, redacted.
        error_type: last error's type.
        attempts: attempts started so far.
        event_ms: ms part of the stream id of the last event applied (0 = none yet).
        event_seq: sequence part of that stream id.
        created_at: when the row was created.
        updated_at: when the row last changed.
    """

    model_config = ConfigDict(frozen=True)

    job_id: str
    queue: str | None
    job_type: str
    related_id: str | None
    status: JobStatusName
    progress: int
    error_message: str | None
    error_type: str | None
    attempts: int
    event_ms: int
    event_seq: int
    created_at: datetime
    updated_at: datetime

    @property
    def finished(self) -> bool:
        """True when the job completed or failed."""
        return self.status in FINISHED


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

    Rules (skipped with `force=True`): an update moving a completed/failed row back to
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
          AND ($7 OR $2::text IS NULL OR $2 IN ('completed', 'failed')
               OR j.status NOT IN ('completed', 'failed'))
        RETURNING {_COLUMNS}
    """
    args = (job_id, status, progress, clean_text(error_message), clean_text(error_type, 200))
    async with acquire(conn) as c:
        record = await c.fetchrow(sql, *args, attempts, force)
        if record is None:
            # Either no such job or a refused backwards move: report the row as it is.
            return await get_job_status(job_id, conn=c)
    return _row(record)


async def cleanup_old_jobs_pg(days: float, *, conn: Connection | None = None) -> int:
    """Delete completed/failed rows not updated for `days` days; waiting/active rows stay.

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
        WHERE status IN ('completed', 'failed')
          AND updated_at < now() - make_interval(secs => $1::float8 * 86400)
    """
    async with acquire(conn) as c:
        result = await c.execute(sql, float(days))
    return int(result.rsplit(" ", 1)[-1])


# --- Mirror side: folding stream events into rows ---------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One change for a row: a stream event or a reconcile snapshot (`kind="snapshot"`).

    Attributes:
        version: `(ms, seq)` of the stream id (for a snapshot, the last id it reflects).
        kind: event name (`added`, `active`, ...) or `snapshot`.
        state: `st` of the event; for a snapshot, the job_status status it maps to.
        name, attempt, progress, error_type, error_message: the event's `name`, `a`, `p`,
            `et`, `em` (or the snapshot's fields), numbers in range and texts cleaned.
    """

    job_id: str
    queue: str | None
    version: tuple[int, int]
    kind: str
    name: str | None = None
    state: str | None = None
    attempt: int | None = None
    progress: int | None = None
    error_type: str | None = None
    error_message: str | None = None


@dataclass(slots=True)
class _State:
    job_id: str
    queue: str | None
    job_type: str
    status: str = "waiting"
    progress: int = 0
    attempts: int = 0
    error_message: str | None = None
    error_type: str | None = None
    version: tuple[int, int] = (0, 0)
    dirty: bool = False


# Events that may create a row for a job PostgreSQL does not know; `removed` or an unknown
# event name alone must not conjure up a row.
_CREATING = {"added", "active", "progress", "completed", "retrying", "failed", "stalled"}
_CREATING |= {"returned", "snapshot"}


def _requeue(s: _State, ch: StatusChange, default_type: str | None = None) -> None:
    s.status, s.progress = "waiting", 0
    if ch.attempt is not None:
        s.attempts = ch.attempt
    if ch.kind != "returned":
        s.error_type = ch.error_type or default_type
        s.error_message = ch.error_message


def _finish(s: _State, ch: StatusChange, status: str, default_type: str | None = None) -> None:
    s.status = status
    if ch.attempt is not None:
        s.attempts = ch.attempt
    if status == "completed":
        s.progress, s.error_type, s.error_message = 100, None, None
    else:
        s.error_type = ch.error_type or default_type
        s.error_message = ch.error_message


def _fold(s: _State | None, ch: StatusChange) -> _State | None:
    """Apply one change to a row's state (None = no row); returns the new state."""
    if s is None:
        if ch.kind not in _CREATING:
            return None
        s = _State(ch.job_id, ch.queue, ch.name or UNKNOWN_JOB_TYPE)
    elif ch.version <= s.version:
        return s  # late, replayed or duplicate: already reflected
    seen = s.version != (0, 0)
    s.version, s.dirty = ch.version, True
    if ch.queue:
        s.queue = ch.queue
    if ch.name and s.job_type == UNKNOWN_JOB_TYPE:
        s.job_type = ch.name
    finished = s.status in FINISHED
    kind, state = ch.kind, ch.state
    if kind == "snapshot" and state in FINISHED:
        _finish(s, ch, state)
        if state == "failed" and ch.progress is not None:
            s.progress = ch.progress
    elif kind in ("completed", "failed"):
        _finish(s, ch, kind)
    elif kind == "stalled" and state == "failed":
        _finish(s, ch, "failed", "STALLED")
    elif kind == "added":
        # On a row already seen this is a re-enqueue of a removed job: a new life. On a row
        # the mirror never saw it is the original add arriving after direct updates: no-op.
        if seen:
            s.status, s.progress, s.attempts = "waiting", 0, 0
            s.error_type = s.error_message = None
    elif finished:
        # A non-final event older (in real time) than a directly written final status.
        if ch.attempt is not None:
            s.attempts = max(s.attempts, ch.attempt)
    elif kind == "active":
        s.status = "active"
        if ch.attempt is not None:
            s.attempts = ch.attempt
    elif kind == "progress" and ch.progress is not None:
        # A progress report proves the job runs (its `active` event may have been trimmed).
        s.progress = max(s.progress, ch.progress) if s.status == "active" else ch.progress
        s.status = "active"
    elif kind in ("retrying", "stalled", "returned"):
        _requeue(s, ch, "STALLED" if kind == "stalled" else None)
    elif kind == "snapshot" and state in ("waiting", "active"):
        s.status = state
        s.progress = ch.progress or 0
        s.attempts = ch.attempt if ch.attempt is not None else s.attempts
        s.error_type, s.error_message = ch.error_type, ch.error_message
    return s


_LOCK_ROWS = """
    SELECT job_id, queue, job_type, status, progress, attempts, error_message, error_type,
           event_ms, event_seq
    FROM job_status WHERE job_id = ANY($1::text[]) ORDER BY job_id FOR UPDATE
"""

# The WHERE guard keeps a concurrent writer's newer row (one that did not exist when the rows
# were locked) from being overwritten by an older computation.
_UPSERT = f"""
    INSERT INTO job_status AS j (job_id, queue, job_type, status, progress, attempts,
                                 error_message, error_type, event_ms, event_seq)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[],
                         $7::text[], $8::text[], $9::bigint[], $10::bigint[])
    ON CONFLICT (job_id) DO UPDATE SET
        queue = COALESCE(excluded.queue, j.queue),
        job_type = CASE WHEN excluded.job_type = '{UNKNOWN_JOB_TYPE}'
                        THEN j.job_type ELSE excluded.job_type END,
        status = excluded.status, progress = excluded.progress, attempts = excluded.attempts,
        error_message = excluded.error_message, error_type = excluded.error_type,
        event_ms = excluded.event_ms, event_seq = excluded.event_seq, updated_at = now()
    WHERE (excluded.event_ms, excluded.event_seq) > (j.event_ms, j.event_seq)
"""


_FIELDS = ("job_id", "queue", "job_type", "status", "progress", "attempts", "error_message")


def _columns(states: Sequence[_State]) -> list[list[Any]]:
    """The rows as the column arrays `_UPSERT` unnests."""
    cols = [[getattr(s, name) for s in states] for name in (*_FIELDS, "error_type")]
    return [*cols, [s.version[0] for s in states], [s.version[1] for s in states]]


async def apply_changes(conn: Connection, changes: Iterable[StatusChange]) -> int:
    """Fold changes into their rows and write them: two statements whatever the batch size.

    The rows are locked first (in id order, so concurrent writers cannot deadlock), every
    change of a job is folded in version order in Python, then all changed rows are written
    by one multi-row upsert. Runs in a transaction (a savepoint inside the caller's).

    Args:
        conn: the connection to use.
        changes: events and snapshots, in any order.

    Returns:
        The number of rows written.
    """
    by_job: dict[str, list[StatusChange]] = {}
    for ch in changes:
        by_job.setdefault(ch.job_id, []).append(ch)
    if not by_job:
        return 0
    ids = sorted(by_job)
    async with conn.transaction():
        states: dict[str, _State | None] = dict.fromkeys(ids)
        for r in await conn.fetch(_LOCK_ROWS, ids):
            states[r["job_id"]] = _State(
                r["job_id"], r["queue"], r["job_type"], r["status"], r["progress"],
                r["attempts"], r["error_message"], r["error_type"],
                (r["event_ms"], r["event_seq"]),
            )  # fmt: skip
        for job_id in ids:
            state = states[job_id]
            for ch in sorted(by_job[job_id], key=lambda c: c.version):
                state = _fold(state, ch)
            states[job_id] = state
        dirty = [s for s in states.values() if s is not None and s.dirty]
        if not dirty:
            return 0
        result = await conn.execute(_UPSERT, *_columns(dirty))
    return int(result.rsplit(" ", 1)[-1])
