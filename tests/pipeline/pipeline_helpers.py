"""Helpers of the pipeline tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import loop_helpers

from pipeline.runtime import Runtime
from pipeline.settings import Settings
from pipeline.status import get_jobs_by_related_id

ROOT = Path(__file__).resolve().parents[2]

#: Seconds a wait may last before the test fails: a bound on a hang, never a speed requirement
#: (a whole offline run takes a few seconds; a loaded 2-core machine may take many times that).
HANG = 180.0


async def wait_for(
    check: Callable[[], Awaitable[Any]], *, timeout: float = HANG, what: str = "condition"
) -> Any:
    """`loop_helpers.wait_for` bounded by `HANG` unless told."""
    return await loop_helpers.wait_for(check, timeout, what)


async def wait_row(pool: asyncpg.Pool, sql: str, *args: Any, timeout: float = HANG) -> Any:
    """Re-run `sql` until it returns a truthy value (a state reached), or fail."""
    return await wait_for(lambda: pool.fetchval(sql, *args), timeout=timeout, what=f"{sql} {args}")


async def rows_settled(related_id: str, status: str = "completed") -> list[Any]:
    """Wait until every job row of `related_id` has `status` (and progress 100 if completed),
    read through the process-wide pool; returns the rows."""
    from pipeline.status import get_jobs_by_related_id

    async def settled() -> list[Any] | None:
        rows = await get_jobs_by_related_id(related_id)
        done = all(
            r.status == status and (status != "completed" or r.progress == 100) for r in rows
        )
        return rows if rows and done else None

    rows: list[Any] = await wait_for(settled, what=f"every job row of {related_id} {status}")
    return rows


async def make_stocks(
    rt: Runtime, n: int = 5, status: str = "analyzing"
) -> tuple[UUID, list[UUID]]:
    """A run with one approved sub-sector and `n` ranked stocks (NVDA first: the offline judge
    rejects its first analysis, see `offline_should_reject`)."""
    pool = rt.pool
    run = await pool.fetchval(
        "INSERT INTO sector_analysis (user_id, sector_name, status) VALUES ('u', 'Tech', "
        "'in_progress') RETURNING id"
    )
    sub = await pool.fetchval(
        "INSERT INTO sub_sector (sector_analysis_id, name, thesis, status) VALUES ($1, 'Chips', "
        "'A thesis about chips', 'analyzing') RETURNING id",
        run,
    )
    tickers = ["NVDA", "AMD", "AVGO", "MSFT", "AAPL", "CRM", "V", "JPM", "KO", "PG"]
    stocks = []
    for rank in range(1, n + 1):
        stocks.append(
            await pool.fetchval(
                "INSERT INTO stock (sub_sector_id, ticker, name, rank, rationale, status) "
                "VALUES ($1, $2, $2, $3, 'ranked for a reason', $4) RETURNING id",
                sub,
                tickers[rank - 1],
                rank,
                status,
            )
        )
    return sub, stocks


def fast_settings(redis_url: str, database_url: str, prefix: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "database_url": database_url,
        "prefix": prefix,
        "llm_mode": "offline",
        "rejection_delay": 0.05,
        "infra_retry_delay": 0.1,
        "retry_scale": 0.002,
        # long enough that a starved event loop never loses a lease (no test here kills one)
        "lease": 30.0,
        "stall_interval": 0.2,
        "drain_delay": 0.3,
        "shutdown_grace": 1.0,
    }
    values.update(extra)
    return Settings(**values)


def cli_env(rt: Runtime, **extra: str) -> dict[str, str]:
    """The environment of a pipeline process on the test servers, with test timings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIPELINE_", "ANTHROPIC_")) and k not in ("REDIS_URL", "DATABASE_URL")
    }
    s = rt.settings
    env.update(
        {
            "REDIS_URL": s.redis_url or "",
            "DATABASE_URL": s.database_url or "",
            "PIPELINE_PREFIX": s.prefix,
            "PIPELINE_LLM_MODE": "offline",
            "PIPELINE_REJECTION_DELAY": "0.05",
            "PIPELINE_RETRY_SCALE": "0.01",
            "PIPELINE_DRAIN_DELAY": "0.3",
            "PIPELINE_STALL_INTERVAL": "0.2",
            "PIPELINE_SHUTDOWN_GRACE": "1",
            "PIPELINE_STOCKS_TO_ANALYZE": "2",
            "PYTHONPATH": str(ROOT),
            **extra,
        }
    )
    return env


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run `python -m pipeline ARGS` to its end; returns (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pipeline",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), HANG)  # bounds a hang only
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def stop_processes(procs: list[subprocess.Popen[Any]]) -> None:
    """Terminate the worker processes a test started (SIGTERM, then SIGKILL past 60 s)."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


async def settled_rows(run_id: UUID) -> list[Any]:
    """Every job row of the run once none is waiting or active any more."""

    async def settled() -> list[Any] | None:
        rows = await get_jobs_by_related_id(str(run_id))
        return rows if rows and all(r.finished for r in rows) else None

    rows: list[Any] = await wait_for(settled, what=f"the job rows of run {run_id} to settle")
    return rows
