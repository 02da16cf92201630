"""What process isolation costs per job: `python -m bench.isolation [REDIS_URL] [--jobs N]`.

Drains N trivial jobs (an async handler that returns its data) with one worker of concurrency
2, in-process and then with `isolation="process"`, and prints jobs/s of each and how long the
first isolated job waited for its child to start. The handler is defined in this script, so
the children load it from the script's file (the `__main__` case of a handler reference).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any, Literal

from jobqueue import Job, JobState, Queue, QueueConfig, Worker


async def echo(job: Job) -> Any:
    """The benchmark's handler: returns its data."""
    return job.data


async def _drain(url: str, n: int, isolation: Literal["process"] | None) -> tuple[float, float]:
    prefix = f"bench-iso-{uuid.uuid4().hex[:8]}"
    config = QueueConfig("iso", drain_delay=0.2, keep_completed=(None, None))
    q = Queue(config, redis=url, prefix=prefix)
    try:
        first = await q.add("x", {"i": -1})
        w = Worker(q, echo, concurrency=2, handle_signals=False, isolation=isolation)
        task = asyncio.create_task(w.run())
        t0 = time.perf_counter()
        await first.wait_until_finished(timeout=120)
        startup = time.perf_counter() - t0
        await q.pause()  # all jobs in place first: the drain alone is timed
        jobs = [await q.add("x", {"i": i}) for i in range(n)]
        t1 = time.perf_counter()
        await q.resume()
        while (await q.get_job_counts())["completed"] < n + 1:
            await asyncio.sleep(0.005)
        rate = n / (time.perf_counter() - t1)
        assert await q.get_job_state(jobs[-1].id) == JobState.COMPLETED
        await w.close()
        await task
        await q.obliterate(force=True)
        return rate, startup
    finally:
        await q.close()


async def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.isolation")
    parser.add_argument("url", nargs="?", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--jobs", type=int, default=500)
    args = parser.parse_args()
    modes: tuple[Literal["process"] | None, ...] = (None, "process")
    for mode in modes:
        rate, startup = await _drain(args.url, args.jobs, mode)
        print(
            f"isolation={mode or 'none':8s} {args.jobs} jobs, concurrency 2: {rate:8.0f} jobs/s "
            f"(first job done {startup * 1000:.0f} ms after the worker started)"
        )


if __name__ == "__main__":
    asyncio.run(main())
