"""`python -m pipeline.mirror_bench`: how far the status mirror trails a worker at full speed.

Creates a PostgreSQL database of its own (named `jq_mirror_bench_<hex>`, next to the one of
`DATABASE_URL` or `TEST_DATABASE_URL`, dropped at the end) and a key prefix of its own on
`REDIS_URL` (or `TEST_REDIS_URL`), whose keys it deletes at the end. Two phases:

1. **ceiling**: N no-op jobs are enqueued and drained with no mirror running, then the
   mirror(s) start on the backlog of 3 N events (`added`, `active`, `completed` per job); events
   per second = 3 N / the time until every row is `completed`.
2. **live**: on a new queue with the mirror(s) running (caught up with the `added` events
   first), one worker with `--concurrency` slots drains N jobs in the same process. Lag of an
   event = its commit time - the time in its stream id (Redis' clock, same machine); the
   report gives p50/p99/max over the drain's events, and the time from the drain's last
   `completed` event to the commit that made the last row `completed`.

Numbers move with the machine's load: compare runs made back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from jobqueue import Job, Queue, QueueConfig, Worker

from . import db
from .mirror import StatusMirror

__all__ = ["main"]

_BULK = 1000


def _proc_cpu(pids: Sequence[int]) -> dict[int, float]:
    """CPU seconds (user + system) of the processes of this machine among `pids`."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # another machine's server, or gone
        out[pid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class _Bench:
    def __init__(self, args: argparse.Namespace, redis_url: str, pool: asyncpg.Pool) -> None:
        self.args, self.redis_url, self.pool = args, redis_url, pool
        self.prefix = f"mirrorbench-{uuid.uuid4().hex[:8]}"
        self.commits: list[tuple[float, list[str]]] = []
        self.applied, self.target, self.reached = 0, 0, asyncio.Event()
        # cProfile of the measured part of a phase (the mirror's catch-up, or the drain)
        self.profiler: cProfile.Profile | None = None
        self.queues: list[Queue] = []

    def _queue(self, name: str) -> Queue:
        # the stream must hold every event: a trimmed one would be reconciled, not measured
        config = QueueConfig(name, events_maxlen=self.args.jobs * 4, keep_completed=(None, None))
        queue = Queue(config, redis=self.redis_url, prefix=self.prefix)
        self.queues.append(queue)
        return queue

    def _mirrors(self, queue: Queue) -> list[StatusMirror]:
        def record(ids: Sequence[str]) -> None:
            self.commits.append((time.time(), list(ids)))
            self.applied += len(ids)
            if self.applied >= self.target:
                self.reached.set()

        return [
            StatusMirror(
                queue.redis,
                [queue.name],
                prefix=self.prefix,
                pool=self.pool,
                consumer=f"bench-{i}",
                block_ms=50,
                batch_size=self.args.batch_size,
                on_commit=record,
                **self._options(),
            )
            for i in range(self.args.mirrors)
        ]

    def _options(self) -> dict[str, Any]:
        # only the options asked for: the command also runs against older mirrors
        options: dict[str, Any] = {}
        if self.args.writers:
            options["writers"] = self.args.writers
        if self.args.no_prefetch:
            options["prefetch"] = False
        return options

    async def _enqueue(self, queue: Queue) -> None:
        for start in range(0, self.args.jobs, _BULK):
            n = min(_BULK, self.args.jobs - start)
            await queue.add_bulk([("noop", {"i": start + i}) for i in range(n)])

    async def _drain(self, queue: Queue) -> float:
        done = asyncio.Event()
        left = [self.args.jobs]

        async def handler(job: Job) -> None:
            left[0] -= 1
            if left[0] <= 0:
                done.set()

        worker = Worker(queue, handler, concurrency=self.args.concurrency, handle_signals=False)
        task = asyncio.get_running_loop().create_task(worker.run())
        start = time.time()
        await asyncio.wait_for(done.wait(), self.args.timeout)
        await worker.close()
        await task
        return start

    async def _rows(self, queue: str, status: str | None = None) -> int:
        sql = "SELECT count(*) FROM job_status WHERE queue = $1"
        args: list[Any] = [queue]
        if status is not None:
            sql += " AND status = $2"
            args.append(status)
        return int(await self.pool.fetchval(sql, *args))

    def _expect(self, events: int) -> None:
        """Count commits from now until `events` entries are applied."""
        self.commits.clear()
        self.applied, self.target = 0, events
        self.reached.clear()

    async def _until_applied(self, queue: str, status: str | None) -> None:
        # Waits on the commits themselves: polling the table would load the server measured.
        await asyncio.wait_for(self.reached.wait(), self.args.timeout)
        rows = await self._rows(queue, status)
        if rows != self.args.jobs:
            raise RuntimeError(
                f"{rows} rows of {queue} {status or 'present'}, not {self.args.jobs}"
            )

    async def _backend_cpu(self) -> dict[int, float]:
        """CPU seconds of this database's server processes (PostgreSQL on this machine)."""
        pids = [
            r[0]
            for r in await self.pool.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            )
        ]
        return _proc_cpu(pids)

    @staticmethod
    async def _start(mirrors: list[StatusMirror]) -> list[asyncio.Task[None]]:
        loop = asyncio.get_running_loop()
        return [loop.create_task(m.run()) for m in mirrors]

    @staticmethod
    async def _stop(mirrors: list[StatusMirror], tasks: list[asyncio.Task[None]]) -> None:
        for m in mirrors:
            await m.close()
        await asyncio.gather(*tasks)

    async def ceiling(self) -> dict[str, float]:
        queue = self._queue(f"ceil-{uuid.uuid4().hex[:6]}")
        await queue.connect()
        await self._enqueue(queue)
        await self._drain(queue)
        events = int(await queue.redis.xlen(queue.keys.events))
        mirrors = self._mirrors(queue)
        self._expect(events)
        pg0, cpu0 = await self._backend_cpu(), time.process_time()
        t0 = time.time()
        if self.profiler is not None:
            self.profiler.enable()
        tasks = await self._start(mirrors)
        await asyncio.wait_for(self.reached.wait(), self.args.timeout)
        if self.profiler is not None:
            self.profiler.disable()
        elapsed = max(c for c, _ in self.commits) - t0
        cpu = time.process_time() - cpu0
        pg = sum(v - pg0.get(pid, 0.0) for pid, v in (await self._backend_cpu()).items())
        await self._until_applied(queue.name, "completed")
        await self._stop(mirrors, tasks)
        return {
            "events": events,
            "seconds": elapsed,
            "events_per_s": events / elapsed,
            "mirror_cpu_us_per_event": cpu / events * 1e6,
            "postgres_cpu_us_per_event": pg / events * 1e6,
        }

    async def live(self) -> dict[str, float]:
        queue = self._queue(f"live-{uuid.uuid4().hex[:6]}")
        await queue.connect()
        mirrors = self._mirrors(queue)
        tasks = await self._start(mirrors)
        self._expect(self.args.jobs)  # the `added` events
        await self._enqueue(queue)
        await self._until_applied(queue.name, None)
        self._expect(2 * self.args.jobs)  # `active` and `completed`
        if self.profiler is not None:
            self.profiler.enable()
        start = await self._drain(queue)
        await self._until_applied(queue.name, "completed")
        if self.profiler is not None:
            self.profiler.disable()
        await self._stop(mirrors, tasks)
        # The drain's end on Redis' clock: the last `completed` event.
        last: Any = await queue.redis.xrevrange(queue.keys.events, count=1)
        drain_end = int(bytes(last[0][0]).split(b"-")[0]) / 1000
        lags = [
            committed - int(i.split("-", 1)[0]) / 1000
            for committed, ids in self.commits
            for i in ids
        ]
        last_commit = max(c for c, _ in self.commits)
        return {
            "drain_s": drain_end - start,
            "events": len(lags),
            "events_per_s_during": len(lags) / (last_commit - start),
            "lag_p50": _pct(lags, 0.50),
            "lag_p99": _pct(lags, 0.99),
            "lag_max": max(lags),
            "end_to_last_row": last_commit - drain_end,
        }

    async def cleanup(self) -> None:
        for queue in self.queues:
            keys = [k async for k in queue.redis.scan_iter(match=f"{self.prefix}:*", count=1000)]
            for i in range(0, len(keys), 500):
                await queue.redis.delete(*keys[i : i + 500])
            await queue.close()


