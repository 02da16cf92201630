"""The child side of the benchmark: one process per producer or worker.

    python -m bench.child PEER ROLE PARAMS_JSON

The runner talks to a child over its stdin and stdout, one JSON object (or word) per line:

- the child prints `{"ready": true}` once it is connected (scripts loaded, warm-up done);
- the runner answers `GO`; the timed part starts;
- a worker prints `{"count": n}` every 20 ms while its count changes (the runner sums the
  counts of all workers to know when the queue is drained; nothing polls Redis);
- the runner sends `STOP` to workers; every child ends with `{"result": {...}}`.

Roles: `fill` (enqueue N jobs fast, untimed), `seq` (N adds one by one, each awaited),
`bulk` (the peer's bulk API in batches), `memory` (N waiting jobs with a 200-byte pad),
`latency` (N adds at a steady rate), `worker` (run the peer's worker with a concurrency).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Control", "Producer", "Recorder", "main"]

PAD = "x" * 200


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


class Producer(Protocol):
    """What a peer module's `producer(url)` returns."""

    async def connect(self) -> None:
        """Open the connection (and load scripts)."""

    async def add(self, data: dict[str, Any]) -> None:
        """Enqueue one no-op job with `data` as its payload."""

    async def add_bulk(self, items: list[dict[str, Any]]) -> None:
        """Enqueue many jobs with the peer's bulk API (only when `HAS_BULK`)."""

    async def close(self) -> None:
        """Close the connections."""


class Control:
    """The line protocol with the runner: ready, GO, counts, STOP, result."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.stop = threading.Event()
        self.go_time = 0.0
        self.go_cpu = 0.0
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            word = line.strip()
            if word == "GO":
                self.go_time = time.time()
                self.go_cpu = _cpu()
                self.go.set()
            elif word == "STOP":
                self.stop.set()
        self.stop.set()  # the runner went away

    def send(self, obj: Any) -> None:
        """Print one JSON line to the runner."""
        text = json.dumps(obj)
        with self._lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def ready_and_wait(self) -> None:
        """Say ready, then block until GO (for synchronous peers)."""
        self.send({"ready": True})
        self.go.wait()

    async def ready(self) -> None:
        """Say ready, then wait for GO."""
        self.send({"ready": True})
        await asyncio.to_thread(self.go.wait)

    async def until_stop(self) -> None:
        """Wait for STOP."""
        await asyncio.to_thread(self.stop.wait)


class Recorder:
    """Counts handler runs, keeps the time of the last one and (optionally) latencies."""

    def __init__(self, ctl: Control, *, latency: bool = False) -> None:
        self.ctl = ctl
        self.count = 0
        self.last = 0.0
        self.latencies: list[float] | None = [] if latency else None
        threading.Thread(target=self._report, daemon=True).start()

    def hit(self, enqueued_at: float | None = None) -> None:
        """Record one handler start (`enqueued_at`: the producer's time before its add)."""
        now = time.time()
        self.count += 1
        self.last = now
        if self.latencies is not None and enqueued_at:
            self.latencies.append(now - enqueued_at)

    def _report(self) -> None:
        sent = -1
        while not self.ctl.stop.is_set():
            time.sleep(0.02)
            n = self.count
            if n != sent:
                self.ctl.send({"count": n})
                sent = n

    def result(self) -> dict[str, Any]:
        """What a worker reports at STOP."""
        return {
            "count": self.count,
            "go": self.ctl.go_time,
            "last": self.last,
            "cpu": _cpu() - self.ctl.go_cpu,
            "latencies": self.latencies,
        }


_note: Callable[[], str] | None = None


def _finish(ctl: Control, result: dict[str, Any]) -> None:
    if _note is not None:
        result["note"] = _note()
    ctl.send({"result": result})
    sys.stdout.flush()
    os._exit(0)  # no library shutdown: it is not measured and some take seconds


async def _fill(prod: Producer, n: int, has_bulk: bool, data: Callable[[], dict[str, Any]]) -> None:
    if has_bulk:
        for i in range(0, n, 1000):
            await prod.add_bulk([data() for _ in range(min(1000, n - i))])
        return
    for i in range(0, n, 100):
        await asyncio.gather(*(prod.add(data()) for _ in range(min(100, n - i))))


async def _produce(mod: Any, role: str, params: dict[str, Any], ctl: Control) -> None:
    prod: Producer = mod.producer(params["url"])
    await prod.connect()
    n = int(params["n"])
    has_bulk = bool(getattr(mod, "HAS_BULK", False))
    if role == "fill":
        await _fill(prod, n, has_bulk, lambda: {"t": 0.0})
        await prod.close()
        _finish(ctl, {"n": n})
    # warm-up: loads the scripts and the code paths (the runner flushes the jobs)
    for _ in range(20):
        await prod.add({"t": 0.0})
    if role == "bulk":
        await prod.add_bulk([{"t": 0.0} for _ in range(20)])
    await ctl.ready()
    cpu0 = _cpu()
    t0 = time.perf_counter()
    lag = 0.0
    if role == "seq":
        for _ in range(n):
            await prod.add({"t": time.time()})
    elif role == "bulk":
        batch = int(params.get("batch", 1000))
        for i in range(0, n, batch):
            await prod.add_bulk([{"t": 0.0} for _ in range(min(batch, n - i))])
    elif role == "memory":
        await _fill(prod, n, has_bulk, lambda: {"t": time.time(), "pad": PAD})
    elif role == "latency":
        rate = float(params["rate"])
        start = time.perf_counter()
        for i in range(n):
            due = start + i / rate
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            else:
                lag = max(lag, now - due)
            await prod.add({"t": time.time()})
    else:
        raise SystemExit(f"unknown role {role}")
    elapsed = time.perf_counter() - t0
    cpu = _cpu() - cpu0
    await prod.close()
    _finish(ctl, {"n": n, "elapsed": elapsed, "cpu": cpu, "lag": lag})


async def _work_async(mod: Any, params: dict[str, Any], ctl: Control) -> None:
    rec = Recorder(ctl, latency=bool(params.get("latency")))
    await mod.work(params["url"], int(params["concurrency"]), ctl, rec)
    _finish(ctl, rec.result())


def main(argv: list[str] | None = None) -> None:
    """Run one child: `PEER ROLE PARAMS_JSON`."""
    peer, role, raw = (argv or sys.argv[1:])[:3]
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger().setLevel(logging.WARNING)
    params: dict[str, Any] = json.loads(raw)
    mod = importlib.import_module(f"bench.peer_{peer}")
    global _note
    _note = getattr(mod, "note", None)
    ctl = Control()
    if role == "worker" and getattr(mod, "SYNC_WORKER", False):
        rec = Recorder(ctl, latency=bool(params.get("latency")))
        mod.work_sync(params["url"], int(params["concurrency"]), ctl, rec)
        _finish(ctl, rec.result())
    # jobqueue's children run on the loop JOBQUEUE_LOOP names (asyncio by default, uvloop with
    # the `speed` extra), as its worker entry points do; the peers on asyncio's own
    run: Callable[[Any], Any] = asyncio.run
    if peer == "jobqueue":
        run = importlib.import_module("jobqueue").run
    if role == "worker":
        run(_work_async(mod, params, ctl))
    else:
        run(_produce(mod, role, params, ctl))


if __name__ == "__main__":
    main()
