"""Durable mode on one master and its replica, on the fast path and through redis-py: a WAIT
after each change while the replica is there; none while the master has no replica (each WAIT
would block the connection for `durable_timeout`, and every command of the queue behind it),
every change reported short at once; WAITs again once the replica is back.

Every wait is on a state (deadlines only bound a hang)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cluster_helpers import wait_for
from redis.exceptions import RedisError

from jobqueue import NotDurableError, Queue, QueueConfig
from jobqueue.core.connection import connect
from jobqueue.testing import RedisServer
from jobqueue.testing.cluster import server_binary

pytestmark = [pytest.mark.integration]


@pytest.fixture
def pair() -> Iterator[tuple[RedisServer, RedisServer]]:
    """A master and its replica of this test's own (the test stops the replica)."""
    master = RedisServer(server_binary()).start()
    replica = RedisServer(server_binary(), extra=["--replicaof", "127.0.0.1", str(master.port)])
    try:
        replica.start()
        yield master, replica
    finally:
        replica.close()
        master.close()


async def replicas(redis: Any) -> int:
    return int((await redis.info("replication"))["connected_slaves"])


async def waits(redis: Any) -> int:
    """How many WAIT commands the master ran so far."""
    return int((await redis.info("commandstats")).get("cmdstat_wait", {}).get("calls", 0))


@pytest.mark.parametrize("fast", ["1", "0"], ids=["fast path", "redis-py"])
async def test_durable_mode_does_not_wait_while_the_master_has_no_replica(
    pair: tuple[RedisServer, RedisServer], fast: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBQUEUE_FASTCONN", fast)
    master, replica = pair
    admin = connect(master.url)
    redis = connect(master.url)
    follower = connect(replica.url)
    q = Queue(QueueConfig("d", durable_replicas=1, durable_timeout=1.0), redis=redis, prefix="dd")
    try:

        async def replica_in_sync() -> bool:
            try:
                link = (await follower.info("replication")).get("master_link_status")
            except RedisError:  # stopped, or loading
                return False
            return link == "up" and await replicas(admin) == 1

        await wait_for(replica_in_sync, "the replica to connect")
        await q.add("x", {"n": 1})  # acknowledged by the replica: no error
        assert await waits(admin) >= 1

        replica.stop(kill=True)

        async def replica_gone() -> bool:
            return await replicas(admin) == 0

        await wait_for(replica_gone, "the master to see its replica gone")
        with pytest.raises(NotDurableError) as short:
            await q.add("x", {"n": 2})  # the one WAIT that finds no replica
        assert (short.value.acked, short.value.wanted) == (0, 1)
        assert "within 1000 ms" in str(short.value)
        before = await waits(admin)
        # from now on, no WAIT until the replica is back; each add is stored and reported
        # short at once, the other changes go on (logged once)
        with pytest.raises(NotDurableError) as again:
            await q.add("x", {"n": 3}, job_id="j3")
        assert "not waited for" in str(again.value)
        await q.pause()
        await q.resume()
        assert await waits(admin) == before
        assert (await q.get_job_counts())["waiting"] == 3

        replica.start()
        await wait_for(replica_in_sync, "the replica to come back")

        async def durable_again() -> bool:
            try:
                await q.add("x", {"n": 4}, job_id="j4")  # the same id each time: one job
            except NotDurableError:
                return False  # the master is asked again every durable_timeout
            return True

        await wait_for(durable_again, "an add acknowledged by the replica again")
        assert await waits(admin) > before
        assert (await q.get_job_counts())["waiting"] == 4
    finally:
        await q.obliterate(force=True)
        await q.close()
        await redis.aclose()
        await admin.aclose()
        await follower.aclose()
