"""Running one chaos scenario and reconciling it against the ledger.

A scenario starts its own Redis (append-only file fsynced at every write, so that a restart
keeps every acknowledged job), several real worker processes (`chaos_worker.py`), a producer
adding jobs in batches with ids of its own (a retried add is idempotent), and a fault loop
(`faults.py`). Once every added job has ended (or a deadline that only bounds a hang), the
workers are stopped and each job is checked: its state in Redis, the ledger's handler runs,
its stall count (`st`, incremented by the stall check each time the job's lease expired: a
recorded lease loss).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_config import queue_config
from ledger import Ledger, LedgerView
from proxy import ChaosProxy
from servers import RedisProcess

from jobqueue import Queue, QueueFullError
from jobqueue.core.codec import text
from jobqueue.core.connection import REDIS_ERRORS
from jobqueue.testing import ClusterServers

__all__ = ["Chaos", "Plan", "Result", "run_plan"]

WORKER = Path(__file__).parent / "chaos_worker.py"
PREFIX = "chaos"


@dataclass
class Plan:
    """One scenario: its load, and the fault injected `faults` times, `gap` seconds apart."""

    name: str
    fault: Callable[[Chaos], Awaitable[None]] | None
    jobs: int
    workers: int = 3
    concurrency: int = 8
    lease: float = 1.0
    faults: int = 3
    gap: tuple[float, float] = (0.2, 0.8)
    proxy: bool = False
    postgres: bool = False
    rate: int = 0
    add_rate: float = 0.0
    delayed_share: float = 0.0
    clock_offsets: tuple[float, ...] = ()
    skip: str | None = None
    deadline: float = 300.0
    cluster: bool = False
    """Run on a local Redis Cluster (3 masters, a replica each) in durable mode."""


@dataclass
class Result:
    """What a scenario did to its jobs."""

    name: str
    added: int = 0
    refused: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    run_twice: int = 0
    unexplained_twice: int = 0
    status_wrong: int = 0
    faults: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None


@dataclass
class Chaos:
    """The running scenario, as the fault functions see it."""

    plan: Plan
    server: RedisProcess | ClusterServers
    dir: Path
    ledger_path: str
    proxy: ChaosProxy | None = None
    postgres: Any = None
    procs: list[tuple[subprocess.Popen[bytes], float]] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    logs: list[Path] = field(default_factory=list)
    injected: int = 0
    counters: Counter[str] = field(default_factory=Counter)
    """What the faults did, for the notes ("half-close": 4, ...)."""

    @property
    def worker_url(self) -> str:
        # a socket timeout: a command swallowed by a partition fails instead of waiting
        base = self.proxy.url if self.proxy else self.server.url
        return f"{base}?socket_timeout=3&socket_connect_timeout=3"

    def spawn(self, offset: float = 0.0) -> None:
        plan = self.plan
        log = self.dir / f"worker-{len(self.logs)}.log"
        self.logs.append(log)
        env = {**os.environ, "JQ_CHAOS_CLOCK_OFFSET": str(offset)}
        cmd = [
            sys.executable, str(WORKER), "--redis", self.worker_url, "--queue", plan.name,
            "--prefix", PREFIX, "--ledger", self.ledger_path, "--concurrency",
            str(plan.concurrency), "--lease", str(plan.lease), "--rate", str(plan.rate),
            "--durable", str(_durable(plan)),
        ]  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.procs.append((proc, offset))

    def kill9_one(self) -> int:
        """SIGKILL a random worker and start another in its place; returns the pid killed."""
        i = self.rng.randrange(len(self.procs))
        proc, offset = self.procs.pop(i)
        proc.kill()
        proc.wait(10)
        self.spawn(offset)
        return proc.pid

    def stop_workers(self) -> list[int]:
        """SIGTERM every worker; returns their exit codes (killed after a deadline)."""
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for proc, _ in self.procs:
            try:
                codes.append(proc.wait(20))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait(10))
        return codes


def _durable(plan: Plan) -> int:
    # on the cluster every change waits for the master's replica: an acknowledged change
    # then survives the master's death (docs/cluster.md); one node keeps an fsynced AOF
    return 1 if plan.cluster else 0


def _redis_binary() -> str | None:
    return shutil.which("redis-server")  # None: the bundled Valkey


async def _produce(chaos: Chaos, queue: Queue, ledger: Ledger, result: Result) -> None:
    plan, rng = chaos.plan, random.Random(1)
    batch = 100
    for start in range(0, plan.jobs, batch):
        specs = []
        for i in range(start, min(start + batch, plan.jobs)):
            delay = rng.uniform(0.1, 0.6) if rng.random() < plan.delayed_share else 0.0
            specs.append({"name": "n", "data": {"i": i}, "job_id": f"j{i}", "delay": delay})
        while True:
            try:
                await queue.add_bulk(specs)
                break
            except QueueFullError:
                result.refused += 1  # the batch refused whole, nothing written: add it later
                await asyncio.sleep(0.05)
            except REDIS_ERRORS:
                await asyncio.sleep(0.05)  # Redis restarting: the ids make a retry idempotent
        ledger.added((s["job_id"], s["delay"]) for s in specs)
        # paced when asked (adds meet the faults), else as fast as Redis takes them
        await asyncio.sleep(len(specs) / plan.add_rate if plan.add_rate else 0)


async def _inject(chaos: Chaos, result: Result, ledger: Ledger) -> None:
    plan = chaos.plan
    if plan.fault is None:
        return
    # under load first: some jobs run before the first fault
    while len(ledger.view().runs) < min(50, plan.jobs // 10):
        await asyncio.sleep(0.05)
    for _ in range(plan.faults):
        await plan.fault(chaos)
        chaos.injected += 1
        result.faults += 1
        await asyncio.sleep(chaos.rng.uniform(*plan.gap))


async def _states(queue: Queue, ids: list[str]) -> dict[str, tuple[str, int]]:
    """Job id -> (state in Redis or "missing", stall count)."""
    out: dict[str, tuple[str, int]] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        records = await asyncio.gather(*(queue.scripts.get_job(j) for j in chunk))
        for job_id, rec in zip(chunk, records, strict=True):
            if rec is None:
                out[job_id] = ("missing", 0)
            else:
                out[job_id] = (rec.state, int(text(rec.run_state.get("st", b"0") or b"0")))
    return out


async def _drained(queue: Queue, view: LedgerView) -> bool:
    counts = await queue.get_job_counts()
    if counts["waiting"] or counts["active"] or counts["delayed"]:
        return False
    return counts["completed"] + counts["failed"] >= len(view.added)


async def run_plan(plan: Plan, *, mirror: Callable[..., Any] | None = None) -> Result:
    """Run `plan` and reconcile it. `mirror(chaos, queue)` (the PostgreSQL scenario) returns
    an async context manager that runs the status mirror and counts wrong rows."""
    result = Result(plan.name)
    if plan.skip:
        result.skipped = plan.skip
        return result
    root = Path(tempfile.mkdtemp(prefix=f"jq-chaos-{plan.name}-"))
    server: RedisProcess | ClusterServers
    if plan.cluster:
        server = await asyncio.to_thread(ClusterServers(_redis_binary()).start)
    else:
        extra = ["--appendonly", "yes", "--appendfsync", "always"]
        server = RedisProcess(_redis_binary(), extra=extra).start()
    chaos = Chaos(plan, server, root, str(root / "ledger.sqlite"))
    ledger = Ledger(chaos.ledger_path)
    config = queue_config(plan.name, lease=plan.lease, rate=plan.rate, durable=_durable(plan))
    queue = Queue(config, redis=server.url, prefix=PREFIX)
    began = time.monotonic()
    try:
        if plan.proxy:
            chaos.proxy = ChaosProxy(server.port)
            await chaos.proxy.start()
        offsets = plan.clock_offsets or (0.0,) * plan.workers
        for offset in offsets:
            chaos.spawn(offset)
        async with contextlib.AsyncExitStack() as stack:
            wrong_rows = None
            if mirror is not None:
                wrong_rows = await stack.enter_async_context(mirror(chaos, queue))
            producer = asyncio.create_task(_produce(chaos, queue, ledger, result))
            faults = asyncio.create_task(_inject(chaos, result, ledger))
            deadline = time.monotonic() + plan.deadline
            while time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                for task in (producer, faults):
                    if task.done() and task.exception():
                        raise task.exception()  # type: ignore[misc]
                if producer.done() and faults.done():
                    with contextlib.suppress(*REDIS_ERRORS):
                        if await _drained(queue, ledger.view()):
                            break
            else:
                result.notes.append(f"not drained within {plan.deadline:g}s")
            for task in (producer, faults):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            codes = chaos.stop_workers()
            # -SIGTERM: a worker started by the last fault and stopped before it was up
            if any(c not in (0, -signal.SIGTERM) for c in codes):
                result.notes.append(f"worker exit codes {codes}")
            view = ledger.view()
            states = await _states(queue, list(view.added))
            _reconcile(result, view, states)
            if wrong_rows is not None:
                result.status_wrong += await wrong_rows(states)
            result.notes += [f"{k} {v}" for k, v in sorted(chaos.counters.items())]
            if plan.delayed_share:
                result.notes.append(f"early starts {view.early_starts()}")
            if plan.rate:
                result.notes.append(
                    f"max starts in 1 s {view.max_starts_in(1.0)} (limit {plan.rate}/s)"
                )
    finally:
        result.seconds = time.monotonic() - began
        chaos.stop_workers()
        if chaos.proxy is not None:
            await chaos.proxy.close()
        await queue.close()
        ledger.close()
        server.close()
        if not (result.lost or result.unexplained_twice or result.status_wrong):
            shutil.rmtree(root, ignore_errors=True)
        else:
            result.notes.append(f"kept {root}")
    return result


def _reconcile(result: Result, view: LedgerView, states: dict[str, tuple[str, int]]) -> None:
    starts, ended = view.starts(), view.ended()
    result.added = len(view.added)
    for job_id in view.added:
        state, stalls = states[job_id]
        if state == "completed":
            result.completed += 1
            if job_id not in ended:
                result.status_wrong += 1  # completed without a handler run that returned
        elif state == "failed":
            result.failed += 1
        else:
            result.lost += 1
        runs = starts.get(job_id, 0)
        if runs > 1:
            result.run_twice += 1
            if runs - 1 > stalls:
                result.unexplained_twice += 1  # ran again without a recorded lease loss
