"""A real worker process for the schedule tests: ticks the queue's schedulers and records each
job it runs.

    python schedule_proc.py REDIS_URL PREFIX QUEUE SCHEDULER_INTERVAL

Each run appends `{"id", "pid"}` to `<prefix>:test:log`. Prints "ready" once the worker runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys

from jobqueue import Job, Queue, Worker, connect


async def main() -> None:
    url, prefix, name, interval = sys.argv[1:5]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    queue = Queue(name, redis=url, prefix=prefix)
    side = connect(url)

    async def handler(job: Job) -> None:
        await side.rpush(f"{prefix}:test:log", json.dumps({"id": job.id, "pid": os.getpid()}))

    worker = Worker(queue, handler, concurrency=2, scheduler_interval=float(interval))
    print("ready", flush=True)
    await worker.run()
    await side.aclose()
    await queue.close()


if __name__ == "__main__":
    asyncio.run(main())
