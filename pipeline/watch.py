"""Watched sectors: a schedule that re-runs a sector's research (`python -m pipeline watch`).

A watch is a scheduler of the `sector-research` queue (`jobqueue` schedules: exactly one job
per tick across every workers process, missed ticks coalesced into one) whose job, named
`watch`, starts a new run of the sector with `start_sector_research`. The run's id is derived
from the tick's job id, so a retried `watch` job starts the same run, not a second one.
The workers of the `sector-research` queue tick the schedules and run the `watch` jobs.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID, uuid5

from pydantic import BaseModel, Field

from jobqueue import Job, Queue, Schedule
from pipeline.budget import check_usd
from pipeline.flow import start_sector_research, validate_payload
from pipeline.runtime import Runtime

__all__ = [
    "WATCH_JOB",
    "WATCH_QUEUE",
    "WatchPayload",
    "add_watch",
    "list_watches",
    "remove_watch",
    "watch_handler",
    "watch_id",
]

WATCH_QUEUE = "sector-research"
"""The queue whose schedulers hold the watches (and whose workers run their jobs)."""
WATCH_JOB = "watch"
"""The name of a watch's job."""
_RUNS = UUID("6f1c0a52-3c1e-4d7e-9a8b-2f5d7c3e9b10")  # namespace of runs started by a watch


class WatchPayload(BaseModel):
    """The data of a `watch` job: which sector to run again, for whom, on what budget."""

    sector_name: str = Field(min_length=1, max_length=200)
    user_id: str = Field(min_length=1, max_length=200)
    budget_usd: float | None = None


def watch_id(sector_name: str) -> str:
    """The scheduler id of a sector's watch (one watch per sector): `watch.<slug>`."""
    slug = re.sub(r"[^a-z0-9]+", "-", sector_name.strip().lower()).strip("-")[:80]
    return f"watch.{slug or 'sector'}"


async def add_watch(
    queue: Queue,
    sector_name: str,
    *,
    cron: str,
    tz: str = "UTC",
    user_id: str = "watcher",
    budget_usd: float | None = None,
) -> Schedule:
    """Watch a sector: start a run of it on each tick of `cron` in `tz` (again for the same
    sector: its schedule is replaced; the same schedule keeps its next run).

    Raises:
        PayloadError: a bad sector name or user id.
        ConfigError: a bad cron expression, time zone or budget (nothing written).
    """
    if budget_usd is not None:
        budget_usd = check_usd(budget_usd, "budget_usd")
    probe = validate_payload(
        "sector-research",
        {"sector_analysis_id": UUID(int=0), "user_id": user_id, "sector_name": sector_name},
    )
    data = WatchPayload(
        sector_name=probe.model_dump()["sector_name"], user_id=user_id, budget_usd=budget_usd
    )
    limiter = queue.config.limiter
    return await queue.upsert_scheduler(
        watch_id(data.sector_name),
        cron=cron,
        tz=tz,
        name=WATCH_JOB,
        data=data.model_dump(mode="json"),
        # it calls no model: it reserves nothing of the model's shared limits
        cost={bucket: 0 for bucket in limiter.buckets} if limiter else None,
    )


async def list_watches(queue: Queue) -> list[Schedule]:
    """The watches, soonest next run first."""
    return [s for s in await queue.get_schedulers() if s.name == WATCH_JOB]


async def remove_watch(queue: Queue, scheduler_id: str) -> bool:
    """Stop a watch by its id (or its sector's name); False when there was none."""
    for candidate in (scheduler_id, watch_id(scheduler_id)):
        found = await queue.get_scheduler(candidate)
        if found is not None and found.name == WATCH_JOB:
            return await queue.remove_scheduler(candidate)
    return False


def watch_handler(rt: Runtime) -> Callable[[Job], Awaitable[dict[str, Any]]]:
    """The handler of `watch` jobs: start the sector's run (once per tick, even if retried)."""

    async def handler(job: Job) -> dict[str, Any]:
        p = WatchPayload.model_validate(job.data)
        run_id = await start_sector_research(
            p.sector_name,
            p.user_id,
            budget_usd=p.budget_usd,
            run_id=uuid5(_RUNS, job.id),
            runtime=rt,
        )
        return {"run_id": str(run_id)}

    return handler
