"""The rest of the stack on a real local Redis Cluster: `python -m jobqueue.inspect` on a
`redis+cluster://` URL, and the status mirror folding the events of queues that live on
different masters into PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis
from cluster_helpers import ROOT, spread_names, wait_for

from jobqueue import Job, Queue, QueueConfig, Worker
from jobqueue.core.connection import connect
from jobqueue.testing import ClusterServers
from pipeline import db
from pipeline import status as st
from pipeline.mirror import StatusMirror

pytestmark = [pytest.mark.integration]


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    await db.migrate(database_url)
    p = await db.create_pool(database_url, min_size=1, max_size=4)
    db.set_pool(p)
    yield p
    db.set_pool(None)
    await p.close()


async def test_inspect_and_the_status_mirror_on_a_cluster(
    cluster: ClusterServers, pool: asyncpg.Pool
) -> None:
    prefix = "apps"
    names = spread_names(cluster, prefix, 2)
    redis = connect(cluster.url)
    queues = [Queue(QueueConfig(n, drain_delay=0.2), redis=redis, prefix=prefix) for n in names]
    mirror = StatusMirror(redis, names, prefix=prefix, pool=pool, consumer="t", block_ms=50)
    ids: list[str] = []
    try:
        await mirror.run_once()  # creates the consumer groups before the first event
        for q in queues:
            ids += [(await q.add("job", {"q": q.name})).id for _ in range(3)]

        async def handler(job: Job) -> str:
            return "ok"

        workers = [Worker(q, handler, concurrency=2, handle_signals=False) for q in queues]
        tasks = [asyncio.ensure_future(w.run()) for w in workers]

        async def drained() -> bool:
            counts = [await q.get_job_counts() for q in queues]
            return all(c["completed"] == 3 for c in counts)

        await wait_for(drained, "both queues to drain")
        await asyncio.gather(*(w.close() for w in workers))
        await asyncio.gather(*tasks)

        # the mirror reads both queues' streams (one XREADGROUP per slot) into PostgreSQL
        async def mirrored() -> bool:
            await mirror.run_once()
            rows = [await st.get_job_status(i) for i in ids]
            return all(r is not None and r.status == "completed" for r in rows)

        await wait_for(mirrored, "every job's row to say completed")

        out = subprocess.run(
            [sys.executable, "-m", "jobqueue.inspect", "--redis", cluster.url, "--prefix",
             prefix, "--json"],
            capture_output=True, text=True, cwd=str(ROOT), timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        shown = json.loads(out.stdout)
        text = json.dumps(shown)
        assert all(n in text for n in names)
    finally:
        await mirror.close()
        for q in queues:
            await q.obliterate(force=True)
            await q.close()
        await redis.aclose()


async def test_a_running_job_is_cancelled_through_the_clusters_pub_sub(
    cluster: ClusterServers, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker's cancel listener subscribes on the cluster (a new cluster client reads its
    slot map first: before, every subscription failed with redis-py's KeyError and cancels
    waited for the next lease renewal), and a cancel reaches the handler."""
    redis = connect(cluster.url)
    q = Queue(QueueConfig("cancel-c", lease=60.0), redis=redis, prefix="cc")
    started = asyncio.Event()

    async def handler(job: Job) -> str:
        started.set()
        await asyncio.sleep(3600)
        return "never"

    worker = Worker(q, handler, concurrency=1, handle_signals=False)
    task = asyncio.ensure_future(worker.run())
    try:
        job = await q.add("long", {})
        await asyncio.wait_for(started.wait(), 60)

        async def subscribed() -> bool:
            total = 0
            for node in cluster.nodes:
                if node.running:
                    client = aioredis.Redis(port=node.port)
                    reply = await client.execute_command("PUBSUB", "NUMSUB", q.keys.cancel_channel)
                    total += int(reply[1])
                    await client.aclose()
            return total >= 1

        await wait_for(subscribed, "the cancel listener to subscribe")
        assert await q.cancel(job.id) == "signalled"

        async def cancelled() -> bool:
            return await q.get_job_state(job.id) == "failed"

        await wait_for(cancelled, "the job to end cancelled")
        got = await q.get_job(job.id)
        assert got is not None and got.error_type == "CANCELLED"
        assert not [r for r in caplog.records if "cancel listener" in r.getMessage()]
    finally:
        await worker.close()
        await asyncio.wait_for(task, 60)
        await q.obliterate(force=True)
        await q.close()
        await redis.aclose()
