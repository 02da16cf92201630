"""Tasks, RQ style: decorate functions, enqueue calls, read what they returned.

    REDIS_URL=redis://127.0.0.1:6379/0 python examples/tasks.py   # enqueue, run a worker here

Or run this module's workers in a process of their own, as `rq worker` does, and enqueue from
anywhere that imports it (`from examples.tasks import count_words`):

    python -m jobqueue worker examples.tasks --concurrency 4        # from the repository root

`examples/hello.py` shows the layer underneath: a handler that receives the job.
"""

from __future__ import annotations

import asyncio
import os

from jobqueue import Queue, QueueConfig, Worker

queue = Queue(
    QueueConfig("tasks-example", attempts=3),
    redis=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    prefix=os.environ.get("EXAMPLE_PREFIX", "example"),
)


@queue.task
async def count_words(text: str) -> dict[str, int]:
    words = text.lower().split()
    return {"words": len(words), "unique": len(set(words))}


@queue.task(attempts=1, priority=5)
async def add(a: int, b: int) -> int:
    return a + b


@queue.task(name="slugify")
def slugify(title: str) -> str:  # a plain def: the worker runs it in its thread pool
    return "-".join(title.lower().split())


async def main() -> None:
    jobs = {
        "count_words": await count_words.enqueue("the quick brown fox jumps over the lazy dog"),
        "add": await queue.enqueue(add, 2, b=3),  # the same, through the queue
        "slugify": await slugify.enqueue_call(["Tasks, RQ Style"]),  # arguments apart
    }
    worker = Worker(queue, queue.tasks, concurrency=4)  # runs registered functions only
    runner = asyncio.create_task(worker.run())
    for name, job in jobs.items():
        print(name, "->", await job.wait_until_finished(timeout=10))
    print("called here, no job:", await add(20, 22))
    await worker.close()
    await runner
    await queue.obliterate(force=True)
    await queue.close()


if __name__ == "__main__":
    asyncio.run(main())
