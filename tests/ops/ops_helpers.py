"""Helpers of the operations tests: a bounded wait for conditions, worker processes and the
inspect CLI run as subprocesses.

Deadlines only bound a hang (`HANG`); a loaded machine must never reach them. The queues'
settings (long leases, tiny intervals) are `loop_helpers.FAST_QUEUE`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import loop_helpers

from jobqueue import Queue

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
WORKER_SCRIPT = HERE / "worker_proc.py"

HANG = 30.0


async def wait_for(
    check: Callable[[], Awaitable[Any]], timeout: float = HANG, what: str = "condition"
) -> Any:
    """`loop_helpers.wait_for` bounded by `HANG` unless told."""
    return await loop_helpers.wait_for(check, timeout, what)


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("REDIS_URL", None)
    env.update(extra)
    return env


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


async def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 2 * HANG
) -> CliResult:
    """Run `python -m jobqueue.inspect ARGS` in a subprocess."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobqueue.inspect",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env or child_env(),
        cwd=ROOT,
    )
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return CliResult(proc.returncode, out.decode(), err.decode())


async def workers_of(queue: Queue, n: int = 1, timeout: float = HANG) -> list[Any]:
    """Wait until `n` live workers are registered on `queue`."""

    async def check() -> list[Any] | None:
        workers = await queue.get_workers()
        return workers if len(workers) >= n else None

    result: list[Any] = await wait_for(check, timeout, f"{n} live worker(s) on {queue.name}")
    return result


async def state_is(queue: Queue, job_id: str, state: str, timeout: float = HANG) -> None:
    async def check() -> bool:
        return await queue.get_job_state(job_id) == state

    await wait_for(check, timeout, f"job {job_id} to be {state}")
