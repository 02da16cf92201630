"""PostgreSQL cut off in the middle of a run: jobs wait for it without spending attempts,
and the run and its status rows converge once it is back."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pipeline_helpers import fast_settings, rows_settled, wait_for, wait_row

from jobqueue import connect
from pipeline import db
from pipeline.ai import OfflineLLM
from pipeline.flow import approve_subsector, start_sector_research
from pipeline.runtime import Runtime, set_runtime
from pipeline.settings import JOB_TYPES
from pipeline.workers import Workers

sys.path.insert(0, str(Path(__file__).parent.parent / "status"))
from status_helpers import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture
async def proxied(
    redis_url: str, database_url: str, prefix: str
) -> AsyncIterator[tuple[Runtime, TcpProxy]]:
    proxy = TcpProxy(database_url)
    await proxy.start()
    url = proxy.url_for(database_url)
    pool = await db.create_pool(url, command_timeout=10.0, connect_timeout=10.0)
    await db.migrate(pool)
    rt = await Runtime.create(
        fast_settings(redis_url, url, prefix), redis=connect(redis_url), pool=pool
    )
    rt.use_llm(OfflineLLM(latency=0.3))
    db.set_pool(pool)
    set_runtime(rt)
    yield rt, proxy
    set_runtime(None)
    db.set_pool(None)
    await proxy.start() if proxy._server is None else None
    await rt.close()
    await proxy.stop()


async def deferrals(rt: Runtime) -> list[tuple[str, dict[bytes, bytes]]]:
    """Jobs of any stage that waited for the database (a retry that spent no attempt)."""
    found = []
    for job_type in JOB_TYPES:
        for _, f in await rt.redis.xrange(rt.queues[job_type].keys.events):
            if f.get(b"ev") == b"retrying" and b"unavailable" in f.get(b"em", b""):
                found.append((job_type, f))
    return found


async def test_postgres_outage_mid_run(proxied: tuple[Runtime, TcpProxy]) -> None:
    rt, proxy = proxied
    workers = Workers(rt)
    task = asyncio.create_task(workers.run())
    try:
        run_id = await start_sector_research("Materials", "u", runtime=rt)
        await wait_row(
            rt.pool, "SELECT status = 'awaiting_approval' FROM sector_analysis WHERE id=$1", run_id
        )
        sub = await rt.pool.fetchval(
            "SELECT id FROM sub_sector WHERE sector_analysis_id=$1 ORDER BY name LIMIT 1", run_id
        )
        await approve_subsector(sub, runtime=rt)
        analysis = rt.queues["stock-analysis"]

        async def analysing() -> bool:
            return await rt.redis.zcard(analysis.keys.active) > 0

        await wait_for(analysing, what="an analysis running")
        # PostgreSQL unreachable (connections cut, new ones refused) while the run is in flight:
        # every stage still to run writes to it, so some job must wait for it. The outage lasts
        # until one did, however long that takes.
        await proxy.stop()
        waited = await wait_for(lambda: deferrals(rt), what="a job waiting for the database")
        await proxy.start()
        await wait_row(rt.pool, "SELECT status = 'completed' FROM sub_sector WHERE id=$1", sub)
        statuses = await rt.pool.fetch(
            "SELECT status FROM stock WHERE sub_sector_id=$1 AND rank <= 5", sub
        )
        # an analysis has a single attempt: had the wait spent it, its stock would have failed
        assert [r["status"] for r in statuses] == ["completed"] * 5
        assert all(f[b"et"] == b"NETWORK_ERROR" for _, f in waited)
        await rows_settled(str(run_id))
    finally:
        await workers.close()
        await task
