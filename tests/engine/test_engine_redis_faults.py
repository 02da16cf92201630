"""A worker never ends on a Redis error: out of memory (during add and during finish), BUSY (a
long script of another client), READONLY (the master demoted to a replica), a restart,
NOREPLICAS, MISCONF (a failed snapshot), LOADING (the data loading after a restart).

Each test starts a Redis server of its own (a free loopback port, its own directory) and changes
its config; the shared test server is never touched. The faults last until the worker has met
them (its on_error hook saw the error), then are lifted; every job must complete exactly once
(leases are long: no lease may be lost), and the worker's task only ends on `close()`.
"""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from engine_helpers import HANG, wait_for
from redis.exceptions import BusyLoadingError, ReadOnlyError, ResponseError
from servers import RedisProcess, free_port

from jobqueue import Job, Queue, QueueConfig, QueueEvents, QueueFullError, Worker
from jobqueue.core.connection import CONNECTION_ERRORS
from jobqueue.core.scripts import FASTCONN_ENV

FAST = {"lease": 30.0, "stall_interval": 0.2, "drain_delay": 0.2, "heartbeat_interval": 0.05}


def _binary() -> str | None:
    # Debian's redis-server 7 when present (the target), else the bundled Valkey
    return shutil.which("redis-server")


@pytest.fixture
def server() -> Iterator[RedisProcess]:
    """A Redis of this test's own: with an append-only file fsynced at every write, so that a
    restart keeps every job."""
    extra = ["--appendonly", "yes", "--appendfsync", "always", "--busy-reply-threshold", "50",
             "--enable-protected-configs", "local"]  # fmt: skip  # `dir` (MISCONF's test)
    proc = RedisProcess(_binary(), extra=extra).start()
    try:
        yield proc
    finally:
        proc.close()


