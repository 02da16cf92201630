"""The engine on a real local Redis Cluster (3 masters, 3 replicas): queues spread over the
masters, the fast path routed by hash slot (MOVED and ASK followed), durable mode, and a master
killed (`kill -9`) under worker processes that carry on without losing a job.

Every wait is on a state (deadlines only bound a hang)."""

from __future__ import annotations

import asyncio

import pytest
from cluster_helpers import DrainWorker, drain_configs, settle, spread_names, wait_for
from redis.exceptions import AskError

from jobqueue import NotDurableError, Queue, QueueConfig
from jobqueue.core.connection import connect
from jobqueue.core.fastroute import ClusterFastConnection
from jobqueue.testing import ClusterServers

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


async def test_queues_land_on_different_masters(cluster: ClusterServers) -> None:
    prefix = "spread"
    names = spread_names(cluster, prefix)
    redis = connect(cluster.url)
    queues = [Queue(QueueConfig(n), redis=redis, prefix=prefix) for n in names]
    try:
        for q in queues:
            await q.connect()
            await q.add("x", {"n": 1})
            assert (await q.get_job_counts())["waiting"] == 1
        fast = queues[0].scripts.fast
        assert isinstance(fast, ClusterFastConnection)  # the hot path stays on hiredis
        owners = {fast.node_for(q.keys.wait) for q in queues for fast in [q.scripts.fast]}
        assert len(owners) == 3
        masters = {cluster.master_of(q.keys.wait).port for q in queues}
        assert len(masters) == 3
    finally:
        for q in queues:
            await q.obliterate(force=True)
            await q.close()
        await redis.aclose()


async def test_moved_is_followed_and_the_map_refreshed(cluster: ClusterServers) -> None:
    redis = connect(cluster.url)
    q = Queue(QueueConfig("moved"), redis=redis, prefix="mv")
    try:
        await q.add("x", {})
        fast = q.scripts.fast
        assert isinstance(fast, ClusterFastConnection)
        owner = fast.node_for(q.keys.wait)
        wrong = next(m for m in fast.masters if m != owner)
        from redis.crc import key_slot

        fast._slots[key_slot(q.keys.wait.encode())] = wrong  # a stale map, as after resharding
        refreshes = fast.refreshes
        await q.add("y", {})  # MOVED by `wrong`, then sent to the owner
        assert (await q.get_job_counts())["waiting"] == 2
        assert fast.node_for(q.keys.wait) == owner

        async def refreshed() -> bool:
            return fast.refreshes > refreshes

        await wait_for(refreshed, "the slot map to be read again")
    finally:
        await q.obliterate(force=True)
        await q.close()
        await redis.aclose()


async def test_ask_is_followed_during_a_slot_migration(cluster: ClusterServers) -> None:
    """A slot being migrated: the source answers ASK for a key it does not have; the fast
    path sends ASKING and the command to the target, back to back. (A script whose keys are
    only partly moved gets TRYAGAIN instead: retried, then raised; see docs/cluster.md.)"""
    redis = connect(cluster.url)
    q = Queue(QueueConfig("asked"), redis=redis, prefix="ask")
    from redis.crc import key_slot

    key = q.keys.meta
    slot = key_slot(key.encode())
    source = cluster.master_of(key)
    fast = q.scripts.fast
    assert isinstance(fast, ClusterFastConnection)
    await fast.refresh()
    target_addr = next(m for m in fast.masters if m[1] != source.port)
    src = connect(f"redis://127.0.0.1:{source.port}/0")
    dst = connect(f"redis://127.0.0.1:{target_addr[1]}/0")
    src_id = (await src.execute_command("CLUSTER", "MYID")).decode()
    dst_id = (await dst.execute_command("CLUSTER", "MYID")).decode()
    try:
        await dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        await src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        assert await fast.execute("SET", key, "asked") == b"OK"
        async with dst.pipeline(transaction=False) as pipe:
            pipe.execute_command("ASKING")  # the target serves an importing slot only after it
            pipe.exists(key)
            _, on_target = await pipe.execute()
        assert on_target == 1
        with pytest.raises(AskError):  # the source has no such key: it sends us on
            await src.exists(key)
        assert fast.node_for(key) == ("127.0.0.1", source.port)  # ASK leaves the map alone
    finally:
        await fast.execute("DEL", key)  # asked to the target too, while the slot migrates
        for client in (src, dst):
            await client.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
        await src.aclose()
        await dst.aclose()
        await q.close()
        await redis.aclose()


async def test_durable_mode_waits_for_the_replica(cluster: ClusterServers) -> None:
    redis = connect(cluster.url)
    ok = Queue(QueueConfig("dur", durable_replicas=1), redis=redis, prefix="dur")
    # two replicas asked, one exists: the add is stored but reported as not durable
    short = Queue(
        QueueConfig("dur2", durable_replicas=2, durable_timeout=0.05), redis=redis, prefix="dur"
    )
    try:
        job = await ok.add("x", {})
        assert (await ok.get_job(job.id)) is not None
        with pytest.raises(NotDurableError) as err:
            await short.add("x", {}, job_id="j1")
        assert (err.value.acked, err.value.wanted) == (1, 2)
        assert (await short.get_job_counts())["waiting"] == 1
    finally:
        for q in (ok, short):
            await q.obliterate(force=True)
            await q.close()
        await redis.aclose()


async def test_a_master_killed_mid_run_loses_no_job(
    cluster: ClusterServers, drain_workers: list[DrainWorker]
) -> None:
    """Three queues on three masters, two worker processes draining them; the master of one
    queue is killed (`kill -9`) mid-run, its replica takes over, and every job completes.

    Durable mode (`durable_replicas=1`) makes each change wait for the replica, so that no
    acknowledged change dies with the master (see docs/cluster.md)."""
    prefix = "fo"
    names = spread_names(cluster, prefix)
    per_queue = 300
    configs = drain_configs(names)
    redis = connect(cluster.url)
    queues = [
        Queue(QueueConfig(**{**c, "keep_completed": (None, None)}), redis=redis, prefix=prefix)  # type: ignore[arg-type]
        for c in configs
    ]
    expected: set[tuple[str, str]] = set()
    for q in queues:
        for start in range(0, per_queue, 100):
            added = await q.add_bulk([("x", {"sleep": 0.005}) for _ in range(start, start + 100)])
            expected |= {(q.name, j.id) for j in added}
    for _ in range(2):
        drain_workers.append(DrainWorker(cluster.url, prefix, configs, concurrency=4))

    def done() -> set[tuple[str, str]]:
        return {d for w in drain_workers for d in w.done()}

    async def a_third_done() -> bool:
        return len(done()) >= len(expected) // 3

    await wait_for(a_third_done, "a third of the jobs to complete")
    victim = cluster.master_of(queues[0].keys.wait)
    victim.stop(kill=True)  # kill -9 mid-run
    await asyncio.to_thread(cluster.wait_failover, victim)

    async def all_done() -> bool:
        assert all(w.alive for w in drain_workers), [w.stderr()[-2000:] for w in drain_workers]
        return expected <= done()

    await wait_for(all_done, "every job to complete after the failover")
    assert done() == expected  # none lost, none unknown
    await settle(queues, per_queue)
    for q in queues:
        await q.close()
    await redis.aclose()
