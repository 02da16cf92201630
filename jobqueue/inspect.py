"""`python -m jobqueue.inspect` (also `jobqueue-inspect`): look at and act on queues.

    python -m jobqueue.inspect [--redis URL] [--prefix jq] [--json] [--watch [--interval S]]
    python -m jobqueue.inspect --check                 exit 0 when every queue has a worker
    python -m jobqueue.inspect job QUEUE ID            state, attempts, progress, error, log
    python -m jobqueue.inspect failed QUEUE [--limit N]
    python -m jobqueue.inspect retry QUEUE (ID | --all --yes)
    python -m jobqueue.inspect pause QUEUE | resume QUEUE
    python -m jobqueue.inspect cancel QUEUE ID [--reason R] --yes
    python -m jobqueue.inspect clean QUEUE --state S --older-than SECONDS --yes
    python -m jobqueue.inspect schedules [QUEUE]       schedulers, next and last runs
    python -m jobqueue.inspect remove-schedule QUEUE ID --yes

The Redis URL comes from `--redis`, else `REDIS_URL`, else redis://127.0.0.1:6379/0; its
password is never printed. With `--json` only JSON goes to stdout (logs go to stderr).
Exit codes: 0 done, 1 `--check` failed, 2 an error (one line on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import _inspect_render as render
from .core._inputs import cut, shown
from .core.codec import text as _s
from .core.connection import connect
from .core.keys import QueueKeys, validate_queue_name
from .core.redact import redact, redact_url
from .core.states import JobState
from .errors import JobQueueError
from .job import Job
from .limits.state import LimiterState
from .maintenance import discover_queues, find_queue_keys, open_queue
from .queue import Queue

__all__ = ["main", "overview"]

DEFAULT_URL = "redis://127.0.0.1:6379/0"
log = logging.getLogger(__name__)


class CliError(Exception):
    """An error reported as one line on stderr, with an exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _expected_types(keys: QueueKeys) -> dict[str, str]:
    z, h, s = "zset", "hash", "string"
    return {
        keys.wait: "list",
        keys.prio: z,
        keys.delayed: z,
        keys.active: z,
        keys.completed: z,
        keys.failed: z,
        keys.marker: z,
        keys.worker_set: z,
        keys.meta: h,
        keys.limiter: h,
        keys.priorities: h,
        keys.groups: h,
        keys.cancels: h,
        keys.limited: s,
        keys.id_counter: s,
        keys.stall_lock: s,
        keys.events: "stream",
    }


async def _foreign_key(redis: Redis, keys: QueueKeys) -> str | None:
    """Describe the first key of the queue holding a type jobqueue never writes there."""
    for key, want in _expected_types(keys).items():
        got = _s(await redis.type(key))
        if got not in ("none", want):
            return f"key {key!r} holds a {got}, not a {want}: it was not written by jobqueue"
    return None


async def _require_queue(redis: Redis, prefix: str, name: str) -> Queue:
    try:
        validate_queue_name(name)
    except JobQueueError as exc:
        raise CliError(str(exc)) from None
    keys = await find_queue_keys(redis, name, prefix=prefix)
    if keys is None:
        raise CliError(f"unknown queue {name!r} under prefix {prefix!r}")
    return await open_queue(redis, name, prefix=prefix, slot=keys.slot)


async def queue_overview(redis: Redis, prefix: str, name: str) -> dict[str, Any]:
    """Counts per state, pause flag, limits in use and live workers of one queue."""
    queue = await _require_queue(redis, prefix, name)
    counts = await queue.get_job_counts()
    limits = await queue.get_limits()
    workers = await queue.get_workers()
    rate = None
    if limits.rate_max and limits.rate_per:
        rate = {
            "max": limits.rate_max,
            "per": limits.rate_per,
            "tokens": round(limits.tokens or 0.0, 3),
            "limited_ms": limits.limited_ms,
        }
    return {
        "name": name,
        "slot": queue.keys.slot,
        "counts": counts,
        "paused": await queue.is_paused(),
        "concurrency": {"active": limits.active, "cap": limits.concurrency},
        "rate_limit": rate,
        "limiter": _limiter_dict(limits.shared) if limits.shared else None,
        "workers": [w.to_dict() for w in workers],
    }


