"""`python -m bench.profile_worker [--concurrency 10] [--calls 2] [--jobs 30000] [--top 15]`:
where one worker's time goes while it drains no-op jobs, by cProfile.

Starts a private redis-server, fills a queue with `--jobs` jobs (the benchmark's 200 B pad),
then drains it with one `Worker(concurrency=, calls_in_flight=)` in this process under cProfile
and prints the top frames by own time. cProfile counts wall time and roughly doubles the
Python work, so read the shares, not the totals: time inside `socket.send` is where the kernel
hands a call to Redis (on a small machine the scheduler often runs Redis right then).
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats

from jobqueue import Job, Queue, QueueConfig, Worker

from .cli import parser
from .server import PrivateRedis


async def profile(url: str, concurrency: int, calls: int, jobs: int, top: int) -> str:
    queue = Queue(QueueConfig("bench"), redis=url)
    await queue.connect()
    for _ in range(0, jobs, 1000):
        await queue.add_bulk([("noop", {"t": 0.0, "pad": "x" * 200}) for _ in range(1000)])
    done = asyncio.Event()
    seen = 0

    async def handler(job: Job) -> None:
        nonlocal seen
        job.data["t"]  # what the benchmark's handler reads
        seen += 1
        if seen == jobs:
            done.set()

    worker = Worker(
        queue, handler, concurrency=concurrency, calls_in_flight=calls, handle_signals=False
    )
    prof = cProfile.Profile()
    prof.enable()
    task = asyncio.get_running_loop().create_task(worker.run())
    await done.wait()
    prof.disable()
    await worker.close()
    await task
    await queue.close()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> None:
    p = parser(
        "python -m bench.profile_worker", __doc__, redis=False,
        concurrency=10, calls=2, jobs=30000, top=15,
    )  # fmt: skip
    args = p.parse_args()
    with PrivateRedis() as server:
        print(asyncio.run(profile(server.url, args.concurrency, args.calls, args.jobs, args.top)))


if __name__ == "__main__":
    main()
