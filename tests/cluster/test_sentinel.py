"""The engine behind Redis Sentinel (a master, a replica, three sentinels): the URL form, the
fast path resolving the master through the sentinels, and worker processes that follow a
`SENTINEL FAILOVER` without losing a job.

Every wait is on a state (deadlines only bound a hang)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from cluster_helpers import DrainWorker, drain_configs, settle, wait_for
from redis.exceptions import RedisError

from jobqueue import Queue, QueueConfig
from jobqueue.core.connection import connect, describe_client
from jobqueue.core.fastroute import SentinelFastConnection
from jobqueue.testing import SentinelServers

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


async def test_the_fast_path_finds_the_master_through_the_sentinels(
    sentinels: SentinelServers,
) -> None:
    redis = connect(sentinels.url)
    q = Queue(QueueConfig("s1"), redis=redis, prefix="sn")
    try:
        assert describe_client(redis).startswith("redis+sentinel://127.0.0.1:")
        await q.connect()  # the master passes the server checks (a replica would not)
        job = await q.add("x", {"n": 1})
        fast = q.scripts.fast
        assert isinstance(fast, SentinelFastConnection)
        assert fast.port == sentinels.master_port()
        assert (await q.get_job(job.id)) is not None
    finally:
        await q.obliterate(force=True)
        await q.close()
        await redis.aclose()


async def test_workers_follow_a_failover_without_losing_jobs(
    sentinels: SentinelServers, drain_workers: list[DrainWorker]
) -> None:
    prefix = "sf"
    per_queue = 400
    configs = drain_configs(["a", "b"])
    redis = connect(sentinels.url)
    queues = [
        Queue(QueueConfig(n, keep_completed=(None, None)), redis=redis, prefix=prefix)
        for n in ("a", "b")
    ]
    expected: set[tuple[str, str]] = set()
    for q in queues:
        for _ in range(0, per_queue, 100):
            added = await q.add_bulk([("x", {"sleep": 0.005}) for _ in range(100)])
            expected |= {(q.name, j.id) for j in added}
    # every add is on the replica before the failover starts
    assert await redis.execute_command("WAIT", 1, 5000) == 1
    for _ in range(2):
        drain_workers.append(DrainWorker(sentinels.url, prefix, configs, concurrency=4))

    def done() -> set[tuple[str, str]]:
        return {d for w in drain_workers for d in w.done()}

    async def some_done() -> bool:
        return len(done()) >= len(expected) // 4

    await wait_for(some_done, "a quarter of the jobs to complete")
    old = sentinels.master_port()
    watched = queues[0].scripts.fast
    assert isinstance(watched, SentinelFastConnection) and watched.connected
    new = await asyncio.to_thread(sentinels.failover)
    assert new != old

    # the `+switch-master` message alone drops the connection to the old master (this
    # process sends no command meanwhile)
    async def switched() -> bool:
        return watched.switches >= 1 and not watched.connected

    await wait_for(switched, "the sentinels' +switch-master to drop the connection")

    async def all_done() -> bool:
        assert all(w.alive for w in drain_workers), [w.stderr()[-2000:] for w in drain_workers]
        return expected <= done()

    await wait_for(all_done, "every job to complete after the failover")
    assert done() == expected
    await settle(queues, per_queue)
    for q in queues:
        fast = q.scripts.fast
        assert isinstance(fast, SentinelFastConnection)

        # the fast path asks the sentinels again at most `check_interval` after its last
        # question: its commands then go to the new master
        async def moved(q: Queue = q, fast: SentinelFastConnection = fast) -> bool:
            with contextlib.suppress(RedisError):
                await q.get_job_counts()
            return fast.port == new

        await wait_for(moved, f"queue {q.name}'s fast path to reach the new master")
        job = await q.add("after", {})
        on_new = connect(f"redis://127.0.0.1:{new}/0")
        assert await on_new.hexists(q.keys.jobs, job.id)
        await on_new.aclose()
    for q in queues:
        await q.obliterate(force=True)
        await q.close()
    await redis.aclose()