def _limiter_dict(state: LimiterState) -> dict[str, Any]:
    breaker = state.breaker
    return {
        "name": state.name,
        "hold_ms": state.hold_ms,
        "buckets": [
            {
                "name": b.name,
                "capacity": b.capacity,
                "tokens": None if b.tokens is None else round(b.tokens, 1),
                "per": b.per,
                "learned": b.learned,
            }
            for b in state.buckets
        ],
        "breaker": None
        if breaker is None
        else {
            "state": breaker.state,
            "until": breaker.until.isoformat() if breaker.until else None,
            "recent_failures": breaker.recent_failures,
            "openings": breaker.openings,
        },
    }


async def overview(
    redis: Redis, prefix: str = "jq", queues: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """`queue_overview` of every queue under `prefix` (or of the given ones)."""
    names = list(queues) if queues else await discover_queues(redis, prefix)
    for name in queues or ():
        await _require_queue(redis, prefix, name)
    out = []
    for name in names:
        try:
            out.append(await queue_overview(redis, prefix, name))
        except ResponseError:
            problem = await _foreign_key(redis, QueueKeys(prefix, name))
            if problem is None:
                raise
            raise CliError(f"queue {name!r}: {problem}") from None
    return out


def _masked(value: Any) -> Any:
    """A JSON value with its secrets masked (`redact` of its JSON text), still JSON when the
    masked text parses (else the masked text)."""
    if value is None:
        return None
    masked = redact(json.dumps(value, ensure_ascii=False, default=str))
    try:
        return json.loads(masked)
    except ValueError:
        return masked


def _job_dict(job: Job, logs: list[str]) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "queue": job.queue.name,
        "id": job.id,
        "name": job.name,
        "state": str(job.state),
        "attempts_made": job.attempts_made,
        "max_attempts": job.max_attempts,
        "attempts": f"{job.attempts_made}/{job.max_attempts}",
        "progress": job.progress,
        "priority": job.priority,
        "error_type": job.error_type,
        "error_message": redact(job.error_message) if job.error_message is not None else None,
        # job data is user input: what it holds that looks like a secret is masked
        "result": _masked(job.result),
        "data": _masked(job.data),
        "parent": job.parent,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "log": [redact(line) for line in logs],
    }


# -- commands --------------------------------------------------------------------------------


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)


def _need_yes(args: argparse.Namespace, what: str) -> None:
    if not args.yes:
        raise CliError(f"refusing to {what} without --yes")


async def _show(redis: Redis, args: argparse.Namespace, url: str) -> int:
    if args.check:
        return await _check(redis, args)
    if not args.watch:
        data = {
            "redis": url,
            "prefix": args.prefix,
            "queues": await overview(redis, args.prefix, args.queue),
        }
        _emit(args, data, render.format_overview(data))
        return 0
    return await _watch(redis, args, url)


async def _watch(redis: Redis, args: argparse.Namespace, url: str) -> int:
    live: Any = None
    if not args.json and sys.stdout.isatty():
        try:
            from rich.live import Live

            live = Live(auto_refresh=False)
        except ImportError:
            live = None
    n = 0
    try:
        if live is not None:
            live.start()
        while True:
            data = {
                "redis": url,
                "prefix": args.prefix,
                "queues": await overview(redis, args.prefix, args.queue),
            }
            if live is not None:
                live.update(render.rich_overview(data), refresh=True)
            elif args.json:
                print(json.dumps(data, default=str), flush=True)
            else:
                print(render.format_overview(data) + "\n", flush=True)
            n += 1
            if args.count and n >= args.count:
                return 0
            await asyncio.sleep(args.interval)
    finally:
        if live is not None:
            live.stop()


async def _check(redis: Redis, args: argparse.Namespace) -> int:
    queues = await overview(redis, args.prefix, args.queue)
    if not queues:
        raise CliError(f"no queues found under prefix {args.prefix!r}", code=1)
    idle = [q["name"] for q in queues if not q["workers"]]
    if idle:
        raise CliError(f"no live worker for queue(s): {', '.join(idle)}", code=1)
    counts = {q["name"]: len(q["workers"]) for q in queues}
    _emit(
        args,
        {"ok": True, "workers": counts},
        f"ok: {len(queues)} queue(s), each with a live worker",
    )
    return 0


