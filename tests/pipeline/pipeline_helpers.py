"""Helpers of the pipeline tests."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from pipeline.settings import Settings


async def wait_row(pool: asyncpg.Pool, sql: str, *args: Any, timeout: float = 30.0) -> Any:
    """Re-run `sql` until it returns a truthy value (a state reached), or fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await pool.fetchval(sql, *args)
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {sql} {args}")
        await asyncio.sleep(0.02)


def fast_settings(redis_url: str, database_url: str, prefix: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "database_url": database_url,
        "prefix": prefix,
        "llm_mode": "offline",
        "rejection_delay": 0.05,
        "infra_retry_delay": 0.1,
        "retry_scale": 0.002,
        "lease": 2.0,
        "stall_interval": 0.2,
        "drain_delay": 0.3,
        "shutdown_grace": 1.0,
    }
    values.update(extra)
    return Settings(**values)
