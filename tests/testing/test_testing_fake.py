"""`jobqueue.testing.fake_redis` and the engine on fakeredis: what it adapts (no shebang, no
server check, no fast socket), the extra clients it makes reaching the same in-memory server,
and the operations surface (cancel over pub/sub, events, inspect helpers, an outage)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis
from redis.asyncio import Connection, UnixDomainSocketConnection

from jobqueue import (
    ConfigError,
    Job,
    JobFailedError,
    JobState,
    Queue,
    QueueConfig,
    Worker,
    cleanup_old_jobs,
    discover_queues,
)
from jobqueue.core._loader import load_script, script_names
from jobqueue.core.connection import (
    CancelSafeConnection,
    check_server,
    connect,
    dedicated_client,
    describe_client,
    is_fakeredis,
)
from jobqueue.core.fastconn import FastConnection
from jobqueue.inspect import overview
from jobqueue.testing import fake_redis

pytestmark = pytest.mark.integration

FAST = {"lease": 0.5, "stall_interval": 0.1, "drain_delay": 0.2, "heartbeat_interval": 0.1}


async def wait_for(predicate: Callable[[], Awaitable[bool]], *, what: str) -> None:
    """Re-check `predicate` until it holds; the deadline only bounds a hang."""
    deadline = time.monotonic() + 20
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.fixture
async def fake() -> AsyncIterator[aioredis.Redis]:
    client = fake_redis()
    yield client
    await client.aclose()


@pytest.fixture
async def workers() -> AsyncIterator[list[tuple[Worker, asyncio.Task[None]]]]:
    started: list[tuple[Worker, asyncio.Task[None]]] = []
    yield started
    for worker, task in started:
        await worker.close(force=True)
        await task


def start(started: list[Any], queue: Queue, handler: Any, **options: Any) -> Worker:
    worker = Worker(queue, handler, handle_signals=False, shutdown_grace=0.5, **options)
    started.append((worker, asyncio.create_task(worker.run())))
    return worker


# -- the client ---------------------------------------------------------------------------


async def test_each_fake_redis_is_a_server_of_its_own_unless_shared(
    fake: aioredis.Redis,
) -> None:
    other = fake_redis()
    server = fakeredis.FakeServer()
    first, second = fake_redis(server=server), fake_redis(server=server)
    try:
        await fake.set("k", "v")
        assert await fake.get("k") == b"v"  # bytes replies, as the engine needs
        assert await other.get("k") is None
        await first.set("shared", "1")
        assert await second.get("shared") == b"1"
    finally:
        for client in (other, first, second):
            await client.aclose()


def test_decoded_replies_are_refused() -> None:
    with pytest.raises(ConfigError, match="decode_responses=True"):
        fake_redis(decode_responses=True)


@pytest.mark.parametrize(("missing", "named"), [("fakeredis", "fakeredis"), ("lupa", "lupa")])
def test_without_fakeredis_or_lua_the_error_names_the_package(
    monkeypatch: pytest.MonkeyPatch, missing: str, named: str
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # what an absent package looks like
    with pytest.raises(ImportError, match=rf"{named}.*fakeredis\[lua\]"):
        fake_redis()


# -- what the engine adapts -----------------------------------------------------------------


async def test_engine_recognises_fakeredis_and_never_opens_a_socket(
    fake: aioredis.Redis,
) -> None:
    direct = fakeredis.FakeAsyncRedis()  # as users make them, without jobqueue.testing
    real = connect("redis://127.0.0.1:1/0")
    try:
        assert is_fakeredis(fake) and is_fakeredis(direct)
        assert not is_fakeredis(real) and not is_fakeredis(aioredis.Redis())
        for client in (fake, direct):
            # its pool's connection class subclasses redis-py's Connection, and its `host`
            # names the in-memory server: a fast socket to it could reach localhost:6379
            assert FastConnection.from_client(client) is None
            q = Queue("adapted", redis=client)
            assert q.scripts.fast is None
            assert describe_client(client).startswith("fakeredis://")
            assert await check_server(client) == {}  # fakeredis has no INFO: not checked
            await q.connect()
            await q.close()
    finally:
        await direct.aclose()
        await real.aclose()


def test_only_redis_py_and_the_engine_connection_classes_take_the_fast_path() -> None:
    class Mine(Connection):
        pass

    for cls, fast in [
        (Connection, True),
        (CancelSafeConnection, True),
        (UnixDomainSocketConnection, True),
        (Mine, False),
    ]:
        kwargs: dict[str, Any] = {"connection_class": cls}
        if cls is UnixDomainSocketConnection:
            kwargs["path"] = "/tmp/jq-none.sock"
        client = aioredis.Redis(connection_pool=aioredis.ConnectionPool(**kwargs))
        assert (FastConnection.from_client(client) is not None) is fast, cls


def test_scripts_without_the_shebang_keep_their_lines() -> None:
    for name in script_names():
        full, bare = load_script(name), load_script(name, shebang=False)
        assert full.source.startswith("#!lua")
        assert bare.source.startswith("-- #!lua")
        assert bare.source.count("\n") == full.source.count("\n")  # same line numbers
        assert bare.source.split("\n", 1)[1] == full.source.split("\n", 1)[1]
        assert bare.sha != full.sha and bare.header == full.header
    assert "flags=no-writes" in load_script("counts", shebang=False).source.split("\n")[0]


async def test_dedicated_clients_reach_the_same_fake_server(fake: aioredis.Redis) -> None:
    direct = fakeredis.FakeAsyncRedis()
    try:
        for client in (fake, direct):
            await client.set("seen", "yes")
            blocker = dedicated_client(client, socket_timeout=5.0, retries=False)
            try:
                assert await blocker.get("seen") == b"yes"
                await client.zadd("marker", {"0": 0})
                assert await blocker.bzpopmin("marker", timeout=5) == (b"marker", b"0", 0.0)
            finally:
                await blocker.aclose()
    finally:
        await direct.aclose()


# -- the engine's surface on fakeredis ------------------------------------------------------


async def test_cancel_of_a_running_job_reaches_its_worker(
    fake: aioredis.Redis, workers: list[Any]
) -> None:
    q = Queue(QueueConfig("cancel", **FAST), redis=fake)
    started = asyncio.Event()

    async def handler(job: Job) -> None:
        started.set()
        await asyncio.Event().wait()  # until cancelled

    job = await q.add("forever", None)
    start(workers, q, handler)
    await asyncio.wait_for(started.wait(), 20)
    assert await q.cancel(job.id, "no longer needed") == "signalled"
    with pytest.raises(JobFailedError, match="no longer needed") as failed:
        await job.wait_until_finished(timeout=20)
    assert failed.value.error_type == "CANCELLED"
    await q.close()


async def test_events_progress_logs_and_workers(fake: aioredis.Redis, workers: list[Any]) -> None:
    q = Queue(QueueConfig("ev", **FAST), redis=fake)

    async def handler(job: Job) -> str:
        await job.update_progress(50)
        await job.log("half way")
        return "done"

    async with q.events(last_id="0") as events:  # "$" would start at the first read
        job = await q.add("x", {"n": 1})
        worker = start(workers, q, handler, name="fake-worker")
        seen: list[str] = []
        async with asyncio.timeout(20):
            async for event in events:
                if event.job_id == job.id:
                    seen.append(event.event)
                if event.event == "completed":
                    break
    assert seen == ["added", "active", "progress", "completed"]
    assert await job.wait_until_finished(timeout=20) == "done"
    assert await q.get_job_logs(job.id) == ["half way"]

    async def registered() -> bool:
        return [w.name for w in await q.get_workers()] == ["fake-worker"]

    await wait_for(registered, what="the worker's heartbeat")
    await worker.close()
    assert await q.get_workers() == []
    await q.close()


async def test_inspect_and_maintenance_helpers(fake: aioredis.Redis, workers: list[Any]) -> None:
    q = Queue(QueueConfig("ops", attempts=1, **FAST), redis=fake, prefix="jqfake")
    other = Queue("idle", redis=fake, prefix="jqfake")
    await other.add("x", None)

    async def handler(job: Job) -> int:
        if job.data == "bad":
            raise ValueError("bad input")
        return 1

    ok, bad = await q.add("x", "good"), await q.add("x", "bad")
    start(workers, q, handler)
    assert await ok.wait_until_finished(timeout=20) == 1
    with pytest.raises(JobFailedError):
        await bad.wait_until_finished(timeout=20)
    assert await discover_queues(fake, "jqfake") == ["idle", "ops"]
    view = {row["name"]: row for row in await overview(fake, "jqfake")}
    assert view["ops"]["counts"]["completed"] == 1 and view["ops"]["counts"]["failed"] == 1
    assert view["idle"]["counts"]["waiting"] == 1
    assert [j.id for j in await q.get_failed_jobs()] == [bad.id]
    assert await q.pause() is True and await q.is_paused()
    assert await q.resume() is True
    assert await cleanup_old_jobs(fake, 0, prefix="jqfake") == 2
    assert await q.get_job(ok.id) is None
    assert await other.obliterate() >= 1
    assert await discover_queues(fake, "jqfake") == ["ops"]
    await q.close()
    await other.close()


async def test_a_lost_server_is_waited_for_then_work_resumes(workers: list[Any]) -> None:
    server = fakeredis.FakeServer()
    client = fake_redis(server=server)
    errors: list[BaseException] = []
    q = Queue(QueueConfig("outage", **FAST), redis=client)
    try:
        first = await q.add("x", 1)
        start(
            workers, q, lambda job: job.data, reconnect_backoff=(0.01, 0.05), on_error=errors.append
        )
        assert await first.wait_until_finished(timeout=20) == 1
        server.connected = False  # fakeredis's way to make the server unreachable

        async def noticed() -> bool:
            return len(errors) >= 2

        await wait_for(noticed, what="the worker to notice the outage")
        server.connected = True
        second = await q.add("x", 2)
        assert await second.wait_until_finished(timeout=20) == 2
        assert await q.get_job_state(first.id) == JobState.COMPLETED
    finally:
        server.connected = True
        await q.close()
        await client.aclose()
