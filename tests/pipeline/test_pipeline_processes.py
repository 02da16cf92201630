"""End to end with real `python -m pipeline.workers` processes: two of them share a run, and
a worker killed with SIGKILL in the middle of the analyses does not lose the run."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import wait_row

from pipeline.flow import approve_subsector, start_sector_research
from pipeline.runtime import Runtime
from pipeline.status import get_jobs_by_related_id

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def spawn(runtime: Runtime) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []
    s = runtime.settings

    def start(latency: float = 0.0) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.update(
            {
                "REDIS_URL": s.redis_url or "",
                "DATABASE_URL": s.database_url or "",
                "PIPELINE_PREFIX": s.prefix,
                "PIPELINE_LLM_MODE": "offline",
                "PIPELINE_OFFLINE_LATENCY": str(latency),
                "PIPELINE_LEASE": "1.0",
                "PIPELINE_STALL_INTERVAL": "0.2",
                "PIPELINE_DRAIN_DELAY": "0.3",
                "PIPELINE_REJECTION_DELAY": "0.1",
                "PIPELINE_RETRY_SCALE": "0.01",
                "PIPELINE_LOG_FORMAT": "json",
                "PIPELINE_MIRROR_CLAIM_IDLE": "1",
                "PYTHONPATH": str(ROOT),
            }
        )
        env.pop("ANTHROPIC_API_KEY", None)
        p = subprocess.Popen(
            [sys.executable, "-m", "pipeline.workers"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        assert p.stderr is not None
        p.stderr.close()


async def run_to_end(runtime: Runtime, *, timeout: float = 60.0) -> Any:
    run_id = await start_sector_research("Energy", "u", runtime=runtime)
    await wait_row(
        runtime.pool,
        "SELECT status = 'awaiting_approval' FROM sector_analysis WHERE id=$1",
        run_id,
        timeout=timeout,
    )
    sub = await runtime.pool.fetchval(
        "SELECT id FROM sub_sector WHERE sector_analysis_id=$1 ORDER BY name LIMIT 1", run_id
    )
    await approve_subsector(sub, runtime=runtime)
    return run_id, sub


async def rows_converge(run_id: Any, timeout: float = 30.0) -> list[Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        rows = await get_jobs_by_related_id(str(run_id))
        if rows and all(r.status == "completed" and r.progress == 100 for r in rows):
            return rows
        if loop.time() > deadline:
            raise AssertionError(
                f"rows did not converge: {[(r.job_id, r.status, r.progress) for r in rows]}"
            )
        await asyncio.sleep(0.05)


async def test_two_worker_processes_run_a_sector(runtime: Runtime, spawn: Any) -> None:
    spawn()
    spawn()
    run_id, sub = await run_to_end(runtime)
    await wait_row(
        runtime.pool, "SELECT status = 'completed' FROM sub_sector WHERE id=$1", sub, timeout=60
    )
    rows = await rows_converge(run_id)
    assert len([r for r in rows if r.job_type == "format-insights"]) == 5
    assert len([r for r in rows if r.job_type == "stock-ranking"]) == 1


async def test_worker_killed_mid_analysis_does_not_lose_the_run(
    runtime: Runtime, spawn: Any
) -> None:
    victim = spawn(latency=0.4)
    run_id, sub = await run_to_end(runtime)
    analysis = runtime.queues["stock-analysis"]

    async def analysing() -> bool:
        return await runtime.redis.zcard(analysis.keys.active) > 0

    for _ in range(1000):
        if await analysing():
            break
        await asyncio.sleep(0.01)
    assert await analysing()
    victim.kill()
    victim.wait()
    spawn(latency=0.05)
    await wait_row(
        runtime.pool, "SELECT status = 'completed' FROM sub_sector WHERE id=$1", sub, timeout=60
    )
    stalled = [
        f for _, f in await runtime.redis.xrange(analysis.keys.events) if f.get(b"ev") == b"stalled"
    ]
    assert stalled, "the killed worker's analysis came back through the stall check"
    await rows_converge(run_id)
    top = await runtime.pool.fetch(
        "SELECT status FROM stock WHERE sub_sector_id=$1 AND rank <= 5", sub
    )
    assert [r["status"] for r in top] == ["completed"] * 5
