"""The status mirror under faults: PostgreSQL and Redis outages, killed connections, crashes
between upsert and commit, trimmed streams, dead consumers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from status_helpers import HANG, Stream, TcpProxy, uid, wait_until

from pipeline import db
from pipeline import status as st
from pipeline.mirror import JobSnapshot, StatusMirror

MakeMirror = Callable[..., StatusMirror]
MakeProxy = Callable[[str], Awaitable[TcpProxy]]


async def statuses(jobs: list[str]) -> set[str | None]:
    found = [await st.get_job_status(j) for j in jobs]
    return {None if r is None else r.status for r in found}


async def emit_atomically(redis: aioredis.Redis, key: str, events: list[dict[str, str]]) -> None:
    """XADD in one MULTI so a concurrent reader gets all of them or none."""
    async with redis.pipeline(transaction=True) as pipe:
        for fields in events:
            pipe.xadd(key, fields)  # type: ignore[arg-type]
        await pipe.execute()


def lifecycle(jobs: list[str], *events: str) -> list[dict[str, str]]:
    out = []
    for job_id in jobs:
        for ev in events:
            fields = {"ev": ev, "id": job_id, "a": "1", "p": "50"}
            if ev == "added":
                fields.update(name="t", st="waiting")
            out.append(fields)
    return out


async def drain(mirror: StatusMirror) -> int:
    total = 0
    while applied := await mirror.run_once():
        total += applied
    return total


async def test_postgres_outage_loses_nothing(
    stream: Stream,
    make_mirror: MakeMirror,
    make_proxy: MakeProxy,
    migrated_url: str,
    pool: asyncpg.Pool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Events produced while PostgreSQL is unreachable stay pending, then all get applied."""
    caplog.set_level(logging.INFO, logger="pipeline.mirror")
    proxy = await make_proxy(migrated_url)
    mirror = make_mirror(
        # one log line per hour: however long the failures below take, they fall in one interval
        [stream.queue],
        pool=None,
        database_url=proxy.url_for(migrated_url),
        log_interval=3600,
    )
    task = asyncio.create_task(mirror.run())
    jobs = [uid() for _ in range(20)]
    await emit_atomically(stream.redis, stream.key, lifecycle(jobs, "added"))
    await wait_until(lambda: _eq(statuses(jobs), {"waiting"}), what="rows before the outage")

    await proxy.stop()
    await emit_atomically(stream.redis, stream.key, lifecycle(jobs, "active", "completed"))
    await wait_until(lambda: _ge(mirror.stats.failures, 5), what="failed attempts")
    # Read but not acknowledged, and nothing half-written.
    assert await stream.pending() == 40
    assert await statuses(jobs) == {"waiting"}
    warnings = [
        r for r in caplog.records if r.name == "pipeline.mirror" and r.levelno >= logging.WARNING
    ]
    assert len(warnings) == 1, "failures are logged at a bounded rate"
    assert "will be retried" in warnings[0].getMessage()

    await proxy.start()
    await wait_until(lambda: _eq(statuses(jobs), {"completed"}), what="rows after the outage")
    await wait_until(lambda: _eq(stream.pending(), 0), what="entries acknowledged")
    assert any("recovered" in r.getMessage() for r in caplog.records)
    await mirror.close()
    await asyncio.wait_for(task, HANG)


async def test_killed_connections_lose_nothing(
    stream: Stream, make_mirror: MakeMirror, migrated_url: str, pool: asyncpg.Pool
) -> None:
    """The mirror's backends are terminated again and again while events flow."""
    app = uid("mirror-test")
    mirror_pool = await db.create_pool(
        migrated_url, min_size=1, max_size=2, server_settings={"application_name": app}
    )
    try:
        mirror = make_mirror([stream.queue], pool=mirror_pool, batch_size=50)
        task = asyncio.create_task(mirror.run())
        jobs = [uid() for _ in range(200)]
        kill = (
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND application_name = $1"
        )
        for i in range(0, len(jobs), 20):
            chunk = jobs[i : i + 20]
            await emit_atomically(stream.redis, stream.key, lifecycle(chunk, "added", "completed"))
            async with pool.acquire() as admin:
                await admin.fetchval(kill, app)
            await asyncio.sleep(0.01)  # let the mirror pick up the chunk between kills
        await wait_until(lambda: _eq(statuses(jobs), {"completed"}), what="all rows completed")
        await wait_until(lambda: _eq(stream.pending(), 0), what="entries acknowledged")
        await mirror.close()
        await asyncio.wait_for(task, HANG)
    finally:
        await mirror_pool.close()


