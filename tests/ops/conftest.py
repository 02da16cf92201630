"""Fixtures of the operations tests: fast queues, in-process workers, worker processes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# fixtures shared with the other folders: importing them here is what registers them
from loop_helpers import make_queue as make_queue
from loop_helpers import run_worker as run_worker
from ops_helpers import ROOT, WORKER_SCRIPT, WorkerProcess, child_env


@pytest.fixture
def spawn_worker(
    redis_url: str, prefix: str, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `worker_proc.py` in a process of its own; killed at teardown if still alive."""
    procs: list[WorkerProcess] = []

    def spawn(queue: str, *, redis: str | None = None, **options: Any) -> WorkerProcess:
        args = [
            sys.executable,
            str(WORKER_SCRIPT),
            "--redis",
            redis or redis_url,
            "--prefix",
            prefix,
            "--queue",
            queue,
        ]
        for key, value in options.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        log = tmp_path / f"worker-{len(procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=child_env(), cwd=ROOT
            )
        wp = WorkerProcess(proc, log)
        procs.append(wp)
        return wp

    yield spawn
    for wp in procs:
        if wp.proc.poll() is None:
            wp.proc.kill()
        wp.proc.wait(10)
