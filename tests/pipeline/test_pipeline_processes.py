"""End to end with real `python -m pipeline.workers` processes: two of them share a run, and
a worker killed with SIGKILL in the middle of the analyses does not lose the run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import rows_settled, stop_processes, wait_for, wait_row

from pipeline.flow import approve_subsector, start_sector_research
from pipeline.runtime import Runtime

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def spawn(runtime: Runtime) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []
    s = runtime.settings

    def start(
        latency: float = 0.0, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        full_env = dict(os.environ)
        full_env.update(
            {
                "REDIS_URL": s.redis_url or "",
                "DATABASE_URL": s.database_url or "",
                "PIPELINE_PREFIX": s.prefix,
                "PIPELINE_LLM_MODE": "offline",
                "PIPELINE_OFFLINE_LATENCY": str(latency),
                # long leases: a loaded machine never makes a live worker look dead
                "PIPELINE_LEASE": "30",
                "PIPELINE_STALL_INTERVAL": "0.2",
                "PIPELINE_DRAIN_DELAY": "0.3",
                "PIPELINE_REJECTION_DELAY": "0.1",
                "PIPELINE_RETRY_SCALE": "0.01",
                "PIPELINE_LOG_FORMAT": "json",
                "PIPELINE_MIRROR_CLAIM_IDLE": "1",
                "PYTHONPATH": str(ROOT),
                **(env or {}),
            }
        )
        full_env.pop("ANTHROPIC_API_KEY", None)
        p = subprocess.Popen(
            [sys.executable, "-m", "pipeline.workers", *args],
            env=full_env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        procs.append(p)
        return p

    yield start
    stop_processes(procs)
    for p in procs:
        assert p.stderr is not None
        p.stderr.close()


async def run_to_end(runtime: Runtime) -> Any:
    run_id = await start_sector_research("Energy", "u", runtime=runtime)
    await wait_row(
        runtime.pool,
        "SELECT status = 'awaiting_approval' FROM sector_analysis WHERE id=$1",
        run_id,
    )
    sub = await runtime.pool.fetchval(
        "SELECT id FROM sub_sector WHERE sector_analysis_id=$1 ORDER BY name LIMIT 1", run_id
    )
    await approve_subsector(sub, runtime=runtime)
    return run_id, sub


async def test_two_worker_processes_run_a_sector(runtime: Runtime, spawn: Any) -> None:
    spawn()
    spawn()
    run_id, sub = await run_to_end(runtime)
    await wait_row(runtime.pool, "SELECT status = 'completed' FROM sub_sector WHERE id=$1", sub)
    rows = await rows_settled(str(run_id))
    assert len([r for r in rows if r.job_type == "format-insights"]) == 5
    assert len([r for r in rows if r.job_type == "stock-ranking"]) == 1


async def test_worker_killed_mid_analysis_does_not_lose_the_run(
    runtime: Runtime, spawn: Any
) -> None:
    others = "sector-research,stock-ranking,judge-review,format-insights"
    spawn(0.0, "--queues", others)
    # The victim's analyses take a minute, so they are surely running when it is killed; its
    # short lease lets the replacement's stall check see them as abandoned soon after.
    victim = spawn(60.0, "--queues", "stock-analysis", env={"PIPELINE_LEASE": "5"})
    run_id, sub = await run_to_end(runtime)
    analysis = runtime.queues["stock-analysis"]

    async def analysing() -> bool:
        return await runtime.redis.zcard(analysis.keys.active) > 0

    await wait_for(analysing, what="an analysis running in the victim")
    victim.kill()
    victim.wait()
    assert await analysing(), "the killed worker still holds leases nobody released"
    spawn(0.0, "--queues", "stock-analysis")
    await wait_row(runtime.pool, "SELECT status = 'completed' FROM sub_sector WHERE id=$1", sub)
    stalled = [
        f for _, f in await runtime.redis.xrange(analysis.keys.events) if f.get(b"ev") == b"stalled"
    ]
    assert stalled, "the killed worker's analysis came back through the stall check"
    await rows_settled(str(run_id))
    top = await runtime.pool.fetch(
        "SELECT status FROM stock WHERE sub_sector_id=$1 AND rank <= 5", sub
    )
    assert [r["status"] for r in top] == ["completed"] * 5
