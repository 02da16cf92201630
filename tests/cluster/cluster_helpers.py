"""Helpers of the cluster and sentinel tests: deadlines, waiting on states, and the drain
worker processes with their local ledgers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from jobqueue import Queue

__all__ = [
    "HANG",
    "ROOT",
    "DrainWorker",
    "drain_configs",
    "settle",
    "spread_names",
    "wait_for",
]

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
HANG = 90.0
"""Deadline that only bounds a hang (a failover takes a few seconds)."""


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, timeout: float = HANG) -> None:
    """Wait until `check()` holds (the deadline only bounds a hang)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class DrainWorker:
    """A `drain_worker.py` process; its ledger is a local file."""

    def __init__(self, url: str, prefix: str, configs: list[dict[str, Any]], concurrency: int = 8):
        fd, ledger = tempfile.mkstemp(prefix="jq-ledger-", suffix=".txt")
        os.close(fd)
        self.ledger = Path(ledger)
        fd, log = tempfile.mkstemp(prefix="jq-drain-", suffix=".log")
        self.log_path = Path(log)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        with os.fdopen(fd, "wb") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, str(HERE / "drain_worker.py"), url, prefix,
                 json.dumps(configs), ledger, str(concurrency)],
                stdout=subprocess.PIPE, stderr=log_file, env=env, cwd=str(ROOT),
            )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if "ready" not in line:
            log = self.stderr()
            self.close()
            raise RuntimeError(f"drain worker did not start: {line} {log}")

    def stderr(self) -> str:
        return self.log_path.read_text(errors="replace")

    def done(self) -> list[tuple[str, str]]:
        """(queue, job id) of every completed run so far."""
        lines = self.ledger.read_text().splitlines()
        return [(q, i) for q, _, i in (line.partition(" ") for line in lines if " " in line)]

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        self.ledger.unlink(missing_ok=True)
        self.log_path.unlink(missing_ok=True)


def spread_names(cluster: Any, prefix: str, n: int = 3) -> list[str]:
    """Queue names whose keys live on `n` different masters."""
    names: list[str] = []
    ports: set[int] = set()
    for i in range(200):
        name = f"q{i}"
        port = cluster.master_of(f"{prefix}:{{{name}}}:id").port
        if port not in ports:
            ports.add(port)
            names.append(name)
        if len(names) == n:
            return names
    raise AssertionError("no spread of queue names found")


def drain_configs(names: list[str]) -> list[dict[str, Any]]:
    """The failover tests' queue configs for `DrainWorker` (JSON: lists, not tuples).

    Durable mode (`durable_replicas=1`) makes each change wait for the replica, so no
    acknowledged change dies with the master; many stalls are allowed (a job whose lease a
    failover cost twice must not fail on `max_stalls`, which is policy, not a lost job)."""
    return [
        {"name": n, "lease": 3.0, "drain_delay": 0.5, "durable_replicas": 1, "max_stalls": 1000,
         "keep_completed": [None, None], "heartbeat_interval": 0.5}
        for n in names
    ]  # fmt: skip


async def settle(queues: list[Queue], per_queue: int) -> None:
    """Wait until every queue counts `per_queue` completed jobs and none active."""
    for q in queues:

        async def settled(q: Queue = q) -> bool:
            try:
                counts = await q.get_job_counts()
            except RedisError:  # a command in flight when the connection moved
                return False  # its next call finds the new master itself
            return counts["completed"] == per_queue and counts["active"] == 0

        await wait_for(settled, f"queue {q.name} to settle")
