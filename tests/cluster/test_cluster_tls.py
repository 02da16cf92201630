"""Redis Cluster over TLS (`rediss+cluster://`): a local cluster whose nodes, bus and
replication speak TLS with a CA made for the test. The fast path speaks TLS to every master
itself (one connection per master, slots from `CLUSTER SHARDS`' `tls-port`s), a worker drains
queues on three masters through it, durable mode waits for replicas over TLS, and a client that
trusts another CA is refused.

Every wait is on a state (deadlines only bound a hang)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from certs import make_ca
from cluster_helpers import HANG, spread_names, wait_for
from redis.exceptions import ConnectionError as RedisConnectionError

from jobqueue import Job, Queue, QueueConfig, Worker
from jobqueue.core.connection import connect
from jobqueue.core.fastroute import ClusterFastConnection
from jobqueue.testing import ClusterServers

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ClusterServers, Path]]:
    """A TLS cluster of this module's own, and a CA that did not sign its certificates."""
    if shutil.which("openssl") is None or shutil.which("redis-server") is None:
        pytest.skip("needs openssl and the redis-server binary (built with TLS)")
    root = tmp_path_factory.mktemp("cluster-tls")
    ca, cert, key = make_ca(root / "ca", "jobqueue cluster CA")
    other_ca, _, _ = make_ca(root / "other", "another CA")
    with ClusterServers(shutil.which("redis-server"), tls=(ca, cert, key)) as servers:
        yield servers, other_ca


async def test_a_worker_drains_queues_on_three_masters_over_tls(
    tls_cluster: tuple[ClusterServers, Path],
) -> None:
    cluster, _ = tls_cluster
    assert cluster.url.startswith("rediss+cluster://")
    redis = connect(cluster.url)
    names = spread_names(cluster, "tls")
    queues = [Queue(QueueConfig(n, durable_replicas=1), redis=redis, prefix="tls") for n in names]
    done: list[str] = []

    async def handler(job: Job) -> dict[str, int]:
        done.append(job.id)
        return {"i": job.data["i"]}

    workers = [Worker(q, handler, concurrency=4, handle_signals=False) for q in queues]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        jobs = [j for q in queues for j in await q.add_bulk([("x", {"i": i}) for i in range(50)])]
        fast = queues[0].scripts.fast
        # the fast path, over TLS, to the TLS ports of the masters (not redis-py's fallback)
        assert isinstance(fast, ClusterFastConnection)
        tls_ports = {cluster.tls_port_of(n) for n in cluster.nodes}

        async def all_done() -> bool:
            return len(done) >= len(jobs)

        await wait_for(all_done, "every job to complete")
        assert sorted(done) == sorted(j.id for j in jobs)
        masters = fast.masters
        assert len(masters) == 3 and {port for _, port in masters} <= tls_ports
        assert all(fast._conn(addr).tls is not None for addr in masters)
        first = await queues[0].get_job(jobs[0].id)
        assert first is not None and first.result == {"i": 0}
        for q in queues:
            assert (await q.get_job_counts())["completed"] == 50
    finally:
        for w in workers:
            await w.close()
        await asyncio.wait_for(asyncio.gather(*tasks), HANG)
        for q in queues:
            await q.obliterate(force=True)
            await q.close()
        await redis.aclose()


async def test_a_client_that_trusts_another_ca_is_refused(
    tls_cluster: tuple[ClusterServers, Path],
) -> None:
    cluster, other_ca = tls_cluster
    url = cluster.url.split("?")[0] + f"?ssl_ca_certs={quote(str(other_ca))}"
    redis = connect(url)
    q = Queue(QueueConfig("tls-refused"), redis=redis, prefix="tls")
    try:
        with pytest.raises((RedisConnectionError, OSError)):
            await q.add("x", {})
    finally:
        await q.close()
        await redis.aclose()