def _show(result: dict[str, float]) -> str:
    return ", ".join(
        f"{k} {v:,.3f}" if isinstance(v, float) else f"{k} {v:,}" for k, v in result.items()
    )


async def _amain(args: argparse.Namespace) -> int:
    base = os.environ.get("DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL") or os.environ.get("TEST_REDIS_URL")
    if not base or not redis_url:
        raise SystemExit(
            "set DATABASE_URL (or TEST_DATABASE_URL) and REDIS_URL (or TEST_REDIS_URL)"
        )
    name = f"jq_mirror_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(base)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        url = urlunsplit(urlsplit(base)._replace(path=f"/{name}"))
        pool = await db.create_pool(url, min_size=1, max_size=max(4, 2 * args.mirrors + 2))
        bench = _Bench(args, redis_url, pool)
        try:
            await db.migrate(pool)
            results: dict[str, list[dict[str, float]]] = {}
            for n in range(args.rounds):
                for phase in ("ceiling", "live"):
                    if phase not in args.phases:
                        continue
                    bench.profiler = cProfile.Profile() if args.profile == phase else None
                    result = await (bench.ceiling() if phase == "ceiling" else bench.live())
                    if bench.profiler is not None:
                        stats = pstats.Stats(bench.profiler).sort_stats("tottime")
                        stats.print_stats(args.profile_top)
                    results.setdefault(phase, []).append(result)
                    print(f"round {n + 1} {phase}: {_show(result)}", flush=True)
            if args.rounds > 1:
                for phase, rounds in results.items():
                    median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
                    print(f"median {phase}: {_show(median)}", flush=True)
        finally:
            await bench.cleanup()
            await pool.close()
    finally:
        admin = await asyncpg.connect(base)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.mirror_bench", description=__doc__)
    p.add_argument("--jobs", type=int, default=20_000, help="no-op jobs per phase")
    p.add_argument("--concurrency", type=int, default=50, help="the worker's slots")
    p.add_argument("--mirrors", type=int, default=1, help="StatusMirror instances on the group")
    p.add_argument("--writers", type=int, default=0, help="writers per mirror (0: default)")
    p.add_argument("--no-prefetch", action="store_true", help="no read ahead of the next batch")
    p.add_argument("--batch-size", type=int, default=500, help="entries per read")
    p.add_argument("--phases", default="ceiling,live", help="ceiling, live or both")
    p.add_argument("--rounds", type=int, default=1, help="repeat; medians printed at the end")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds before giving up")
    p.add_argument(
        "--profile", choices=("ceiling", "live"), help="cProfile one phase's measured part"
    )
    p.add_argument("--profile-top", type=int, default=25, help="frames printed")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m pipeline.mirror_bench`."""
    args = _parser().parse_args(argv)
    if min(args.jobs, args.concurrency, args.mirrors, args.batch_size, args.rounds) < 1:
        raise SystemExit("--jobs, --concurrency, --mirrors, --batch-size and --rounds must be >= 1")
    return asyncio.run(_amain(args))


if __name__ == "__main__":
    raise SystemExit(main())
