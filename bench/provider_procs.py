"""The pipeline as processes for the provider benchmark (`bench.provider_run`): starting and
stopping them, a database of their own, and what they left in it. Nothing here imports the
pipeline: it runs as `python -m pipeline ...`."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ROOT", "PipelineProcess", "read_outcome", "temporary_database"]

ROOT = Path(__file__).resolve().parent.parent


class PipelineProcess:
    """A pipeline process (`python ARGV...` from the repository root) with its output in a
    log file."""

    def __init__(self, label: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.label, self.proc, self.log = label, proc, log

    @classmethod
    async def start(
        cls, label: str, argv: list[str], env: dict[str, str], logs: Path
    ) -> PipelineProcess:
        log = logs / f"{label.replace(' ', '_')}.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *argv,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        return cls(label, proc, log)

    def tail(self, chars: int = 800) -> str:
        """The end of the process's output."""
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-chars:].strip()
        return ""

    async def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()


@contextlib.asynccontextmanager
async def temporary_database(admin_url: str, name: str) -> AsyncIterator[str]:
    """Create database `name` on the server of `admin_url`; yield its URL; drop it (FORCE)."""
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield urlsplit(admin_url)._replace(path=f"/{name}").geturl()
    finally:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def read_outcome(database_url: str) -> dict[str, Any]:
    """What the runs left in PostgreSQL: run statuses, analysed and failed stocks (and those
    the judge rejected for good), model calls recorded, cost, failed jobs."""
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        runs = await conn.fetch("SELECT status, count(*) AS n FROM sector_analysis GROUP BY status")
        stocks = await conn.fetchrow(
            """
            SELECT count(*) AS total,
                   count(*) FILTER (WHERE status = 'failed') AS failed,
                   count(*) FILTER (WHERE status = 'failed'
                                    AND final_reasons::text LIKE '%rejected % times%') AS judged
            FROM stock WHERE status <> 'ranked'
            """
        )
        usage = await conn.fetchrow(
            "SELECT count(*) AS calls, coalesce(sum(cost_usd), 0)::float8 AS cost FROM llm_usage"
        )
        jobs_failed = await conn.fetchval("SELECT count(*) FROM job_status WHERE status = 'failed'")
    finally:
        await conn.close()
    by_status = {r["status"]: int(r["n"]) for r in runs}
    return {
        "sectors": by_status,
        "stocks_total": int(stocks["total"]),
        "stocks_failed": int(stocks["failed"]),
        "stocks_rejected_by_judge": int(stocks["judged"]),
        "llm_calls_recorded": int(usage["calls"]),
        "cost_usd": float(usage["cost"]),
        "jobs_failed": int(jobs_failed),
    }