async def _schedules(redis: Redis, args: argparse.Namespace) -> int:
    names = [args.queue_name] if args.queue_name else await discover_queues(redis, args.prefix)
    rows = []
    for name in names:
        queue = await _require_queue(redis, args.prefix, name)
        rows += [s.to_dict() for s in await queue.get_schedulers()]
    _emit(args, rows, render.format_schedules(rows))
    return 0


async def _command(redis: Redis, args: argparse.Namespace) -> int:
    if args.command == "schedules":
        return await _schedules(redis, args)
    queue = await _require_queue(redis, args.prefix, args.queue_name)
    cmd = args.command
    if cmd == "job":
        job = await queue.get_job(args.job_id)
        if job is None:
            raise CliError(f"job {shown(args.job_id)} not found in queue {queue.name!r}")
        data = _job_dict(job, await queue.get_job_logs(job.id))
        if job.state == JobState.WAITING_CHILDREN:
            data["children_pending"] = await job.pending_children()
        _emit(args, data, render.format_job(data))
    elif cmd == "failed":
        jobs = [_job_dict(j, []) for j in await queue.get_failed_jobs(args.limit)]
        for j in jobs:
            del j["log"]
        _emit(args, jobs, render.format_failed(jobs))
    elif cmd == "retry":
        if args.all:
            _need_yes(args, f"retry every failed job of {queue.name!r}")
            n = await queue.retry_failed()
            _emit(args, {"retried": n}, f"retried {n} failed job(s) of {queue.name!r}")
        else:
            await queue.retry_job(args.job_id)
            _emit(args, {"retried": 1}, f"job {args.job_id} of {queue.name!r} is waiting again")
    elif cmd in ("pause", "resume"):
        changed = await (queue.pause() if cmd == "pause" else queue.resume())
        state = "paused" if cmd == "pause" else "resumed"
        text = (
            f"queue {queue.name!r} {state}"
            if changed
            else f"queue {queue.name!r} was already {state}"
        )
        _emit(args, {"changed": changed}, text)
    elif cmd == "cancel":
        _need_yes(args, f"cancel job {shown(args.job_id)} of {queue.name!r}")
        outcome = await queue.cancel(args.job_id, args.reason)
        if outcome == "not_found":
            raise CliError(f"job {shown(args.job_id)} not found in queue {queue.name!r}")
        _emit(args, {"outcome": outcome}, f"job {args.job_id}: {outcome}")
    elif cmd == "clean":
        _need_yes(args, f"remove {args.state} jobs of {queue.name!r}")
        removed: list[str] = []
        while True:
            batch = await queue.clean(args.state, args.older_than, limit=args.limit)
            removed += batch
            if len(batch) < args.limit:
                break
        _emit(args, {"removed": removed}, f"removed {len(removed)} {args.state} job(s)")
    elif cmd == "remove-schedule":
        _need_yes(args, f"remove schedule {shown(args.scheduler_id)} of {queue.name!r}")
        if not await queue.remove_scheduler(args.scheduler_id):
            raise CliError(f"no schedule {shown(args.scheduler_id)} on queue {queue.name!r}")
        _emit(args, {"removed": True}, f"schedule {args.scheduler_id} of {queue.name!r} removed")
    return 0


# -- entry point -----------------------------------------------------------------------------