async def test_connection_killed_inside_the_batch_transaction(
    stream: Stream, make_mirror: MakeMirror, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pg_terminate_backend in the middle of a batch: nothing written, nothing acknowledged."""
    mirror = make_mirror([stream.queue])
    jobs = [uid() for _ in range(5)]
    await emit_atomically(stream.redis, stream.key, lifecycle(jobs, "added", "completed"))
    original = mirror.apply

    async def killed_midway(
        events: list[tuple[str, str, dict[str, str]]], conn: db.Connection
    ) -> int:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        async with pool.acquire() as admin:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        return await original(events, conn)

    monkeypatch.setattr(mirror, "apply", killed_midway)
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
        await mirror.run_once()
    assert await stream.pending() == 10
    assert await statuses(jobs) == {None}
    monkeypatch.undo()
    assert await drain(mirror) == 10
    assert await stream.pending() == 0
    assert await statuses(jobs) == {"completed"}


async def test_nothing_acknowledged_before_commit(
    stream: Stream, make_mirror: MakeMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the upsert but before the commit leaves no row and no acknowledgement."""
    mirror = make_mirror([stream.queue])
    job_id = uid()
    await stream.emit("added", job_id, name="t", st="waiting")
    await stream.emit("completed", job_id, a=1)
    original = mirror.apply

    async def crash(events: list[tuple[str, str, dict[str, str]]], conn: db.Connection) -> int:
        await original(events, conn)
        raise RuntimeError("crash before the commit")

    monkeypatch.setattr(mirror, "apply", crash)
    with pytest.raises(RuntimeError, match="before the commit"):
        await mirror.run_once()
    assert await stream.pending() == 2
    assert await st.get_job_status(job_id) is None
    monkeypatch.undo()
    assert await drain(mirror) == 2  # pending entries are read again first
    assert await stream.pending() == 0
    assert await statuses([job_id]) == {"completed"}


async def test_redis_outage_then_resume(
    stream: Stream,
    make_mirror: MakeMirror,
    make_proxy: MakeProxy,
    redis_url: str,
    pool: asyncpg.Pool,
) -> None:
    proxy = await make_proxy(redis_url)
    client = aioredis.Redis.from_url(
        proxy.url_for(redis_url),
        socket_timeout=30,
        socket_connect_timeout=30,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        mirror = make_mirror([stream.queue], redis=client)
        task = asyncio.create_task(mirror.run())
        jobs = [uid() for _ in range(10)]
        await emit_atomically(stream.redis, stream.key, lifecycle(jobs, "added"))
        await wait_until(lambda: _eq(statuses(jobs), {"waiting"}), what="rows before the outage")
        await proxy.stop()
        await emit_atomically(stream.redis, stream.key, lifecycle(jobs, "active", "completed"))
        await wait_until(lambda: _ge(mirror.stats.failures, 3), what="failed attempts")
        assert await statuses(jobs) == {"waiting"}
        await proxy.start()
        await wait_until(lambda: _eq(statuses(jobs), {"completed"}), what="rows after the outage")
        await wait_until(lambda: _eq(stream.pending(), 0), what="entries acknowledged")
        await mirror.close()
        await asyncio.wait_for(task, HANG)
    finally:
        await client.aclose()


def snapshots_of(
    jobs: list[str], calls: list[str]
) -> Callable[[str], Awaitable[list[JobSnapshot]]]:
    async def reconcile(queue: str) -> list[JobSnapshot]:
        calls.append(queue)
        return [
            JobSnapshot(job_id=j, name="rebuilt", state="completed", progress=100, attempts=1)
            for j in jobs
        ]

    return reconcile


async def test_trimmed_unread_entries_trigger_reconcile(
    stream: Stream, make_mirror: MakeMirror
) -> None:
    calls: list[str] = []
    jobs = [uid() for _ in range(10)]
    mirror = make_mirror([stream.queue], reconcile=snapshots_of(jobs, calls), trim_check_interval=0)
    await mirror.run_once()  # creates the group
    await emit_atomically(stream.redis, stream.key, lifecycle(jobs, "added", "active", "completed"))
    await stream.redis.xtrim(stream.key, maxlen=3, approximate=False)
    await drain(mirror)
    assert calls == [stream.queue]
    assert (mirror.stats.trimmed, mirror.stats.reconciles) == (27, 1)
    rows = [await st.get_job_status(j) for j in jobs]
    assert {(r.status, r.job_type) for r in rows if r is not None} == {("completed", "rebuilt")}
    assert len([r for r in rows if r is not None]) == 10
    await drain(mirror)
    assert calls == [stream.queue], "the same loss is not detected twice"
    # Later events still apply on top of the snapshots.
    await stream.emit("added", jobs[0], name="rebuilt", st="waiting")
    await drain(mirror)
    assert await statuses(jobs[:1]) == {"waiting"}


async def test_trimmed_pending_entries_trigger_reconcile(
    stream: Stream, make_mirror: MakeMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries read but not applied (PostgreSQL failed) and then trimmed come back empty."""
    calls: list[str] = []
    jobs = [uid() for _ in range(5)]
    mirror = make_mirror([stream.queue], reconcile=snapshots_of(jobs, calls))
    await mirror.run_once()
    await emit_atomically(stream.redis, stream.key, lifecycle(jobs, "added", "completed"))

    async def down(*args: object) -> int:
        raise ConnectionRefusedError("PostgreSQL is down")

    monkeypatch.setattr(mirror, "apply", down)
    with pytest.raises(ConnectionRefusedError):
        await mirror.run_once()
    monkeypatch.undo()
    assert await stream.pending() == 10
    await stream.redis.xtrim(stream.key, maxlen=0, approximate=False)
    await drain(mirror)
    assert calls == [stream.queue]
    assert await stream.pending() == 0
    assert await statuses(jobs) == {"completed"}


async def test_trimmed_without_reconcile_is_reported_and_skipped(
    stream: Stream, make_mirror: MakeMirror, caplog: pytest.LogCaptureFixture
) -> None:
    mirror = make_mirror([stream.queue], trim_check_interval=0)
    await mirror.run_once()
    lost, kept = [uid() for _ in range(5)], uid()
    await emit_atomically(stream.redis, stream.key, lifecycle(lost, "added"))
    await stream.redis.xtrim(stream.key, maxlen=0, approximate=False)
    await stream.emit("added", kept, name="t", st="waiting")
    with caplog.at_level(logging.ERROR, logger="pipeline.mirror"):
        await drain(mirror)
        await drain(mirror)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and stream.queue in errors[0].getMessage()
    assert await statuses(lost) == {None}
    assert await statuses([kept]) == {"waiting"}


async def test_group_created_on_an_already_trimmed_stream(
    stream: Stream, make_mirror: MakeMirror
) -> None:
    """A mirror deployed after the stream was trimmed rebuilds the rows it never saw."""
    calls: list[str] = []
    jobs = [uid() for _ in range(4)]
    await emit_atomically(stream.redis, stream.key, lifecycle(jobs, "added", "completed"))
    await stream.redis.xtrim(stream.key, maxlen=1, approximate=False)
    mirror = make_mirror([stream.queue], reconcile=snapshots_of(jobs, calls))
    await drain(mirror)
    assert calls == [stream.queue]
    assert await statuses(jobs) == {"completed"}


async def test_entries_of_a_dead_consumer_are_taken_over(
    stream: Stream, make_mirror: MakeMirror, redis_client: aioredis.Redis
) -> None:
    await redis_client.xgroup_create(stream.key, "status-mirror", id="0", mkstream=True)
    jobs = [uid() for _ in range(3)]
    await emit_atomically(stream.redis, stream.key, lifecycle(jobs, "added", "completed"))
    # A mirror under another name read them and died before acknowledging.
    await redis_client.xreadgroup("status-mirror", "dead", {stream.key: ">"})
    mirror = make_mirror([stream.queue], consumer="live", claim_idle_ms=0, trim_check_interval=0)
    assert await drain(mirror) == 6
    assert await stream.pending() == 0
    assert await statuses(jobs) == {"completed"}


async def _eq(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def _ge(value: int, minimum: int) -> bool:
    return value >= minimum
