"""The AI stock-analysis pipeline on `jobqueue`: five stages, their status in PostgreSQL.

from pipeline import enqueue, start_sector_research, approve_subsector, cancel_run
run_id = await start_sector_research("Technology", user_id="u1")
rows = await get_jobs_by_related_id(str(run_id))
await cancel_run(run_id)  # nothing of the run starts or calls the model any more
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from pipeline.cancel import CancelRefusedError, CancelResult, cancel_run
    from pipeline.cancelled import RunCancelledError
    from pipeline.flow import (
        PayloadError,
        approve_subsector,
        enqueue,
        enqueue_many,
        start_sector_research,
    )
    from pipeline.settings import Settings, get_settings
    from pipeline.status import (
        JobStatusRow,
        create_job_status,
        get_job_status,
        get_jobs_by_related_id,
        update_job_status,
    )

# Imported on first use, so `python -m pipeline.db` and friends start without importing the
# whole application (and without runpy's warning about a module imported twice).
_LAZY = {
    "CancelRefusedError": "pipeline.cancel",
    "CancelResult": "pipeline.cancel",
    "cancel_run": "pipeline.cancel",
    "RunCancelledError": "pipeline.cancelled",
    "PayloadError": "pipeline.flow",
    "approve_subsector": "pipeline.flow",
    "enqueue": "pipeline.flow",
    "enqueue_many": "pipeline.flow",
    "start_sector_research": "pipeline.flow",
    "Settings": "pipeline.settings",
    "get_settings": "pipeline.settings",
    "JobStatusRow": "pipeline.status",
    "create_job_status": "pipeline.status",
    "get_job_status": "pipeline.status",
    "get_jobs_by_related_id": "pipeline.status",
    "update_job_status": "pipeline.status",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CancelRefusedError",
    "CancelResult",
    "CleanupResult",
    "JobStatusRow",
    "PayloadError",
    "RunCancelledError",
    "Settings",
    "approve_subsector",
    "cancel_run",
    "cleanup_old_jobs",
    "create_job_status",
    "enqueue",
    "enqueue_many",
    "get_job_status",
    "get_jobs_by_related_id",
    "get_settings",
    "start_sector_research",
    "update_job_status",
]


class CleanupResult(NamedTuple):
    """Finished jobs removed by `cleanup_old_jobs`: from Redis, and rows from PostgreSQL."""

    redis: int
    postgres: int


async def cleanup_old_jobs(days: float) -> CleanupResult:
    """Remove finished jobs older than `days` from every queue (Redis) and their status rows
    (PostgreSQL), using the process's runtime (from the environment)."""
    import jobqueue
    from pipeline.runtime import get_runtime
    from pipeline.status import cleanup_old_jobs_pg

    rt = await get_runtime()
    removed = await jobqueue.cleanup_old_jobs(rt.redis, days, prefix=rt.settings.prefix)
    async with rt.pool.acquire() as conn:
        rows = await cleanup_old_jobs_pg(days, conn=conn)
    return CleanupResult(redis=removed, postgres=rows)