def _seconds(text: str) -> float:
    value = float(text)  # a ValueError is argparse's usage error naming the value
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an int >= 0, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    # options valid both before and after the sub-command (SUPPRESS keeps the first given)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--redis", default=argparse.SUPPRESS, help="Redis URL (env REDIS_URL)")
    common.add_argument("--prefix", default=argparse.SUPPRESS, help="key prefix (default jq)")
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="JSON output"
    )
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)

    p = argparse.ArgumentParser(
        prog="python -m jobqueue.inspect", parents=[common], description=__doc__.split("\n")[0]
    )
    p.add_argument("--queue", action="append", metavar="NAME", help="only this queue (repeatable)")
    p.add_argument("--watch", action="store_true", help="refresh until interrupted")
    p.add_argument("--interval", type=_seconds, default=2.0, help="seconds between refreshes")
    p.add_argument("--count", type=_count, default=0, help="with --watch: stop after N refreshes")
    p.add_argument("--check", action="store_true", help="exit 0 if each queue has a live worker")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(name: str, help_: str, job_id: bool = False) -> argparse.ArgumentParser:
        s = sub.add_parser(name, parents=[common], help=help_)
        s.add_argument("queue_name", metavar="QUEUE")
        if job_id:
            s.add_argument("job_id", metavar="ID")
        return s

    cmd("job", "one job: state, attempts, progress, error, log", job_id=True)
    cmd("failed", "recent failures, newest first").add_argument("--limit", type=int, default=20)
    retry = cmd("retry", "retry one failed job, or all of them with --all --yes")
    target = retry.add_mutually_exclusive_group(required=True)
    target.add_argument("job_id", metavar="ID", nargs="?")
    target.add_argument("--all", action="store_true", help="every failed job (needs --yes)")
    retry.add_argument("--yes", action="store_true")
    cmd("pause", "stop job starts")
    cmd("resume", "start jobs again")
    cancel = cmd("cancel", "cancel a job (needs --yes)", job_id=True)
    cancel.add_argument("--reason", default="cancelled by jobqueue.inspect")
    cancel.add_argument("--yes", action="store_true")
    clean = cmd("clean", "remove old jobs of one state (needs --yes)")
    clean.add_argument(
        "--state", required=True, choices=["completed", "failed", "waiting", "delayed"]
    )
    clean.add_argument("--older-than", type=float, required=True, metavar="SECONDS")
    clean.add_argument("--limit", type=int, default=1000, help="jobs removed per batch")
    clean.add_argument("--yes", action="store_true")
    schedules = sub.add_parser("schedules", parents=[common], help="schedulers and next runs")
    schedules.add_argument("queue_name", metavar="QUEUE", nargs="?", help="default: every queue")
    unschedule = cmd("remove-schedule", "stop a scheduler (needs --yes)")
    unschedule.add_argument("scheduler_id", metavar="ID")
    unschedule.add_argument("--yes", action="store_true")
    return p


async def _run(args: argparse.Namespace, url: str) -> int:
    redis = connect(url, socket_connect_timeout=3.0)
    try:
        await redis.ping()
        try:
            if args.command:
                return await _command(redis, args)
            return await _show(redis, args, redact_url(url))
        except ResponseError:
            # a command failed on data we did not write: name the key instead of the error
            names = [args.queue_name] if args.command else args.queue
            for name in names or await discover_queues(redis, args.prefix):
                problem = await _foreign_key(redis, QueueKeys(args.prefix, name))
                if problem is not None:
                    raise CliError(f"queue {name!r}: {problem}") from None
            raise
    finally:
        await redis.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = _parser().parse_args(argv)
    url = getattr(args, "redis", None) or os.environ.get("REDIS_URL") or DEFAULT_URL
    args.prefix = getattr(args, "prefix", "jq")
    args.json = getattr(args, "json", False)
    verbose = getattr(args, "verbose", False)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            stream=sys.stderr,
            level=logging.INFO if verbose else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
        )
    where = redact_url(url)
    password = urlsplit(url).password if "://" in url else None

    def clean(text: str) -> str:
        text = redact(text)
        return text.replace(password, "***") if password else text

    def fail(message: str, code: int = 2) -> int:
        print(f"error: {cut(clean(message), 1000)}", file=sys.stderr)
        return code

    health = 1 if args.check else 2
    try:
        return asyncio.run(_run(args, url))
    except CliError as exc:
        return fail(str(exc), exc.code)
    except AuthenticationError:
        return fail(f"Redis at {where} refused the credentials (wrong password?)", health)
    except (RedisConnectionError, RedisTimeoutError, BusyLoadingError, OSError) as exc:
        return fail(f"cannot reach Redis at {where}: {exc}", health)
    except JobQueueError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return 0
    except ValueError as exc:
        return fail(f"bad value (Redis URL {where}?): {exc}")
    except Exception as exc:
        if verbose:
            raise
        return fail(f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
