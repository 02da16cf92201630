"""`python -m pipeline run SECTOR [SECTOR ...]`: several sectors at once in this process.

One runtime and one set of in-process workers serve every run; each sector is a run of its own
(`start_sector_research`), followed concurrently through its phases (`pipeline.demo.drive_run`),
so a run that fails or times out leaves the others going. One live view (a row per run and a
totals row on a terminal, plain lines when they change otherwise) and one summary at the end:
per run its status, sub-sector, stocks and cost, then the totals (`pipeline.run_totals`). With
one sector the view and the summary are the detailed ones of `pipeline.demo` and
`pipeline.summary`, followed by the same totals.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from pipeline.cli_args import shown
from pipeline.db import migrate
from pipeline.demo import drive_run, follow_run
from pipeline.flow import PayloadError, start_sector_research, validate_payload
from pipeline.run_totals import command_totals, take_baseline
from pipeline.runtime import Runtime
from pipeline.settings import JOB_TYPES, Settings
from pipeline.tracing import end_run_span, run_span, start_run_span
from pipeline.workers import Workers

__all__ = ["check_sectors", "run_sectors"]

_SHORT = {
    "sector-research": "research",
    "stock-ranking": "ranking",
    "stock-analysis": "analysis",
    "judge-review": "judge",
    "format-insights": "insights",
}
_ENDED = ("completed", "failed", "budget_exceeded", "cancelled")

_JOB_COUNTS = """
SELECT related_id, job_type, count(*) AS total,
       count(*) FILTER (WHERE status = 'completed') AS done,
       count(*) FILTER (WHERE status = 'failed') AS failed
FROM job_status WHERE related_id = ANY($1::text[]) GROUP BY related_id, job_type
"""
_RUN_ROWS = "SELECT id, status, spent_usd FROM sector_analysis WHERE id = ANY($1::uuid[])"
_SUMMARY_ROWS = """
SELECT a.id, a.status, a.spent_usd,
  (SELECT string_agg(ss.name || CASE WHEN ss.status = 'completed' THEN ''
                                     ELSE ' (' || ss.status || ')' END, ', ' ORDER BY ss.name)
     FROM sub_sector ss WHERE ss.sector_analysis_id = a.id
      AND ss.status <> 'awaiting_approval') AS subs,
  (SELECT count(*) FROM sub_sector ss WHERE ss.sector_analysis_id = a.id
      AND ss.status = 'awaiting_approval') AS awaiting,
  (SELECT count(*) FILTER (WHERE s.status = 'completed') FROM stock s
     JOIN sub_sector ss ON ss.id = s.sub_sector_id WHERE ss.sector_analysis_id = a.id) AS done,
  (SELECT count(*) FILTER (WHERE s.status = 'failed') FROM stock s
     JOIN sub_sector ss ON ss.id = s.sub_sector_id WHERE ss.sector_analysis_id = a.id) AS failed,
  (SELECT coalesce(sum(u.cost_usd), 0) FROM llm_usage u WHERE u.related_id = a.id::text) AS cost
