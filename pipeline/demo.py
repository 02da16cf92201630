"""`python -m pipeline run`: one process that runs a whole sector to the end, with live
progress per stage and a summary. The pieces of one run (its phases, its per-stage progress)
are here; several sectors at once are `pipeline.run_many`. The measuring scripts
(`pipeline.overhead`, `pipeline.fairness_figure`) run theirs on a `scratch_runtime`."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pipeline.cancelled import RunCancelledError
from pipeline.flow import approve_subsector
from pipeline.runtime import Runtime
from pipeline.settings import JOB_TYPES, Settings

if TYPE_CHECKING:
    from pipeline.workers import Workers

__all__ = [
    "ScratchRuntime",
    "drive_run",
    "follow_run",
    "scratch_runtime",
    "servers",
    "wait_value",
]

_STAGE_ROWS = """
SELECT job_type, count(*) AS total,
       count(*) FILTER (WHERE status = 'completed') AS done,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'active') AS active
FROM job_status WHERE related_id = $1 GROUP BY job_type
"""


# every job row of the run is finished (the mirror has applied their last events)
_ROWS_SETTLED = """
SELECT bool_and(status IN ('completed', 'failed', 'cancelled')) FROM job_status
WHERE related_id = $1
"""

# the run is past its research: awaiting approval, or ended before it
_RESEARCHED = """
SELECT status IN ('awaiting_approval', 'failed', 'budget_exceeded', 'cancelled')
FROM sector_analysis WHERE id = $1
"""

# the approved sub-sector ended, or the whole run was cancelled
_SUB_SECTOR_ENDED = """
SELECT bool_or(ss.status IN ('completed', 'failed')) OR bool_or(a.status = 'cancelled')
FROM sector_analysis a LEFT JOIN sub_sector ss ON ss.sector_analysis_id = a.id
WHERE a.id = $1
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


async def follow_run(rt: Runtime, run_id: UUID, done: asyncio.Event, t0: float) -> None:
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


async def wait_value(rt: Runtime, sql: str, arg: Any, timeout: float) -> Any:
    """Re-run `sql` until it returns something truthy (returned); TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await rt.pool.fetchval(sql, arg)
        if value:
            return value
        await asyncio.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:.0f}s")


async def drive_run(
    rt: Runtime, run_id: UUID, *, auto_approve: bool, timeout: float, label: str = ""
) -> str | None:
    """Follow a started run to its end: wait for its research, approve its first sub-sector
    (or list them for a user to approve), wait until the sub-sector ends and the mirror has
    applied the last events of its jobs.

    Args:
        rt: The runtime (its workers run elsewhere in this process, or in other processes).
        run_id: The run.
        auto_approve: Approve the first sub-sector instead of waiting for a user.
        timeout: Seconds each phase may last.
        label: Put before what is printed (the sector, when several runs share the output).

    Returns:
        None when the run was followed to its end, else why not (printed on stderr too).
    """
    try:
        await wait_value(rt, _RESEARCHED, run_id, timeout)
        subs = await rt.pool.fetch(
            "SELECT id, name FROM sub_sector WHERE sector_analysis_id = $1 ORDER BY name",
            run_id,
        )
        if await _cancelled(rt, run_id):
            print(f"{label}the run was cancelled", file=sys.stderr)
            return "cancelled"
        if not subs:
            print(f"{label}the research failed; see the job status rows", file=sys.stderr)
            return "the research failed"
        if auto_approve:
            try:
                await approve_subsector(subs[0]["id"], runtime=rt)
            except RunCancelledError:
                print(f"{label}the run was cancelled", file=sys.stderr)
                return "cancelled"
        else:
            print(
                f"{label}sub-sectors awaiting approval (approve one with "
                "`python -m pipeline approve ID` from another shell):"
            )
            for s in subs:
                print(f"  {s['id']}  {s['name']}")
            # flushed now: a pipe or a log file must show the ids while the run waits
            sys.stdout.flush()
        await wait_value(rt, _SUB_SECTOR_ENDED, run_id, timeout)
        if rt.settings.mirror:
            # the summary counts job rows: let the mirror apply the last events first
            with contextlib.suppress(TimeoutError):
                await wait_value(rt, _ROWS_SETTLED, str(run_id), min(timeout, 10.0))
        if await _cancelled(rt, run_id):
            print(f"{label}the run was cancelled", file=sys.stderr)
            return "cancelled"
        return None
    except TimeoutError as exc:
        print(f"{label}the run did not finish: {exc}", file=sys.stderr)
        return f"did not finish: {exc}"


async def _cancelled(rt: Runtime, run_id: UUID) -> bool:
    status = await rt.pool.fetchval("SELECT status FROM sector_analysis WHERE id = $1", run_id)
    return bool(status == "cancelled")


@dataclass
class ScratchRuntime:
    """A runtime of `scratch_runtime`, and its in-process workers once started."""

    rt: Runtime
    workers: Workers | None = None
    _task: asyncio.Task[None] | None = None

    def start_workers(self) -> None:
        """Run the pipeline's workers in this event loop (they are closed at the end of the
        `scratch_runtime` block)."""
        from pipeline.workers import Workers

        self.workers = Workers(self.rt)
        self._task = asyncio.create_task(self.workers.run())

    async def _close_workers(self) -> None:
        if self.workers is not None and self._task is not None:
            await self.workers.close()
            await self._task


@contextlib.asynccontextmanager
async def scratch_runtime(
    settings: Settings, prefix: str, **updates: Any
) -> AsyncIterator[ScratchRuntime]:
    """A runtime on `settings` under a fresh key prefix (`prefix` and eight random hex digits;
    `updates` override other settings), its database migrated; its workers run in this process
    once started (`ScratchRuntime.start_workers`). On exit: the workers are closed, the keys
    of the prefix deleted and the runtime closed."""
    from pipeline.db import migrate

    key_prefix = f"{prefix}{uuid.uuid4().hex[:8]}"
    rt = await Runtime.create(settings.model_copy(update={**updates, "prefix": key_prefix}))
    scratch = ScratchRuntime(rt)
    try:
        await migrate(rt.pool)
        yield scratch
    finally:
        await scratch._close_workers()
        async for key in rt.redis.scan_iter(match=f"{key_prefix}:*", count=1000):
            await rt.redis.delete(key)
        await rt.close()
