"""Helpers of the budget tests: runs with a budget, calls, the amounts they hold and spend."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from pipeline.ai.guard import LLMCall


async def new_run(pool: asyncpg.Pool, budget: str | None) -> UUID:
    """A run with this budget (None: no budget) and nothing spent."""
    run: UUID = await pool.fetchval(
        "INSERT INTO sector_analysis (user_id, sector_name, budget_usd) VALUES ('u', 'Tech', $1) "
        "RETURNING id",
        None if budget is None else Decimal(budget),
    )
    return run


def a_call(run_id: UUID | None, **fields: Any) -> LLMCall:
    """An analysis call of `run_id`; `fields` override the defaults."""
    values: dict[str, Any] = {
        "kind": "complete",
        "tier": "analysis",
        "model": "claude-opus-5-5",
        "system": "You are an analyst.",
        "prompt": "Analyse NVDA.",
        "max_tokens": 1000,
        "run_id": run_id,
    }
    values.update(fields)
    return LLMCall(**values)


async def amounts(pool: asyncpg.Pool, run_id: UUID) -> tuple[Decimal, Decimal]:
    """(spent, reserved) of a run."""
    row = await pool.fetchrow(
        "SELECT spent_usd, reserved_usd FROM sector_analysis WHERE id = $1", run_id
    )
    return row["spent_usd"], row["reserved_usd"]


async def day_amounts(pool: asyncpg.Pool, org: str) -> tuple[Decimal, Decimal]:
    """(spent, reserved) of an organisation today (UTC)."""
    row = await pool.fetchrow(
        "SELECT spent_usd, reserved_usd FROM budget_day WHERE org = $1 "
        "AND day = (now() AT TIME ZONE 'UTC')::date",
        org,
    )
    return row["spent_usd"], row["reserved_usd"]