FROM sector_analysis a WHERE a.id = ANY($1::uuid[])
"""


def _key(sector: str) -> str:
    # the universe finds sectors case-insensitively: "Energy" and " energy" are one sector
    return " ".join(sector.split()).casefold()


def check_sectors(sectors: Sequence[str], *, user_id: str = "u") -> str | None:
    """Why these sectors cannot be run (a duplicate, a bad name, a bad user id), or None when
    they can."""
    seen: dict[str, str] = {}
    for sector in sectors:
        first = seen.setdefault(_key(sector), sector)
        if first is not sector:
            same = "" if first == sector else f" (as {first!r})"
            return f"sector {shown(sector)} is given twice{same}: give each sector once"
    for sector in sectors:
        try:
            validate_payload(
                "sector-research",
                {"sector_analysis_id": UUID(int=0), "user_id": user_id, "sector_name": sector},
            )
        except PayloadError as exc:
            return f"sector {shown(sector)}: {exc}"
    return None


@dataclass
class _Run:
    sector: str
    run_id: UUID | None = None
    error: str | None = None  # why it was not followed to its end
    span: Any = None  # its root span, when tracing is on


@dataclass
class _Progress:
    status: str = "-"
    spent: float = 0.0
    failed: int = 0
    stages: dict[str, tuple[int, int]] = field(default_factory=dict)  # (done, total)


async def _progress(rt: Runtime, runs: Sequence[_Run]) -> dict[UUID, _Progress]:
    ids = [r.run_id for r in runs if r.run_id is not None]
    out = {i: _Progress() for i in ids}
    for row in await rt.pool.fetch(_RUN_ROWS, ids):
        out[row["id"]].status, out[row["id"]].spent = row["status"], float(row["spent_usd"])
    for row in await rt.pool.fetch(_JOB_COUNTS, [str(i) for i in ids]):
        p = out[UUID(row["related_id"])]
        p.stages[row["job_type"]] = (row["done"], row["total"])
        p.failed += row["failed"]
    return out


def _cells(p: _Progress) -> list[str]:
    return [f"{p.stages.get(t, (0, 0))[0]}/{p.stages.get(t, (0, 0))[1]}" for t in JOB_TYPES]


def _render(runs: Sequence[_Run], progress: dict[UUID, _Progress], elapsed: float) -> Any:
    from rich.table import Table

    table = Table(title=f"{len(runs)} runs ({elapsed:.1f}s)", expand=False)
    for col in ("sector", "status", *(_SHORT.get(t, t) for t in JOB_TYPES), "failed", "spent"):
        table.add_column(col)
    total = _Progress()
    for run in runs:
        p = progress.get(run.run_id or UUID(int=0), _Progress(status="not started"))
        table.add_row(run.sector, p.status, *_cells(p), str(p.failed), f"${p.spent:.2f}")
        total.spent += p.spent
        total.failed += p.failed
        for t, (done, n) in p.stages.items():
            was = total.stages.get(t, (0, 0))
            total.stages[t] = (was[0] + done, was[1] + n)
    ended = sum(1 for p in progress.values() if p.status in _ENDED)
    table.add_section()
    table.add_row(
        "total", f"{ended}/{len(runs)} ended", *_cells(total), str(total.failed),
        f"${total.spent:.2f}", style="bold",
    )  # fmt: skip
    return table


async def _follow(rt: Runtime, runs: Sequence[_Run], done: asyncio.Event, t0: float) -> None:
    """Show every run's progress until `done` is set: rich Live on a terminal, else a plain
    line per run whenever its line changes."""
    if sys.stdout.isatty():
        from rich.live import Live

        with Live(_render(runs, {}, 0), refresh_per_second=4) as live:
            while not done.is_set():
                live.update(_render(runs, await _progress(rt, runs), time.monotonic() - t0))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.25)
            live.update(_render(runs, await _progress(rt, runs), time.monotonic() - t0))
        return
    last: dict[UUID, str] = {}
    while True:
        finished = done.is_set()  # then one last pass: the log ends with the final state
        for run_id, p in (await _progress(rt, runs)).items():
            sector = next(r.sector for r in runs if r.run_id == run_id)
            stages = "  ".join(f"{t}: {c}" for t, c in zip(JOB_TYPES, _cells(p), strict=True))
            line = f"{sector} ({p.status}): {stages}  failed: {p.failed}  spent: ${p.spent:.2f}"
            if line != last.get(run_id):
                print(f"[{time.monotonic() - t0:5.1f}s] {line}", flush=True)
                last[run_id] = line
        if finished:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.5)


async def _drive(rt: Runtime, run: _Run, *, auto_approve: bool, timeout: float, many: bool) -> None:
    """Follow one run; whatever happens to it is recorded on it, never raised to the others."""
    if run.run_id is None:
        end_run_span(run.span, None, run.error)
        return
    label = f"{run.sector}: " if many else ""
    try:
        with run_span(run.span):  # the auto-approval's job joins the run's trace
            run.error = await drive_run(
                rt, run.run_id, auto_approve=auto_approve, timeout=timeout, label=label
            )
    except Exception as exc:  # one run's failure (e.g. its database call) stops it alone
        run.error = f"error: {type(exc).__name__}: {exc}"
        print(f"{label}the run failed: {run.error}", file=sys.stderr)
    finally:
        end_run_span(run.span, run.run_id, run.error)


async def _print_runs(rt: Runtime, runs: Sequence[_Run], console: Any) -> None:
    """The table of the runs: status, sub-sector, stocks completed/failed (of the approved
    sub-sector), cost (`llm_usage`; what the budget counted beside it, offline)."""
    from rich.table import Table

    ids = [r.run_id for r in runs if r.run_id is not None]
    rows = {r["id"]: r for r in await rt.pool.fetch(_SUMMARY_ROWS, ids)}
    table = Table(title="runs")
    table.add_column("sector")
    table.add_column("run", no_wrap=True)  # whole: it is what `status RUN_ID` takes
    table.add_column("status")
    table.add_column("sub-sector", overflow="fold")
    table.add_column("stocks\ndone/failed")
    table.add_column("cost")
    for run in runs:
        row = rows.get(run.run_id)
        if row is None:
            table.add_row(run.sector, "-", f"not started: {run.error}", "-", "-", "-")
            continue
        status = row["status"]
        # those two the status says already
        if run.error not in (None, "the research failed", "cancelled"):
            status += f", {run.error}"
        awaiting = f"- ({row['awaiting']} awaiting approval)" if row["awaiting"] else "-"
        stocks = f"{row['done']}/{row['failed']}"
        cost = f"${row['cost']:.4f}"
        if not row["cost"] and row["spent_usd"]:  # offline: only the budget prices the calls
            cost += f" (budget ${row['spent_usd']:.2f})"
        table.add_row(run.sector, str(run.run_id), status, row["subs"] or awaiting, stocks, cost)
    console.print()
    console.print(table)


async def run_sectors(
    settings: Settings,
    sectors: Sequence[str],
    *,
    user_id: str,
    auto_approve: bool,
    timeout: float,
) -> int:
    """Run these sectors concurrently to their end in this process; print one summary.

    Args:
        settings: Where Redis and PostgreSQL are, and the pipeline's settings.
        sectors: The sectors, each once.
        user_id: Who asks.
        auto_approve: Approve each run's first sub-sector instead of waiting for a user.
        timeout: Seconds each phase of each run may last.

    Returns:
        The exit code: 0 when every run completed, 1 when one did not (failed, stopped by its
        budget, timed out), 2 for a usage error (`check_sectors`; nothing is started).
    """
    from rich.console import Console

    from pipeline.summary import print_summary

    problem = check_sectors(sectors, user_id=user_id)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    rt = await Runtime.create(settings)
    workers: Workers | None = None
    task: asyncio.Task[None] | None = None
    try:
        await migrate(rt.pool)
        workers = Workers(rt)
        task = asyncio.create_task(workers.run())
        baseline = await take_baseline(rt)
        t0 = time.monotonic()
        runs = [_Run(sector) for sector in sectors]
        for run in runs:
            run.span = start_run_span(run.sector)  # one trace per run, when tracing is on
            try:
                with run_span(run.span):
                    run.run_id = await start_sector_research(run.sector, user_id, runtime=rt)
            except Exception as exc:  # the others start all the same
                run.error = f"{type(exc).__name__}: {exc}"
                print(f"{run.sector}: the run did not start: {run.error}", file=sys.stderr)
                continue
            print(f"run {run.run_id}: researching {run.sector!r}", flush=True)
        single = runs[0] if len(runs) == 1 else None
        done = asyncio.Event()
        view = (
            follow_run(rt, single.run_id, done, t0)
            if single is not None and single.run_id is not None
            else _follow(rt, runs, done, t0)
        )
        follower = asyncio.create_task(view)
        try:
            many = single is None
            await asyncio.gather(
                *(
                    _drive(rt, r, auto_approve=auto_approve, timeout=timeout, many=many)
                    for r in runs
                )
            )
        finally:
            done.set()
            await follower
        seconds = time.monotonic() - t0
        console = Console(width=None if sys.stdout.isatty() else 120)
        started = [r.run_id for r in runs if r.run_id is not None]
        if single is not None and single.run_id is not None and single.error in (None, "cancelled"):
            await print_summary(rt, single.run_id, seconds)
        elif single is None:
            await _print_runs(rt, runs, console)
        totals = await command_totals(rt, started, baseline, seconds)
        console.print("[bold]totals[/bold]")
        for line in totals.lines(cached=single is None or single.error is not None):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        ok = all(r.error is None for r in runs) and totals.completed == len(runs)
        return 0 if ok else 1
    finally:
        if workers is not None and task is not None:
            await workers.close()
            await task
        await rt.close()
