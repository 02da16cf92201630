"""`python -m pipeline run`: one process that runs a whole sector to the end, with live
progress per stage and a summary."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

from pipeline.db import migrate
from pipeline.flow import approve_subsector, start_sector_research
from pipeline.runtime import Runtime
from pipeline.settings import JOB_TYPES, Settings
from pipeline.workers import Workers

__all__ = ["run_sector", "servers"]

_STAGE_ROWS = """
SELECT job_type, count(*) AS total,
       count(*) FILTER (WHERE status = 'completed') AS done,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'active') AS active
FROM job_status WHERE related_id = $1 GROUP BY job_type
"""


# every job row of the run is finished (the mirror has applied their last events)
_ROWS_SETTLED = """
SELECT bool_and(status IN ('completed', 'failed')) FROM job_status WHERE related_id = $1
"""


@contextlib.contextmanager
def servers(settings: Settings) -> Iterator[Settings]:
    """Embedded Valkey / PostgreSQL for what the settings leave unset."""
    with contextlib.ExitStack() as stack:
        updates: dict[str, Any] = {}
        if not settings.redis_url:
            from pipeline.embedded import embedded_redis

            updates["redis_url"] = stack.enter_context(embedded_redis())
            print("REDIS_URL unset: started an embedded Valkey", file=sys.stderr)
        if not settings.database_url:
            from pipeline.embedded import embedded_postgres

            updates["database_url"] = stack.enter_context(embedded_postgres())
            print("DATABASE_URL unset: started an embedded PostgreSQL", file=sys.stderr)
        yield settings.model_copy(update=updates) if updates else settings


async def _stage_counts(rt: Runtime, run_id: UUID) -> dict[str, dict[str, int]]:
    rows = await rt.pool.fetch(_STAGE_ROWS, str(run_id))
    return {r["job_type"]: dict(r) for r in rows}


def _render(counts: dict[str, dict[str, int]], elapsed: float) -> Any:
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    table = Table(title=f"run progress ({elapsed:.1f}s)", expand=False)
    for col in ("stage", "", "done", "active", "failed"):
        table.add_column(col)
    for stage in JOB_TYPES:
        c = counts.get(stage, {"total": 0, "done": 0, "active": 0, "failed": 0})
        total = max(c["total"], 1)
        table.add_row(
            stage,
            ProgressBar(total=total, completed=c["done"] + c["failed"], width=30),
            f"{c['done']}/{c['total']}",
            str(c["active"]),
            str(c["failed"]),
        )
    return table


async def _follow(rt: Runtime, run_id: UUID, done: asyncio.Event, t0: float) -> None:
    """Show progress until `done` is set: rich Live on a terminal, plain lines otherwise."""
    if sys.stdout.isatty():
        from rich.live import Live

        with Live(_render({}, 0), refresh_per_second=8) as live:
            while not done.is_set():
                live.update(_render(await _stage_counts(rt, run_id), time.monotonic() - t0))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.2)
            live.update(_render(await _stage_counts(rt, run_id), time.monotonic() - t0))
        return
    last = ""
    while not done.is_set():
        counts = await _stage_counts(rt, run_id)
        line = "  ".join(
            f"{s}: {counts.get(s, {}).get('done', 0)}/{counts.get(s, {}).get('total', 0)}"
            for s in JOB_TYPES
        )
        if line != last:
            print(f"[{time.monotonic() - t0:5.1f}s] {line}", flush=True)
            last = line
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.5)


async def _wait(rt: Runtime, sql: str, arg: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await rt.pool.fetchval(sql, arg)
        if value:
            return value
        await asyncio.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:.0f}s")


async def run_sector(
    settings: Settings, sector: str, *, user_id: str, auto_approve: bool, timeout: float
) -> int:
    """Run one sector end to end in this process; print the summary; 0 when it completed."""
    from pipeline.summary import print_summary

    rt = await Runtime.create(settings)
    workers: Workers | None = None
    task: asyncio.Task[None] | None = None
    try:
        await migrate(rt.pool)
        workers = Workers(rt)
        task = asyncio.create_task(workers.run())
        t0 = time.monotonic()
        run_id = await start_sector_research(sector, user_id, runtime=rt)
        print(f"run {run_id}: researching {sector!r}", flush=True)
        done = asyncio.Event()
        follower = asyncio.create_task(_follow(rt, run_id, done, t0))
        try:
            await _wait(
                rt,
                "SELECT status IN ('awaiting_approval', 'failed', 'budget_exceeded') FROM "
                "sector_analysis WHERE id = $1",
                run_id,
                timeout,
            )
            subs = await rt.pool.fetch(
                "SELECT id, name FROM sub_sector WHERE sector_analysis_id = $1 ORDER BY name",
                run_id,
            )
            if not subs:
                print("the research failed; see the job status rows", file=sys.stderr)
                return 1
            if auto_approve:
                await approve_subsector(subs[0]["id"], runtime=rt)
            else:
                print(
                    "sub-sectors awaiting approval (approve one with "
                    "`python -m pipeline approve ID` from another shell):"
                )
                for s in subs:
                    print(f"  {s['id']}  {s['name']}")
                # flushed now: a pipe or a log file must show the ids while the run waits
                sys.stdout.flush()
            await _wait(
                rt,
                "SELECT bool_or(status IN ('completed', 'failed')) FROM sub_sector "
                "WHERE sector_analysis_id = $1",
                run_id,
                timeout,
            )
            if rt.settings.mirror:
                # the summary counts job rows: let the mirror apply the last events first
                with contextlib.suppress(TimeoutError):
                    await _wait(rt, _ROWS_SETTLED, str(run_id), min(timeout, 10.0))
        finally:
            done.set()
            await follower
        await print_summary(rt, run_id, time.monotonic() - t0)
        return 0
    except TimeoutError as exc:
        print(f"the run did not finish: {exc}", file=sys.stderr)
        return 1
    finally:
        if workers is not None and task is not None:
            await workers.close()
            await task
        await rt.close()
