"""What a `job_status` row is: its statuses, the row type, and the rules both writers follow.

Two writers change `job_status`: handlers, through `create_job_status` / `update_job_status`
(`pipeline.status`), usually inside the transaction of their own domain update (pass `conn=`)
so a reader never sees one without the other; and the status mirror (`pipeline.mirror`), which
folds the queues' event streams into rows (`pipeline.status_fold`). Both build on this module,
which depends on neither. The rules:

* **Versions.** A row stores the stream id `(event_ms, event_seq)` of the last event applied.
  An event not newer than it is ignored, so replays and late deliveries change nothing.
  Direct updates do not touch the version (they are not stream events).
* **Finished rows stay finished.** A `completed`/`failed`/`cancelled` row is not moved back to
  `waiting`/`active` by a direct update (unless `force=True`) nor by a non-final event; a
  final event (`completed`/`failed`) still replaces it, and a re-`added` job (an `added` event
  on a row the mirror had already seen) starts over. This matters when a handler finished its
  row directly while the mirror was still catching up on that job's older events.
* **Progress never decreases while a job stays in one status**; it restarts at 0 when a job
  goes back to waiting and is 100 once completed.
* **No secrets or NULs in rows**: error texts are redacted (`pipeline.db.clean_text`), stripped
  of NUL (PostgreSQL rejects it in text) and truncated.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

__all__ = ["FINISHED", "STATUSES", "UNKNOWN_JOB_TYPE", "JobStatusName", "JobStatusRow"]

JobStatusName = Literal["waiting", "active", "completed", "failed", "cancelled"]
#: Every status a row may have.
STATUSES: frozenset[str] = frozenset(get_args(JobStatusName))
#: Statuses a job does not leave by itself (only a re-enqueue or a forced update moves it).
FINISHED: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
#: job_type of rows the mirror creates for jobs whose `added` event it never saw.
UNKNOWN_JOB_TYPE = "unknown"


class JobStatusRow(BaseModel):
    """One `job_status` row.

    Attributes:
        job_id: the queue's job id.
        queue: queue name, when known.
        job_type: the job name (stage), or "unknown" for a job only seen by the mirror.
        related_id: the domain object the job works on (e.g. a sector analysis id).
        status: waiting, active, completed, failed or cancelled (the job failed as CANCELLED:
            `Queue.cancel` stopped it, or its run was cancelled; or it was removed from its
            queue by the cancel of its run, `pipeline.cancel`).
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
        """True when the job completed, failed or was cancelled."""
        return self.status in FINISHED
