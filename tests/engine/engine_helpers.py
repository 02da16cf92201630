"""Helpers for engine tests: worker subprocesses and waiting on conditions (never sleep-and-hope)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], *, timeout: float = 20.0, what: str = "condition"
) -> None:
    """Re-check `predicate` (a cheap Redis read) until it holds, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if await predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class WorkerProcess:
    """A `worker_proc.py` subprocess."""

    def __init__(
        self,
        url: str,
        prefix: str,
        config: dict[str, Any],
        mode: str = "record",
        concurrency: int = 1,
        grace: float = 5.0,
    ) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "worker_proc.py"),
                url,
                prefix,
                json.dumps(config),
                mode,
                str(concurrency),
                str(grace),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(ROOT),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if "ready" not in line:
            raise RuntimeError(f"worker did not start: {line} {self.stderr()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self) -> None:
        self.proc.terminate()

    async def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError("worker process did not exit")
            await asyncio.sleep(0.02)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


async def read_log(client: aioredis.Redis, prefix: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in await client.lrange(f"{prefix}:test:log", 0, -1)]
