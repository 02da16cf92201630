"""The scripts as a function library (`FCALL`) on a plain fast connection, and by `EVALSHA`
where it cannot run: loaded on first use, loaded again when the server lost it (a restart,
`FUNCTION FLUSH`), a script's own error never retried, and the same jobs either way.

On a server of the module's own: `FUNCTION FLUSH` and `MONITOR` touch nobody else's work."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from engine_helpers import HANG, CommandMonitor
from redis.exceptions import ResponseError
from servers import RedisProcess, unique

from jobqueue import Job, JobState, Queue, QueueConfig, Worker
from jobqueue.acl import worker_acl
from jobqueue.core._library import load_library

pytestmark = [pytest.mark.integration, pytest.mark.not_cluster("one plain server")]

LIBRARY = load_library()


@pytest.fixture(autouse=True)
def _functions_on(monkeypatch: pytest.MonkeyPatch) -> None:
    if os.environ.get("JOBQUEUE_FASTCONN") == "0":
        pytest.skip("the fast path is off: scripts run through redis-py by EVALSHA")
    monkeypatch.delenv("JOBQUEUE_FUNCTIONS", raising=False)


@pytest.fixture
async def admin(own_server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(own_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def queue(own_server: RedisProcess) -> AsyncIterator[Queue]:
    q = Queue(QueueConfig("fn", drain_delay=0.2), redis=own_server.url, prefix=unique("jqfn"))
    yield q
    await q.scripts.aclose()
    await q.close()


async def drain_one(q: Queue) -> str:
    """Add a job and run it with a worker (take behind the wake-up, finish): its id."""
    done = asyncio.Event()

    async def handler(job: Job) -> int:
        done.set()
        return 7

    worker = Worker(q, handler, concurrency=2, handle_signals=False)
    task = asyncio.create_task(worker.run())
    job = await q.add("x", {"n": 1})
    await asyncio.wait_for(done.wait(), HANG)
    await worker.close()
    await task
    return job.id


async def completed(q: Queue, job_id: str) -> bool:
    job = await q.get_job(job_id)
    return job is not None and job.state == JobState.COMPLETED and job.result == 7


async def test_the_scripts_run_as_the_library(
    queue: Queue, admin: aioredis.Redis, own_server: RedisProcess
) -> None:
    async with CommandMonitor(own_server.url) as monitor, monitor.window() as window:
        job_id = await drain_one(queue)
        counts = await queue.get_job_counts()
    assert counts["completed"] == 1 and await completed(queue, job_id)
    assert await admin.function_list(library=LIBRARY.name)
    ran = window.scripts()
    assert {"add_plain", "counts", "finish"} <= set(ran), window.commands
    # every script of the window went as a function, the read-only ones as FCALL_RO
    assert window.names()["EVALSHA"] == window.names()["EVALSHA_RO"] == 0, window.names()
    assert window.count("FCALL_RO", LIBRARY.functions["counts"]) >= 1


async def test_the_library_is_loaded_again_when_the_server_lost_it(
    queue: Queue, admin: aioredis.Redis
) -> None:
    first = await queue.add("x", {"n": 0})
    await admin.function_flush()
    # a plain add's command is packed once with its function's name: loaded, sent again whole
    again = await queue.add("x", {"n": 1})
    assert await queue.get_job(again.id) is not None and await queue.get_job(first.id)
    await admin.function_flush()
    assert (await queue.get_job_counts())["waiting"] == 2  # FCALL_RO, through `_eval`
    await admin.function_flush()
    await queue.scripts.load_all()
    assert await admin.function_list(library=LIBRARY.name)
    await queue.obliterate(force=True)
    await admin.function_flush()
    # the worker's take behind its wake-up, and its finish, after the loss
    assert await completed(queue, await drain_one(queue))


async def test_a_script_error_is_not_sent_again(queue: Queue, admin: aioredis.Redis) -> None:
    await queue.add("x", None)  # the library is loaded
    await admin.delete(queue.keys.wait)
    await admin.set(queue.keys.wait, "not a list")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await queue.add("x", None)
    # it ran once: the job id counter moved by one for the refused add, not two
    assert await admin.get(queue.keys.id_counter) == b"2"


async def test_evalsha_when_functions_are_off(
    own_server: RedisProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBQUEUE_FUNCTIONS", "0")
    q = Queue(QueueConfig("off", drain_delay=0.2), redis=own_server.url, prefix=unique("jqfn"))
    try:
        async with CommandMonitor(own_server.url) as monitor, monitor.window() as window:
            job_id = await drain_one(q)
        assert await completed(q, job_id)
        assert window.names()["FCALL"] == 0 and window.names()["EVALSHA"] >= 2, window.names()
    finally:
        await q.scripts.aclose()
        await q.close()


async def test_a_named_user_runs_the_scripts_by_evalsha(
    own_server: RedisProcess, admin: aioredis.Redis
) -> None:
    """`worker_acl` grants no FUNCTION (a library can be replaced by anyone who may load one):
    a named user's scripts run by EVALSHA, and nothing is asked that the ACL log would show
    as refused."""
    prefix = unique("jqacl")
    await admin.execute_command("ACL", "SETUSER", "fnless", "on", ">pw", *worker_acl(prefix))
    await admin.execute_command("ACL", "LOG", "RESET")
    url = own_server.url.replace("redis://", "redis://fnless:pw@", 1)
    q = Queue(QueueConfig("acl", drain_delay=0.2), redis=url, prefix=prefix)
    try:
        assert await completed(q, await drain_one(q))
        assert q.scripts._fn is False
        assert await admin.execute_command("ACL", "LOG") == []
    finally:
        await q.scripts.aclose()
        await q.close()
        await admin.execute_command("ACL", "DELUSER", "fnless")


@pytest.mark.parametrize(("env", "expected"), [("1", True), ("", False)])
async def test_a_named_user_may_ask_for_the_library(
    own_server: RedisProcess,
    admin: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    env: str,
    expected: bool,
) -> None:
    monkeypatch.setenv("JOBQUEUE_FUNCTIONS", env)
    await admin.execute_command("ACL", "SETUSER", "full", "on", ">pw", "~*", "&*", "+@all")
    url = own_server.url.replace("redis://", "redis://full:pw@", 1)
    q = Queue(QueueConfig("named", drain_delay=0.2), redis=url, prefix=unique("jqfn"))
    try:
        assert await completed(q, await drain_one(q))
        assert q.scripts._fn is expected
    finally:
        await q.scripts.aclose()
        await q.close()
        await admin.execute_command("ACL", "DELUSER", "full")


async def test_a_full_server_keeps_evalsha(own_server: RedisProcess, admin: aioredis.Redis) -> None:
    """A server out of memory refuses `FUNCTION LOAD`: the scripts run by EVALSHA (no load for
    memory to refuse at every call), and `load_all` tries the library again once there is
    room."""
    await admin.function_flush()
    q = Queue(QueueConfig("full", drain_delay=0.2), redis=own_server.url, prefix=unique("jqfn"))
    await admin.config_set("maxmemory", 1)
    try:
        assert (await q.get_job_counts())["waiting"] == 0  # a read-only script, by EVALSHA_RO
        assert q.scripts._fn is False
        assert not await admin.function_list(library=LIBRARY.name)
    finally:
        await admin.config_set("maxmemory", 0)
    await q.scripts.load_all()
    assert q.scripts._fn is True
    assert await completed(q, await drain_one(q))
    await q.scripts.aclose()
    await q.close()
