"""The scenarios: what each one times, and how (see docs/performance.md, "Method")."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .procs import Child, ChildError, wait_counts
from .server import PrivateRedis

__all__ = ["SCENARIOS", "Scenario", "run_scenario"]


@dataclass(frozen=True)
class Scenario:
    """One measured scenario.

    Attributes:
        name: as used by `--only` and in the JSON.
        title: the table row.
        size: key into the sizes table (`-n key=value`).
        metric: the headline number: `rate` (jobs/s, higher is better), `p50` (ms) or
            `bytes` (per job); both lower is better.
        workers, concurrency: for drains and latency.
    """

    name: str
    title: str
    size: str
    metric: str
    workers: int = 1
    concurrency: int = 10

    @property
    def higher_is_better(self) -> bool:
        """Throughput: higher is better; latency and memory: lower."""
        return self.metric == "rate"


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("drain_c50", "drain, 1 process, c50 (jobs/s)", "drain", "rate", 1, 50),
        Scenario("drain_c10", "drain, 1 process, c10 (jobs/s)", "drain", "rate", 1, 10),
        Scenario("drain_2x10", "drain, 2 processes x c10 (jobs/s)", "drain", "rate", 2, 10),
        Scenario("enqueue", "enqueue one by one, awaited (jobs/s)", "enqueue", "rate"),
        Scenario("bulk", "bulk enqueue, batches of 1000 (jobs/s)", "bulk", "rate"),
        Scenario("latency", "latency at 200 jobs/s, p50 (ms)", "latency", "p50"),
        Scenario("memory", "used_memory per waiting job, 200 B payload (B)", "memory", "bytes"),
    )
}


def _timeout(n: int, floor_rate: float = 150.0) -> float:
    return 60.0 + n / floor_rate


async def _closing(children: list[Child], body: Callable[[], Awaitable[dict[str, Any]]]) -> Any:
    try:
        return await body()
    finally:
        for c in children:
            c.send("STOP")
        await asyncio.gather(*(c.close() for c in children), return_exceptions=True)
        for c in children:
            if c.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    c.proc.kill()


async def _produce(
    server: PrivateRedis, peer: str, role: str, n: int, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    server.flush()
    child = await Child.start(peer, role, {"url": server.url, "n": n, **(extra or {})})

    async def body() -> dict[str, Any]:
        await child.ready()
        server.flush()
        if role == "memory":
            before_mem = server.used_memory()
            child.send("GO")
            res = await child.result(_timeout(n))
            await asyncio.wait_for(child.proc.wait(), 30)
            await asyncio.sleep(0.2)
            return {"bytes": (server.used_memory() - before_mem) / n, "n": n}
        before = server.snapshot()
        child.send("GO")
        res = await child.result(_timeout(n))
        out = server.snapshot().delta(before, n)
        out.update(
            rate=n / res["elapsed"],
            n=n,
            client_cpu_us_per_job=res["cpu"] * 1e6 / n,
        )
        if "note" in res:
            out["note"] = res["note"]
        return out

    result: dict[str, Any] = await _closing([child], body)
    return result


async def _fill(server: PrivateRedis, peer: str, n: int) -> None:
    server.flush()
    child = await Child.start(peer, "fill", {"url": server.url, "n": n})
    try:
        await child.result(_timeout(n, 500.0))
    finally:
        await child.close()


async def _drain(server: PrivateRedis, peer: str, sc: Scenario, n: int) -> dict[str, Any]:
    await _fill(server, peer, n)
    params = {"url": server.url, "n": n, "concurrency": sc.concurrency}
    workers = [await Child.start(peer, "worker", params) for _ in range(sc.workers)]

    async def body() -> dict[str, Any]:
        await asyncio.gather(*(w.ready() for w in workers))
        before = server.snapshot()
        t0 = time.time()
        for w in workers:
            w.send("GO")
        await wait_counts(workers, n, _timeout(n))
        await asyncio.sleep(0.1)  # the last outcomes reach Redis
        after = server.snapshot()
        for w in workers:
            w.send("STOP")
        results = [await w.result(30) for w in workers]
        last = max(r["last"] for r in results)
        out = after.delta(before, n)
        out.update(
            rate=n / (last - t0),
            n=n,
            worker_cpu_us_per_job=sum(r["cpu"] for r in results) * 1e6 / n,
            counts=[r["count"] for r in results],
        )
        notes = sorted({r["note"] for r in results if "note" in r})
        if notes:
            out["note"] = ", ".join(notes)
        return out

    result: dict[str, Any] = await _closing(workers, body)
    return result


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _latency(server: PrivateRedis, peer: str, sc: Scenario, n: int) -> dict[str, Any]:
    server.flush()
    prod = await Child.start(peer, "latency", {"url": server.url, "n": n, "rate": 200.0})
    children = [prod]

    async def body() -> dict[str, Any]:
        await prod.ready()
        server.flush()
        worker = await Child.start(
            peer,
            "worker",
            {"url": server.url, "n": n, "concurrency": sc.concurrency, "latency": True},
        )
        children.append(worker)
        await worker.ready()
        worker.send("GO")
        await asyncio.sleep(0.5)  # the worker is idle and waiting when jobs arrive
        prod.send("GO")
        pres = await prod.result(_timeout(n, 100.0))
        await wait_counts([worker], n, 30.0)
        worker.send("STOP")
        wres = await worker.result(30)
        lat = [x * 1000 for x in wres["latencies"]]
        return {
            "p50": statistics.median(lat),
            "p95": _pct(lat, 0.95),
            "p99": _pct(lat, 0.99),
            "max": max(lat),
            "n": len(lat),
            "producer_max_lag_ms": pres["lag"] * 1000,
            **({"note": wres["note"]} if "note" in wres else {}),
        }

    result: dict[str, Any] = await _closing(children, body)
    return result


async def run_scenario(server: PrivateRedis, peer: str, sc: Scenario, n: int) -> dict[str, Any]:
    """Run one scenario for one peer; {"error": ...} when it failed."""
    try:
        if sc.name.startswith("drain"):
            return await _drain(server, peer, sc, n)
        if sc.name == "latency":
            return await _latency(server, peer, sc, n)
        role = {"enqueue": "seq", "bulk": "bulk", "memory": "memory"}[sc.name]
        return await _produce(server, peer, role, n, {"batch": 1000})
    except (ChildError, TimeoutError, OSError) as exc:
        return {"error": str(exc)[-800:]}
