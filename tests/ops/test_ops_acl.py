"""The engine under least-privilege Redis ACL users (`jobqueue.acl`), on a private server: a
worker user adds and runs jobs, flows, schedules and cancels with nothing refused, and can
reach nothing outside its prefix nor any dangerous command; a read-only user sees counts,
jobs and `inspect`, and every change it tries is refused by Redis, leaving the job as it was."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError

from jobqueue import Child, Job, JobState, Queue, QueueConfig, Worker
from jobqueue.acl import readonly_acl, worker_acl
from jobqueue.testing import RedisServer

pytestmark = pytest.mark.integration

PREFIX = "aclq"
HANG = 60.0


@pytest.fixture
async def acl_server() -> AsyncIterator[tuple[RedisServer, aioredis.Redis]]:
    """A private server with the users `worker` and `viewer`; yields (server, admin client)."""
    server = RedisServer(shutil.which("redis-server")).start()
    admin = aioredis.Redis(port=server.port)
    await admin.execute_command("ACL", "SETUSER", "worker", "on", ">w-pw", *worker_acl(PREFIX))
    await admin.execute_command("ACL", "SETUSER", "viewer", "on", ">v-pw", *readonly_acl(PREFIX))
    await admin.execute_command("ACL", "LOG", "RESET")
    yield server, admin
    await admin.aclose()
    server.close()


def url(server: RedisServer, user: str) -> str:
    return f"redis://{user}:{user[0]}-pw@127.0.0.1:{server.port}/0"


async def denials(admin: aioredis.Redis) -> list[tuple[Any, Any]]:
    entries = await admin.execute_command("ACL", "LOG")
    return [(dict(zip(e[::2], e[1::2], strict=True))[b"object"]) for e in entries]


async def until(check: Any) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HANG
    while not await check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_worker_user_runs_everything_and_nothing_more(
    acl_server: tuple[RedisServer, aioredis.Redis],
) -> None:
    server, admin = acl_server
    q = Queue(QueueConfig("acl", drain_delay=0.05), redis=url(server, "worker"), prefix=PREFIX)
    try:
        await q.add_bulk([("n", {"i": i}) for i in range(20)])
        await q.add_flow("parent", children=[Child(queue=q, name="child")])
        await q.upsert_scheduler("tick", every=0.05, name="tick", data={})
        ran: list[str] = []

        async def handler(job: Job) -> str:
            ran.append(job.name)
            return job.name

        worker = Worker(q, handler, concurrency=4)
        task = asyncio.create_task(worker.run())

        async def enough() -> bool:
            return ran.count("n") == 20 and "parent" in ran and "tick" in ran

        await until(enough)
        delayed = await q.add("later", delay=60)
        assert await q.cancel(delayed.id) == "removed"
        await worker.close()
        await asyncio.wait_for(task, HANG)
        assert await denials(admin) == []  # nothing the engine did was refused
        # and nothing beyond the prefix, nor a dangerous command
        user = aioredis.Redis.from_url(url(server, "worker"))
        for command in (
            ("FLUSHALL",), ("KEYS", "*"), ("CONFIG", "SET", "maxmemory", "1"),
            ("GET", "other:key"), ("EVAL", "return 1", "0"), ("SCRIPT", "FLUSH"),
            ("FUNCTION", "FLUSH"), ("SHUTDOWN",),
        ):  # fmt: skip
            with pytest.raises(NoPermissionError):
                await user.execute_command(*command)
        await user.aclose()
    finally:
        await q.remove_scheduler("tick")
        await q.close()


async def test_a_read_only_user_sees_and_cannot_change(
    acl_server: tuple[RedisServer, aioredis.Redis],
) -> None:
    server, _ = acl_server
    writer = Queue(QueueConfig("acl"), redis=url(server, "worker"), prefix=PREFIX)
    viewer = Queue(QueueConfig("acl"), redis=url(server, "viewer"), prefix=PREFIX)
    try:
        job = await writer.add("n", {"secret": "no"}, job_id="j1")
        before = await writer.get_job_counts()
        assert await viewer.get_job_counts() == before
        seen = await viewer.get_job(job.id)
        assert seen is not None and seen.state == JobState.WAITING
        assert await viewer.get_job_ids(JobState.WAITING) == ["j1"]
        for change in (
            viewer.add("n", {}),
            viewer.remove(job.id),
            viewer.cancel(job.id),
            viewer.pause(),
            viewer.retry_job(job.id),
        ):
            with pytest.raises(NoPermissionError):
                await change
        assert await writer.get_job_counts() == before
        still = await writer.get_job(job.id)
        assert still is not None and still.state == JobState.WAITING
        # inspect runs under the read-only user
        out = subprocess.run(
            [sys.executable, "-m", "jobqueue.inspect", "--redis", url(server, "viewer"),
             "--prefix", PREFIX],
            capture_output=True, text=True, timeout=HANG,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "acl" in out.stdout and "v-pw" not in out.stdout + out.stderr
    finally:
        await viewer.close()
        await writer.close()


def test_a_prefix_that_is_no_key_pattern_is_refused() -> None:
    for bad in ("", "a*", "a b", "x?"):
        with pytest.raises(ValueError, match="ACL key pattern"):
            worker_acl(bad)


def test_the_readme_gives_these_rules() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert " ".join(worker_acl("jq")) in readme
    assert " ".join(readonly_acl("jq")) in readme
