"""Tasks of the end-to-end tests, run by `python -m jobqueue worker sample_tasks`.

Its queues live where `JQ_TEST_TASKS_REDIS_URL` and `JQ_TEST_TASKS_PREFIX` say. Run as a
script it prints the name of its `add` task (the tests compare `python -m` with a path).
"""

from __future__ import annotations

import asyncio
import os

import redis.asyncio as aioredis

from jobqueue import Queue, QueueConfig

URL = os.environ.get("JQ_TEST_TASKS_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("JQ_TEST_TASKS_PREFIX", "jqt-sample")


def fast(name: str) -> Queue:
    config = QueueConfig(
        # a roomy lease: a starved test machine must not make a held job look stalled
        name,
        lease=5.0,
        drain_delay=0.2,
        heartbeat_interval=0.2,
    )
    return Queue(config, redis=URL, prefix=PREFIX)


main = fast("tasks-main")
other = fast("tasks-other")
unused = fast("tasks-unused")  # no tasks: gets no worker


@main.task
async def add(a: int, b: int) -> int:
    return a + b


@main.task(name="describe")
async def describe(values: list[int], *, label: str = "sum") -> dict[str, object]:
    return {"label": label, "total": sum(values), "pair": (values[0], values[-1])}


@main.task(attempts=1)
async def hold(key: str) -> str:
    """Runs until the test pushes to the list `key` (a job that stays running on demand)."""
    client = aioredis.Redis.from_url(URL)
    try:
        while await client.blpop([key], timeout=1) is None:
            pass
        return "released"
    finally:
        await client.aclose()


@other.task
async def echo(value: object) -> object:
    return value


@other.task
def pid() -> int:
    """The process that runs it (a worker, or its child with --isolation process)."""
    return os.getpid()


@other.task
async def loop_name() -> str:
    """The class of the event loop it runs on (JOBQUEUE_LOOP picks it)."""
    loop = type(asyncio.get_running_loop())
    return f"{loop.__module__}.{loop.__qualname__}"


if __name__ == "__main__":
    print(add.name)
