"""PostgreSQL cut off in the middle of a run: jobs wait for it without spending attempts,
and the run and its status rows converge once it is back."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pipeline_helpers import fast_settings, wait_row

from jobqueue.core.connection import connect
from pipeline import db
from pipeline.ai import OfflineLLM
from pipeline.flow import approve_subsector, start_sector_research
from pipeline.runtime import Runtime, set_runtime
from pipeline.status import get_jobs_by_related_id
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
    pool = await db.create_pool(url, command_timeout=2.0, connect_timeout=2.0)
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
        for _ in range(1000):
            if await rt.redis.zcard(analysis.keys.active) > 0:
                break
            await asyncio.sleep(0.01)
        await proxy.stop()  # PostgreSQL unreachable: connections cut, new ones refused
        await asyncio.sleep(2.0)  # the outage (nothing to wait on: it is the fault itself)
        await proxy.start()
        await wait_row(
            rt.pool, "SELECT status = 'completed' FROM sub_sector WHERE id=$1", sub, timeout=60
        )
        statuses = await rt.pool.fetch(
            "SELECT status FROM stock WHERE sub_sector_id=$1 AND rank <= 5", sub
        )
        assert [r["status"] for r in statuses] == ["completed"] * 5
        deferred = [
            f
            for _, f in await rt.redis.xrange(analysis.keys.events)
            if f.get(b"ev") == b"retrying" and b"unavailable" in f.get(b"em", b"")
        ]
        assert deferred, "some analysis waited for the database"
        for _ in range(1000):
            rows = await get_jobs_by_related_id(str(run_id))
            if rows and all(r.status == "completed" and r.progress == 100 for r in rows):
                break
            await asyncio.sleep(0.05)
        rows = await get_jobs_by_related_id(str(run_id))
        assert all(r.status == "completed" and r.progress == 100 for r in rows), [
            (r.job_id, r.status, r.progress) for r in rows if r.status != "completed"
        ]
    finally:
        await workers.close()
        await task
