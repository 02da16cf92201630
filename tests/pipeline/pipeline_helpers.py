"""Helpers of the pipeline tests."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg


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