@pytest.fixture
async def admin(server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(server.url)
    yield client
    await client.aclose()


class Run:
    """One worker running in this process, counting handler runs and the errors it met."""

    def __init__(self, queue: Queue, *, handler: Any = None, concurrency: int = 8) -> None:
        self.queue = queue
        self.runs: Counter[str] = Counter()
        self.errors: list[BaseException] = []
        self.gate = asyncio.Event()
        self.gate.set()

        async def count(job: Job) -> dict[str, Any]:
            await self.gate.wait()
            self.runs[job.id] += 1
            return {"i": job.data["i"]}

        self.worker = Worker(
            queue,
            handler or count,
            concurrency=concurrency,
            handle_signals=False,
            reconnect_backoff=(0.01, 0.05),
            error_log_every=0.5,
            on_error=self.errors.append,
        )
        self.task = asyncio.get_running_loop().create_task(self.worker.run())

    async def met(self, kind: type[BaseException] | tuple[type[BaseException], ...]) -> None:
        async def seen() -> bool:
            assert not self.task.done(), self.task
            return any(isinstance(e, kind) for e in self.errors)

        await wait_for(seen, what=f"the worker to meet {kind}")

    async def drained(self, jobs: list[Job]) -> None:
        async def all_done() -> bool:
            assert not self.task.done(), self.task
            if len(self.runs) < len(jobs):
                return False
            counts = await self.queue.get_job_counts()
            return counts["waiting"] == counts["active"] == counts["failed"] == 0

        await wait_for(all_done, timeout=60, what="every job to complete")
        # exactly once each: the faults were shorter than the lease, no outcome was dropped
        assert {j.id for j in jobs} == set(self.runs)
        assert set(self.runs.values()) == {1}, self.runs.most_common(3)

    async def recovered(self) -> None:
        """Wait until the worker no longer says it is degraded (its heartbeat's state)."""

        async def clear() -> bool:
            return self.worker.degraded is None

        await wait_for(clear, what="the degraded state to clear")

    async def close(self) -> None:
        assert not self.task.done(), "the worker ended on its own"
        await self.worker.close()
        await asyncio.wait_for(self.task, HANG)  # ends on close(), without an error


async def _queue(server: RedisProcess, name: str, **options: Any) -> Queue:
    queue = Queue(QueueConfig(name, **{**FAST, **options}), redis=server.url)
    await queue.connect()
    return queue


async def _add(queue: Queue, n: int) -> list[Job]:
    return await queue.add_bulk([("n", {"i": i}) for i in range(n)])


async def _oom(admin: aioredis.Redis) -> None:
    # below what is in use: every write that may grow memory is refused from now on
    await admin.config_set("maxmemory", 1)


# the script flags come with the script text, so EVALSHA honours them on both paths: the
# hiredis fast connection and redis-py (JOBQUEUE_FASTCONN=0)
both_paths = pytest.mark.parametrize("fastconn", ["1", "0"], ids=["fastconn", "redis-py"])


@both_paths
async def test_add_under_oom_raises_queue_full_and_writes_nothing(
    server: RedisProcess, admin: aioredis.Redis, fastconn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FASTCONN_ENV, fastconn)
    queue = await _queue(server, "oom-add")
    assert (queue.scripts.fast is not None) == (fastconn == "1")
    try:
        await _add(queue, 3)
        before = {k: await admin.type(k) for k in await admin.keys("*")}
        stream = await admin.xlen(queue.keys.events)
        await _oom(admin)
        with pytest.raises(QueueFullError, match="out of memory") as info:
            await queue.add("n", {"i": 99})
        assert "nothing written" in str(info.value)
        with pytest.raises(QueueFullError):
            await _add(queue, 50)
        with pytest.raises(QueueFullError):
            await queue.add("n", {"i": 100}, delay=5)
        # nothing half-written: same keys, same counts, no event
        assert {k: await admin.type(k) for k in await admin.keys("*")} == before
        assert (await queue.get_job_counts())["waiting"] == 3
        assert await admin.xlen(queue.keys.events) == stream
        await admin.config_set("maxmemory", 0)
        assert (await queue.add("n", {"i": 101})).id
    finally:
        await queue.close()


@both_paths
async def test_worker_finishes_and_takes_under_oom_and_adds_come_back(
    server: RedisProcess, admin: aioredis.Redis, fastconn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FASTCONN_ENV, fastconn)
    queue = await _queue(server, "oom-finish", keep_completed=(10, None))
    try:
        jobs = await _add(queue, 300)
        run = Run(queue)
        run.gate.clear()  # the first jobs are taken, then held while Redis fills up

        async def busy() -> bool:
            return run.worker.running == run.worker.concurrency

        await wait_for(busy, what="the worker to hold its slots")
        await _oom(admin)
        with pytest.raises(QueueFullError):
            await queue.add("n", {"i": -1})
        run.gate.set()  # finishing (and taking the next jobs) still works under OOM
        await run.drained(jobs)
        # finishing never failed (publishing the queue's limits, a plain HSET, may have)
        assert "take/finish" not in (run.worker.degraded or "")
        with pytest.raises(QueueFullError):
            await queue.add("n", {"i": -1})  # memory still short: adds stay refused
        await admin.config_set("maxmemory", 0)
        more = await _add(queue, 5)
        await run.drained(jobs + more)
        await run.close()
    finally:
        await queue.close()


async def test_busy_script_of_another_client(server: RedisProcess, admin: aioredis.Redis) -> None:
    queue = await _queue(server, "busy")
    try:
        jobs = await _add(queue, 2000)
        run = Run(queue)
        await wait_for(lambda: _some(run), what="jobs to run")
        other = aioredis.Redis.from_url(server.url)
        # a script that spins for 1 s: past busy-reply-threshold (50 ms) every other client
        # is answered BUSY until it ends
        spin = (
            "local t = redis.call('TIME') local s = tonumber(t[1]) * 1e6 + tonumber(t[2]) "
            "while true do local n = redis.call('TIME') "
            "if tonumber(n[1]) * 1e6 + tonumber(n[2]) - s > 1e6 then return 1 end end"
        )
        spinning = asyncio.create_task(other.eval(spin, 0))
        await run.met(ResponseError)
        assert any("BUSY" in str(e) for e in run.errors)
        await spinning
        await other.aclose()
        await run.drained(jobs)
        await run.close()
    finally:
        await queue.close()


async def test_master_demoted_to_replica_then_promoted(
    server: RedisProcess, admin: aioredis.Redis
) -> None:
    queue = await _queue(server, "readonly")
    try:
        jobs = await _add(queue, 2000)
        run = Run(queue)
        await wait_for(lambda: _some(run), what="jobs to run")
        # a replica of a master that is not there: it keeps its data, refuses writes
        await admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        await run.met(ReadOnlyError)

        async def says_degraded() -> bool:
            return bool(run.worker.degraded) and "ReadOnly" in (run.worker.degraded or "")

        await wait_for(says_degraded, what="the worker to say it is degraded")
        await admin.execute_command("REPLICAOF", "NO", "ONE")
        await run.drained(jobs)
        await run.recovered()
        await run.close()
    finally:
        await queue.close()


async def test_redis_restart_under_load(server: RedisProcess, admin: aioredis.Redis) -> None:
    queue = await _queue(server, "restart", lease=5.0)
    try:
        jobs = await _add(queue, 2000)
        run = Run(queue)
        await wait_for(lambda: _some(run), what="jobs to run")
        server.stop()  # SIGTERM: the append-only file (fsync always) keeps every write
        await run.met(CONNECTION_ERRORS)
        server.start()
        await run.drained(jobs)
        await run.close()
    finally:
        await queue.close()


async def _some(run: Run) -> bool:
    return len(run.runs) >= 50


async def test_writes_refused_for_missing_replicas(
    server: RedisProcess, admin: aioredis.Redis
) -> None:
    queue = await _queue(server, "noreplicas")
    try:
        jobs = await _add(queue, 1000)
        run = Run(queue)
        await wait_for(lambda: _some(run), what="jobs to run")
        # NOREPLICAS: the server refuses every write while fewer replicas than this answer
        await admin.config_set("min-replicas-to-write", 1)
        await run.met(ResponseError)
        assert any("NOREPLICAS" in str(e) for e in run.errors)
        await admin.config_set("min-replicas-to-write", 0)
        await run.drained(jobs)
        await run.close()
    finally:
        await queue.close()


async def test_writes_refused_after_a_failed_snapshot(
    server: RedisProcess, admin: aioredis.Redis, tmp_path: Any
) -> None:
    queue = await _queue(server, "misconf")
    workdir = (await admin.config_get("dir"))["dir"]
    try:
        jobs = await _add(queue, 1000)
        run = Run(queue)
        await wait_for(lambda: _some(run), what="jobs to run")
        # MISCONF: a snapshot that could not be written (its directory is gone) makes the
        # server refuse every write while `save` points are set
        gone = tmp_path / "gone"
        gone.mkdir()
        await admin.config_set("save", "3600 1")
        await admin.config_set("dir", str(gone))
        gone.rmdir()
        await admin.bgsave()

        async def snapshot_failed() -> bool:
            return (await admin.info("persistence"))["rdb_last_bgsave_status"] == "err"

        await wait_for(snapshot_failed, what="the snapshot to fail")
        await run.met(ResponseError)
        assert any("MISCONF" in str(e) for e in run.errors)
        assert run.worker.degraded is not None
        # a snapshot that succeeds lifts it
        await admin.config_set("dir", workdir)
        await admin.bgsave()
        await run.drained(jobs)
        await run.recovered()
        await run.close()
    finally:
        await queue.close()


@pytest.fixture
def slow_loading() -> Iterator[RedisProcess]:
    """A Redis whose append-only file loads slowly after a restart (hidden test configs:
    a delay per key loaded, and clients answered `LOADING` every KB of it)."""
    extra = ["--appendonly", "yes", "--appendfsync", "always", "--key-load-delay", "500",
             "--loading-process-events-interval-bytes", "1024"]  # fmt: skip
    proc = RedisProcess(_binary(), extra=extra).start()
    try:
        yield proc
    finally:
        proc.close()


async def test_redis_loading_its_data_after_a_restart(slow_loading: RedisProcess) -> None:
    queue = await _queue(slow_loading, "loading")
    try:
        jobs = await _add(queue, 2000)
        run = Run(queue)
        await wait_for(lambda: _some(run), what="jobs to run")
        slow_loading.stop()  # SIGTERM: the append-only file keeps every write
        slow_loading.start()  # its port opens at once; the data takes seconds to load
        await run.met(BusyLoadingError)  # LOADING: every command refused meanwhile
        await run.drained(jobs)
        await run.close()
    finally:
        await queue.close()


async def test_queue_events_read_through_busy(
    server: RedisProcess, admin: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A reader of the event stream retries a Redis error (here `BUSY`: another client's long
    script) from the last id it saw, and carries on once it is over."""
    queue = await _queue(server, "events")
    other = aioredis.Redis.from_url(server.url)
    try:
        seen: list[str] = []
        spin = (
            "local t = redis.call('TIME') local s = tonumber(t[1]) * 1e6 + tonumber(t[2]) "
            "while true do local n = redis.call('TIME') "
            "if tonumber(n[1]) * 1e6 + tonumber(n[2]) - s > 3e6 then return 1 end end"
        )
        spinning = asyncio.create_task(other.eval(spin, 0))

        async def busy() -> bool:
            try:
                await admin.ping()
            except ResponseError as exc:
                return "BUSY" in str(exc)
            return False

        await wait_for(busy, what="the server to answer BUSY")
        events = QueueEvents(queue, last_id="0", block=0.05)

        async def read() -> None:
            async for event in events:
                seen.append(event.job_id)

        reader = asyncio.create_task(read())  # its first read meets BUSY

        async def retried() -> bool:
            return any("BUSY" in r.getMessage() for r in caplog.records)

        await wait_for(retried, what="the reader to meet BUSY and retry")
        await spinning
        job = await queue.add("n", {"i": 1})

        async def delivered() -> bool:
            return job.id in seen

        await wait_for(delivered, what="the reader to see the job's event")
        assert not reader.done()
        await events.close()
        await asyncio.wait_for(reader, HANG)
    finally:
        await other.aclose()
        await queue.close()
