"""Handlers that the isolation tests run in child processes: module-level, so a child imports
them by name. Each takes what to do from the job's data, so one queue can mix behaviours."""

from __future__ import annotations

import ctypes
import os
import signal
import time
from typing import Any

from jobqueue import Job, Queue, QueueConfig, RetryAfter, UnrecoverableError, get_current_job

INIT_MARK = "JQ_ISOLATION_INIT"


async def work(job: Job) -> Any:
    """Does what `job.data["do"]` says; reports its pid."""
    do = job.data.get("do", "pid")
    if do == "pid":
        return {"pid": os.getpid(), "attempt": job.attempt, "data": job.data}
    if do == "progress":
        await job.update_progress(40)
        n = await job.log("half way")
        await job.update_progress(100)
        return {"pid": os.getpid(), "lines": n, "logs": await job.get_logs()}
    if do == "segfault_once" and job.attempt == 1:
        ctypes.string_at(0)  # a real segfault: reads address 0
    if do == "exit_once" and job.attempt == 1:
        os._exit(3)
    if do == "kill_self":
        os.kill(os.getpid(), signal.SIGSEGV)
    if do == "hang_once" and await job.get_logs():
        return {"pid": os.getpid(), "attempt": job.attempt, "logs": await job.get_logs()}
    if do in ("hang", "hang_once"):
        await job.log(f"hanging in {os.getpid()}")
        while True:  # ignores cancellation: only a kill ends it
            time.sleep(0.05)
    if do == "raise":
        raise ValueError(f"bad input {job.data.get('n')}")
    if do == "unrecoverable":
        raise UnrecoverableError("no way", error_type="API_ERROR")
    if do == "retry_after":
        raise RetryAfter(0.05, "try later")
    if do == "not_json":
        return {1, 2}
    if do == "alloc":
        return len(bytearray(int(job.data["bytes"])))
    if do == "env":
        return os.environ.get(INIT_MARK)
    return {"pid": os.getpid(), "attempt": job.attempt}


def cpu(job: Job) -> Any:
    """A plain `def` (CPU-bound) handler; it sees its job through `get_current_job()`."""
    current = get_current_job()
    assert current is not None and current.id == job.id
    total = sum(i * i for i in range(int(job.data.get("n", 1000))))
    return {"pid": os.getpid(), "total": total}


def init() -> None:
    """An initializer: marks the child's environment."""
    os.environ[INIT_MARK] = f"ready:{os.getpid()}"


# a module-level queue whose tasks a worker of another queue runs isolated (nothing here
# connects: a Queue opens its connection on first use)
tasks_queue = Queue(QueueConfig("isotasks"), redis="redis://127.0.0.1:1/0")


@tasks_queue.task
def square(x: int) -> dict[str, int]:
    """A sync task."""
    return {"square": x * x, "pid": os.getpid()}


@tasks_queue.task(name="greet")
async def greet(name: str, *, punct: str = "!") -> str:
    """An async task."""
    return f"hello {name}{punct}"
