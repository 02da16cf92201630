"""`python -m jobqueue worker MODULE`: run the workers of a module's tasks, as `rq worker` does.

    python -m jobqueue worker myapp.tasks [--queues a,b] [--concurrency N]
                                          [--shutdown-grace SECONDS] [--log-level LEVEL]
                                          [--isolation process [--max-tasks-per-child N]]

Imports MODULE (the current directory is on the import path), finds its queues (module
attributes that are `Queue`s, and the queues of its `Task`s) and runs one `Worker` per queue
that has tasks, each with `queue.tasks` as its handlers (run in child processes with
`--isolation process`, see `jobqueue.worker.isolation`). The module decides where its queues
live (for example from `REDIS_URL`), as it does for the producers that import it. SIGTERM or
SIGINT stops taking jobs and lets running ones finish within the grace period; a second signal
hands them back to their queues at once.

Exit codes: 0 stopped by a signal; 1 a worker failed; 2 a usage error, a module that cannot be
imported or has no tasks, or an unknown queue (one line on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import math
import os
import signal
import sys
from collections.abc import Sequence
from types import ModuleType

from .core._inputs import cut, shown
from .core.connection import describe_client
from .core.redact import redact
from .errors import ConfigError
from .loop import loop_factory, run
from .queue import Queue
from .tasks import Task
from .worker import ProcessIsolation, Worker

__all__ = ["find_queues", "main"]

log = logging.getLogger(__name__)

PROG = "python -m jobqueue worker"


class _UsageError(Exception):
    """Reported as one line on stderr, exit code 2."""


def find_queues(module: ModuleType) -> list[Queue]:
    """The module's queues that have tasks, in the order the module defines them.

    Args:
        module: the imported module.

    Raises:
        _UsageError: two `Queue` objects with tasks stand for the same queue (each worker
            would fail the other's jobs as unknown tasks).
    """
    found: dict[int, Queue] = {}
    for value in list(vars(module).values()):
        queue = value.queue if isinstance(value, Task) else value
        if isinstance(queue, Queue) and len(queue.tasks):
            found.setdefault(id(queue), queue)
    seen: dict[tuple[str, str, str], Queue] = {}
    for queue in found.values():
        where = (describe_client(queue.redis), queue.prefix, queue.name)
        if where in seen:
            raise _UsageError(
                f"module {module.__name__} has two Queue objects with tasks for queue "
                f"{queue.name!r} (prefix {queue.prefix!r}): register all its tasks on one"
            )
        seen[where] = queue
    return list(found.values())


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Run the workers of a module's tasks until SIGTERM/SIGINT "
        "(the first finishes running jobs, a second hands them back at once).",
    )
    p.add_argument("module", help="module defining the tasks, e.g. myapp.tasks")
    p.add_argument("--queues", help="comma-separated queue names (default: every queue)")
    p.add_argument("--concurrency", type=int, default=1, help="jobs at once per queue (default 1)")
    p.add_argument(
        "--shutdown-grace",
        type=float,
        default=25.0,
        metavar="SECONDS",
        help="time running jobs get to finish after the first signal (default 25)",
    )
    p.add_argument(
        "--isolation",
        choices=["process"],
        help="run each job in a child process of a pool (a crash fails the job, not the worker)",
    )
    p.add_argument(
        "--max-tasks-per-child",
        type=int,
        metavar="N",
        help="with --isolation process: jobs a child runs before a fresh one replaces it",
    )
    p.add_argument(
        "--log-level",
        type=str.upper,
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default INFO",
    )
    return p


def _import(name: str) -> ModuleType:
    # `rq worker` and `celery -A` find the application's modules from where they are started
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except Exception as exc:
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise _UsageError(f"cannot import module {shown(name)}: {cut(detail)}") from None


def _select(module: ModuleType, names: str | None) -> list[Queue]:
    queues = find_queues(module)
    if not queues:
        raise _UsageError(f"module {module.__name__} defines no tasks (use @queue.task)")
    if names is None:
        return queues
    by_name = {q.name: q for q in queues}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    if unknown or not wanted:
        raise _UsageError(
            f"unknown queue {cut(', '.join(map(repr, unknown)) or repr(names))}: module "
            f"{module.__name__} has tasks on {', '.join(sorted(by_name))}"
        )
    return [by_name[n] for n in dict.fromkeys(wanted)]


async def _serve(
    queues: list[Queue], *, concurrency: int, grace: float, isolation: ProcessIsolation | None
) -> int:
    workers = [
        Worker(
            q,
            q.tasks,
            concurrency=concurrency,
            shutdown_grace=grace,
            handle_signals=False,
            isolation=isolation,
        )
        for q in queues
    ]
    loop = asyncio.get_running_loop()
    closing: set[asyncio.Task[None]] = set()
    signals = 0

    async def close(force: bool) -> None:
        await asyncio.gather(*(w.close(force=force) for w in workers))

    def on_signal(sig: int) -> None:
        nonlocal signals
        signals += 1
        log.info(
            "%s: %s",
            signal.Signals(sig).name,
            "handing running jobs back now"
            if signals > 1
            else "finishing running jobs (a second signal stops at once)",
        )
        task = loop.create_task(close(force=signals > 1))
        closing.add(task)
        task.add_done_callback(closing.discard)

    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
    runs = [loop.create_task(w.run(), name=f"jq-worker-{w.queue.name}") for w in workers]
    try:
        done, _ = await asyncio.wait(runs, return_when=asyncio.FIRST_EXCEPTION)
        failed = [t for t in done if not t.cancelled() and t.exception() is not None]
        for t in failed:
            exc = t.exception()
            log.error("%s failed: %s", t.get_name(), redact(f"{type(exc).__name__}: {exc}"))
        if failed:
            await close(force=False)  # the others stop as on a signal
        await asyncio.gather(*runs, return_exceptions=True)
        return 1 if failed else 0
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        for q in queues:
            await q.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run `python -m jobqueue worker`; return the exit code."""
    args = _parser().parse_args(argv)
    if args.concurrency < 1:
        print(f"error: --concurrency must be >= 1, got {args.concurrency}", file=sys.stderr)
        return 2
    if not (math.isfinite(args.shutdown_grace) and args.shutdown_grace >= 0):
        print(f"error: --shutdown-grace must be >= 0, got {args.shutdown_grace}", file=sys.stderr)
        return 2
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        loop_factory()  # a bad JOBQUEUE_LOOP is a usage error, said before anything starts
        isolation = _isolation(args.isolation, args.max_tasks_per_child)
        queues = _select(_import(args.module), args.queues)
        for q in queues if isolation is not None else ():
            # checked here: a task a child could not import by name is a usage error
            Worker(q, q.tasks, handle_signals=False, isolation=isolation)
    except (_UsageError, ConfigError) as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2
    for q in queues:
        log.info("queue %s: tasks %s", q.name, ", ".join(sorted(q.tasks)))
    return run(
        _serve(queues, concurrency=args.concurrency, grace=args.shutdown_grace, isolation=isolation)
    )


def _isolation(mode: str | None, max_tasks: int | None) -> ProcessIsolation | None:
    if mode is None:
        if max_tasks is not None:
            raise _UsageError("--max-tasks-per-child needs --isolation process")
        return None
    try:
        return ProcessIsolation(max_tasks_per_child=max_tasks)
    except ConfigError as exc:
        raise _UsageError(
            str(exc).replace("max_tasks_per_child", "--max-tasks-per-child")
        ) from None
