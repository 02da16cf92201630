"""`python -m pipeline`: run sectors end to end, approve a sub-sector, show or cancel a run,
watch a sector on a schedule, list webhook deliveries, migrate."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from pipeline import tracing
from pipeline.cli_args import USAGE_ERRORS, count, fail, positive_seconds, shown
from pipeline.settings import get_settings

__all__ = ["main"]


_RUN_EXIT_CODES = """exit codes:
  0  every run completed
  1  a run did not complete: its research failed, its budget ran out, its sub-sector
     failed, it was cancelled (`python -m pipeline cancel RUN_ID`), or a phase timed out
     (the other runs go on to their end all the same)
  2  a usage error: a sector given twice, a bad sector name (nothing is started)"""

_CANCEL_EXIT_CODES = """exit codes:
  0  the run is cancelled (by this call, or by an earlier one: cancelling twice is allowed)
  1  refused: the run already ended (completed, failed, budget_exceeded); nothing changed
  2  a usage error: no such run, not a run id, REDIS_URL or DATABASE_URL unset"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run one or more sectors to the end in this process",
        description="Run each sector as a run of its own, concurrently, on workers in this "
        "process, with live progress and one summary (per run, then totals: spend, cached "
        "input, 429s, breaker openings, wall time).",
        epilog=_RUN_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "sectors",
        nargs="+",
        metavar="SECTOR",
        help='sector name, e.g. "Technology"; several run concurrently, each once',
    )
    run.add_argument("--user-id", default="demo-user")
    run.add_argument(
        "--auto-approve",
        action="store_true",
        help="approve each run's first sub-sector without waiting for a user",
    )
    run.add_argument("--timeout", type=positive_seconds, default=1800.0, help="seconds per phase")
    approve = sub.add_parser("approve", help="approve a sub-sector (enqueues its ranking)")
    approve.add_argument("sub_sector_id")
    status = sub.add_parser("status", help="a run's status and its job status rows")
    status.add_argument("run_id")
    cancel = sub.add_parser(
        "cancel",
        help="cancel a run: nothing of it starts or calls the model any more",
        description="Mark the run cancelled, then cancel its jobs on every machine: waiting "
        "and delayed ones are removed, running ones are stopped. From the mark on, no model "
        "call of the run is sent (one in flight may finish) and nothing is enqueued for it.",
        epilog=_CANCEL_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cancel.add_argument("run_id")
    sub.add_parser("migrate", help="apply schema.sql")
    hooks = sub.add_parser("webhooks", help="the latest webhook deliveries, one line per try")
    hooks.add_argument("--run", dest="run_id", default=None, help="only this run's")
    hooks.add_argument("--limit", type=count, default=50)
    watch = sub.add_parser(
        "watch",
        help="re-run a sector on a cron schedule (or --list, --remove ID)",
        description="Register a schedule that starts a new run of SECTOR on each tick (the "
        "workers of the sector-research queue tick it: python -m pipeline.workers).",
    )
    watch.add_argument("sector", nargs="?", metavar="SECTOR")
    watch.add_argument("--cron", help='cron expression, e.g. "0 6 * * 1-5"')
    watch.add_argument("--tz", default="UTC", help="IANA time zone of the cron (default UTC)")
    watch.add_argument("--user-id", default="watcher")
    watch.add_argument("--budget-usd", type=float, default=None, help="budget of each run")
    watch.add_argument("--list", action="store_true", help="list the watches")
    watch.add_argument("--remove", metavar="ID", help="stop a watch (its id or its sector)")
    return p


async def _watch(args: argparse.Namespace) -> int:
    from jobqueue import JobQueueError, Queue
    from pipeline.watch import WATCH_QUEUE, add_watch, list_watches, remove_watch

    settings = get_settings()
    assert settings.redis_url is not None
    queue = Queue(
        settings.queue_config(WATCH_QUEUE), redis=settings.redis_url, prefix=settings.prefix
    )
    try:
        if args.list:
            for s in await list_watches(queue):
                print(
                    f"{s.id:32} {s.data['sector_name']!r:24} {s.cron} ({s.tz})  "
                    f"next {s.next_run.isoformat(timespec='seconds')}"
                )
            return 0
        if args.remove:
            if not await remove_watch(queue, args.remove):
                return fail(f"no watch {shown(args.remove)}")
            print(f"watch {args.remove} removed")
            return 0
        try:
            s = await add_watch(
                queue,
                args.sector,
                cron=args.cron,
                tz=args.tz,
                user_id=args.user_id,
                budget_usd=args.budget_usd,
            )
        except (JobQueueError, ValueError) as exc:
            return fail(str(exc))
        print(
            f"watch {s.id}: {s.data['sector_name']!r} on {s.cron} ({s.tz}); "
            f"next run {s.next_run.isoformat(timespec='seconds')}"
        )
        return 0
    finally:
        await queue.close()


async def _approve(sub_sector_id: str) -> int:
    from pipeline.cancelled import RunCancelledError
    from pipeline.flow import PayloadError, approve_subsector
    from pipeline.runtime import close_runtime

    try:
        job = await approve_subsector(sub_sector_id)
        print(f"approved; ranking job {job.id}")
        return 0
    except (PayloadError, RunCancelledError, ValueError) as exc:
        return fail(str(exc))
    finally:
        await close_runtime()


async def _cancel(run_id: str) -> int:
    from pipeline.cancel import CancelRefusedError, cancel_run
    from pipeline.runtime import close_runtime

    try:
        result = await cancel_run(run_id)
    except CancelRefusedError as exc:
        return fail(str(exc), 2 if exc.status is None else 1)
    finally:
        await close_runtime()
    for line in result.lines():
        print(line)
    return 0


async def _webhooks(run_id: str | None, limit: int) -> int:
    from uuid import UUID

    from pipeline.db import close_pool, get_pool
    from pipeline.webhooks.log import list_deliveries

    try:
        rid = UUID(run_id) if run_id else None
    except ValueError:
        return fail(f"not a run id: {shown(run_id)}")
    pool = await get_pool(get_settings().database_url)
    try:
        tries = await list_deliveries(pool, run_id=rid, limit=limit)
    finally:
        await close_pool()
    for t in tries:
        print(t.line())
    if not tries:
        print("no webhook deliveries")
    return 0


async def _status(run_id: str) -> int:
    from uuid import UUID

    from pipeline.budget_report import get_day_budget, get_run_budget
    from pipeline.db import close_pool, get_pool
    from pipeline.status import get_jobs_by_related_id
    from pipeline.usage_report import cached_share_line

    try:
        rid = UUID(run_id)
    except ValueError:
        return fail(f"not a run id: {shown(run_id)}")
    settings = get_settings()
    pool = await get_pool(settings.database_url)
    try:
        run = await pool.fetchrow(
            "SELECT status, cancelled_at FROM sector_analysis WHERE id = $1", rid
        )
        if run is not None:
            when = f" at {run['cancelled_at']:%Y-%m-%d %H:%M:%S %Z}" if run["cancelled_at"] else ""
            print(f"run {run_id} is {run['status']}{when}")
        for row in await get_jobs_by_related_id(run_id):
            err = f"  {row.error_type}: {row.error_message}" if row.error_type else ""
            print(f"{row.job_type:16} {row.status:9} {row.progress:3}%  {row.job_id}{err}")
        if cached := await cached_share_line(pool, run_id):
            print(cached)
        budget = await get_run_budget(pool, rid)
        if budget is not None:
            print(budget.line())
            if settings.daily_budget_usd is not None:
                day = await get_day_budget(pool, settings.budget_org, settings.daily_budget_usd)
                print(day.line())
    finally:
        await close_pool()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m pipeline`."""
    args = _parser().parse_args(argv)
    try:
        get_settings()
    except USAGE_ERRORS as exc:  # a bad environment variable: named, no traceback
        return fail(f"bad settings: {exc}")
    try:
        return _main(args)
    except USAGE_ERRORS as exc:  # a bad URL or prefix in the environment
        return fail(str(exc))


def _main(args: argparse.Namespace) -> int:
    from pipeline.logs import configure_logging

    settings = get_settings()
    if args.command == "run":
        from pipeline.demo import servers
        from pipeline.run_many import check_sectors, run_sectors

        # refused before any server starts: nothing is written for a usage error
        problem = check_sectors(args.sectors, user_id=args.user_id)
        if problem is not None:
            return fail(problem)
        # the live progress owns the terminal: only warnings, printed above it (console lines
        # on a terminal, JSON lines when stderr is a pipe or a file)
        configure_logging(fmt=settings.log_format, level="WARNING")
        provider = tracing.setup()  # only when the OTEL_* variables ask for an exporter
        try:
            with servers(settings) as s:
                return asyncio.run(
                    run_sectors(
                        s,
                        args.sectors,
                        user_id=args.user_id,
                        auto_approve=args.auto_approve,
                        timeout=args.timeout,
                    )
                )
        finally:
            tracing.shutdown(provider)
    # cancel prints what it did: the engine's line per job cancelled would only repeat it
    level = "WARNING" if args.command == "cancel" else settings.log_level
    configure_logging(fmt=settings.log_format, level=level)
    if args.command == "watch" and not (args.list or args.remove or (args.sector and args.cron)):
        print("error: give SECTOR and --cron, or --list, or --remove ID", file=sys.stderr)
        return 2
    # approve, cancel, status and watch act on a run that lives somewhere: no embedded servers
    needed = {
        "approve": ("REDIS_URL", "DATABASE_URL"),
        "cancel": ("REDIS_URL", "DATABASE_URL"),
        "status": ("DATABASE_URL",),
        "webhooks": ("DATABASE_URL",),
        "watch": ("REDIS_URL",),
    }
    urls = {"REDIS_URL": settings.redis_url, "DATABASE_URL": settings.database_url}
    missing = [name for name in needed.get(args.command, ()) if not urls[name]]
    if missing:
        print(f"error: set {' and '.join(missing)}", file=sys.stderr)
        return 2
    if args.command == "approve":
        provider = tracing.setup()  # the approved sub-sector's jobs: a trace of their own
        try:
            return asyncio.run(_approve(args.sub_sector_id))
        finally:
            tracing.shutdown(provider)
    if args.command == "status":
        return asyncio.run(_status(args.run_id))
    if args.command == "watch":
        return asyncio.run(_watch(args))
    if args.command == "cancel":
        return asyncio.run(_cancel(args.run_id))
    if args.command == "webhooks":
        return asyncio.run(_webhooks(args.run_id, args.limit))
    from pipeline.db import main as db_main

    return db_main(["migrate"])


if __name__ == "__main__":
    raise SystemExit(main())
