"""`python -m bench.schedules [--redis URL] [--seconds 10] [--every 0.2] [--workers 3]`: how
exactly and how punctually worker processes produce a schedule's ticks.

Starts N worker processes (`tests/engine/schedule_proc.py`) on a fresh prefix, lets a schedule
of `--every` seconds tick for `--seconds`, kills them, and prints: ticks produced over grid
points spanned, jobs run more than once, runs per process, and how late each tick was produced
(the first tick waits for the processes to start, so it is shown apart).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import redis.asyncio as aioredis

from jobqueue import JobState, Queue

from . import cli

ROOT = Path(__file__).resolve().parents[1]


async def measure(url: str, seconds: float, every: float, n: int) -> str:
    prefix = "jqbench" + uuid.uuid4().hex[:8]
    q = Queue("beat", redis=url, prefix=prefix)
    side = aioredis.Redis.from_url(url)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = str(ROOT / "tests" / "engine" / "schedule_proc.py")
    try:
        await q.upsert_scheduler("beat", every=every, name="beat")
        procs = [
            subprocess.Popen(
                [sys.executable, proc, url, prefix, "beat", "0.05"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            for _ in range(n)
        ]
        for p in procs:
            assert p.stdout is not None
            p.stdout.readline()
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            await asyncio.sleep(0.2)
        for p in procs:
            p.kill()
            p.wait()
        ids = set()
        for state in (JobState.WAITING, JobState.ACTIVE, JobState.COMPLETED):
            ids |= set(await q.get_job_ids(state, limit=100_000))
        ticks = []
        for job_id in ids:
            raw = await side.hget(q.keys.jobs, job_id)
            if raw is not None and job_id.startswith("sched:beat:"):
                ticks.append((int(job_id.rsplit(":", 1)[1]), int(json.loads(raw)["ts"])))
        ticks.sort()
        runs = [json.loads(x) for x in await side.lrange(f"{prefix}:test:log", 0, -1)]
    finally:
        keys = [k async for k in side.scan_iter(match=f"{prefix}:*")]
        if keys:
            await side.delete(*keys)
        await side.aclose()
        await q.close()
    every_ms = round(every * 1000)
    late = [created - tick for tick, created in ticks]
    span = (ticks[-1][0] - ticks[0][0]) // every_ms + 1
    twice = sum(v > 1 for v in Counter(r["id"] for r in runs).values())
    per_pid = sorted(Counter(r["pid"] for r in runs).values())
    return (
        f"{n} processes, every {every}s for {seconds}s: {len(ticks)} ticks over {span} grid "
        f"points, jobs run twice: {twice}, runs per process {per_pid}; first tick produced "
        f"{late[0]} ms late (processes starting: the ticks it missed were coalesced), later "
        f"ticks median {statistics.median(late[1:]):.0f} ms, max {max(late[1:])} ms late"
    )


def main() -> None:
    cli.main("python -m bench.schedules", __doc__, measure, seconds=10.0, every=0.2, workers=3)


if __name__ == "__main__":
    main()
