"""Folding the engine's job events (and job snapshots) into `job_status` rows.

This is the status mirror's half of `job_status`: `pipeline.mirror` moves stream entries and
acknowledges them, this module decides what they mean for a row and writes the rows, following
the rules every writer of `job_status` follows (`pipeline.status_model`). The API handlers use
is `pipeline.status`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from .db import Connection, clean_text
from .status_model import FINISHED, UNKNOWN_JOB_TYPE

__all__ = [
    "JobSnapshot",
    "StatusChange",
    "apply_changes",
    "change_from_event",
    "change_from_snapshot",
    "parse_stream_id",
]

#: The engine's error type of a job ended by a cancel: its row is `cancelled`, not `failed`.
_CANCELLED = "CANCELLED"

#: Engine states as job_status statuses; a delayed or paused job is waiting, and so is a flow
#: parent waiting for its children.
_STATES = dict.fromkeys(
    ("waiting", "paused", "delayed", "prioritized", "waiting-children"), "waiting"
)
_STATES.update(active="active", completed="completed", failed="failed")


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


class JobSnapshot(BaseModel):
    """A job's state read from the engine's job keys, used to rebuild rows after trimming.

    Attributes:
        job_id: the job id.
        name: the job name (job_type), when known.
        state: engine state: waiting, paused, delayed, prioritized, active, completed, failed.
        progress: 0..100, as last reported (the engine keeps it when a job goes back to wait).
        attempts: attempts finished (the engine's `attempts_made`); the attempt of an active
            job is counted on top, as rows count attempts started.
        error_message: last error text.
        error_type: last error type.
        version_ms, version_seq: the last stream id the snapshot reflects; may stay 0, as
            the mirror reads the stream's last id before calling `reconcile` and uses that.
    """

    model_config = ConfigDict(frozen=True)

    job_id: str
    name: str | None = None
    state: str
    progress: int = 0
    attempts: int = 0
    error_message: str | None = None
    error_type: str | None = None
    version_ms: int = 0
    version_seq: int = 0


def parse_stream_id(value: Any) -> tuple[int, int]:
    """A stream id (`<ms>-<seq>`, str or bytes) as `(ms, seq)`.

    Args:
        value: the id as Redis returned it.

    Returns:
        The id as a tuple that compares like the stream orders its entries.
    """
    text = value.decode() if isinstance(value, bytes) else str(value)
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _int(value: str | None, high: int = 2**31 - 1) -> int | None:
    """An event's number field clamped to 0..high, or None when absent or not a number."""
    try:
        return None if value is None else min(high, max(0, int(float(value))))
    except (ValueError, OverflowError):
        return None


def change_from_event(queue: str, stream_id: str, fields: Mapping[str, str]) -> StatusChange | None:
    """The change a job event stands for; None for a queue-level event (no `id`: paused,
    resumed...) or a malformed entry (no `ev`).

    Args:
        queue: the queue whose stream holds the entry.
        stream_id: the entry's id.
        fields: the entry's fields, decoded to str.

    Returns:
        The change, its numbers clamped to range and its texts cleaned.
    """
    ev, job_id = fields.get("ev"), fields.get("id")
    if not ev or not job_id:
        return None
    return StatusChange(
        job_id=job_id.replace("\x00", ""),
        queue=queue,
        version=parse_stream_id(stream_id),
        kind=ev,
        name=clean_text(fields.get("name"), 200),
        state=fields.get("st"),
        attempt=_int(fields.get("a")),
        progress=_int(fields.get("p"), 100),
        error_type=clean_text(fields.get("et"), 200),
        error_message=clean_text(fields.get("em")),
    )


def change_from_snapshot(
    queue: str, snap: JobSnapshot, last: tuple[int, int]
) -> StatusChange | None:
    """The change that sets a row to a job's snapshot, or None for an unknown engine state.

    Args:
        queue: the job's queue.
        snap: the job as read from its keys.
        last: the stream id the snapshot reflects every event up to (read before it).

    Returns:
        A `snapshot` change, versioned so that no event it already reflects can undo it.
    """
    status = _STATES.get(snap.state)
    if status is None:
        return None
    return StatusChange(
        job_id=snap.job_id,
        queue=queue,
        version=max((snap.version_ms, snap.version_seq), last),
        kind="snapshot",
        name=clean_text(snap.name, 200),
        state=status,
        # rows count attempts started, the engine attempts finished: the running one is extra
        attempt=max(0, snap.attempts) + (1 if status == "active" else 0),
        progress=min(100, max(0, snap.progress)),
        error_type=clean_text(snap.error_type, 200),
        error_message=clean_text(snap.error_message),
    )


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
    if ch.attempt is not None:
        s.attempts = ch.attempt
    if status == "completed":
        s.status = status
        s.progress, s.error_type, s.error_message = 100, None, None
    else:
        s.error_type = ch.error_type or default_type
        s.error_message = ch.error_message
        # a job stopped on purpose (`Queue.cancel`, or its run cancelled) did not fail
        s.status = "cancelled" if s.error_type == _CANCELLED else status


def _fold(s: _State | None, ch: StatusChange) -> _State | None:
    """Apply one change to a row's state (None = no row); returns the new state."""
    if s is None:
        if ch.kind not in _CREATING:
            return None
        s = _State(ch.job_id, ch.queue, ch.name or UNKNOWN_JOB_TYPE)
    elif ch.version <= s.version:
        # late, replayed or duplicate: already reflected, except the name an older event
        # carries (its `added` applied after later events by another consumer)
        if ch.name and s.job_type == UNKNOWN_JOB_TYPE:
            s.job_type, s.dirty = ch.name, True
        return s
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
    elif kind == "waiting-children":
        # a running job added children and waits for them: it runs again (its next step,
        # not a retry: attempts and errors stay) once they ended
        s.status, s.progress = "waiting", 0
    elif kind == "snapshot" and state in ("waiting", "active"):
        s.status = state
        # a waiting job's progress restarts at 0, as after a `retrying` event
        s.progress = (ch.progress or 0) if state == "active" else 0
        s.attempts = ch.attempt if ch.attempt is not None else s.attempts
        s.error_type, s.error_message = ch.error_type, ch.error_message
    return s


# Writers of several rows at once (several mirror consumers, reconcile) first take one
# transaction-scoped advisory lock per job, in the order of the lock keys: two of them touching
# a common job then run one after the other instead of locking rows (or inserting new ones)
# in orders that could deadlock. It is a statement of its own so that the next one's snapshot
# sees the rows the previous holder committed (the rows it inserted included). The two-int
# form keeps these keys apart from other locks.
_JOB_LOCK_CLASS = 0x6A53  # "jS"
_LOCK_JOBS = f"""
    SELECT count(pg_advisory_xact_lock({_JOB_LOCK_CLASS}, k))
    FROM (SELECT DISTINCT hashtext(id) AS k FROM unnest($1::text[]) AS id ORDER BY 1) AS s
"""
# Rows are looked up one id at a time through the primary key (the LIMIT keeps the planner
# from flattening the lateral join): `job_id = ANY($1)` was planned as a scan of the whole
# table, testing every row against the array, as the planner takes a parameter array for 10
# elements; with 500 ids and 20k rows that was 60 ms of server CPU per batch. The ids come
# sorted and unique, so rows are locked in id order.
_LOCK_ROWS = """
    SELECT r.* FROM unnest($1::text[]) AS u(id), LATERAL (
        SELECT job_id, queue, job_type, status, progress, attempts, error_message, error_type,
               event_ms, event_seq
        FROM job_status WHERE job_id = u.id LIMIT 1 FOR UPDATE
    ) AS r
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
       OR ((excluded.event_ms, excluded.event_seq) = (j.event_ms, j.event_seq)
           AND j.job_type = '{UNKNOWN_JOB_TYPE}' AND excluded.job_type <> j.job_type)
"""


_FIELDS = ("job_id", "queue", "job_type", "status", "progress", "attempts", "error_message")


def _columns(states: Sequence[_State]) -> list[list[Any]]:
    """The rows as the column arrays `_UPSERT` unnests."""
    cols = [[getattr(s, name) for s in states] for name in (*_FIELDS, "error_type")]
    return [*cols, [s.version[0] for s in states], [s.version[1] for s in states]]


async def apply_changes(conn: Connection, changes: Iterable[StatusChange]) -> int:
    """Fold changes into their rows and write them.

    The jobs are locked first (advisory locks in one order, so concurrent writers of the same
    jobs run one after the other and cannot deadlock), then their rows; every change of a
    job is folded in version order in Python, then all changed rows are written by one
    multi-row upsert: three statements whatever the batch size. Runs in a transaction (a
    savepoint inside the caller's).

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
        await conn.fetchval(_LOCK_JOBS, ids)
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
