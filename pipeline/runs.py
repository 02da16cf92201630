"""Which run (`sector_analysis` id) a job works for, from its payload: one query at most.

Used for the `related_id` of a job's status row (`pipeline.flow`) and, per stage, to attribute
a job's model calls to its run (`Stage.run_of`), so the run's budget applies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import asyncpg

from pipeline.models import (
    FormatInsightsPayload,
    JudgeReviewPayload,
    SectorResearchPayload,
    StockAnalysisPayload,
    StockRankingPayload,
)

__all__ = [
    "RUN_OF",
    "RunOf",
    "run_of_research",
    "run_of_stock",
    "run_of_sub_sector",
]

RunOf = Callable[[asyncpg.Pool, Any], Awaitable[UUID | None]]
"""`(pool, payload) -> run id`, None when the row it names is gone."""


async def run_of_research(pool: asyncpg.Pool, p: SectorResearchPayload) -> UUID | None:
    """The run of a `sector-research` payload: it names it."""
    return p.sector_analysis_id


async def run_of_sub_sector(pool: asyncpg.Pool, p: StockRankingPayload) -> UUID | None:
    """The run of a payload naming a sub-sector."""
    run: UUID | None = await pool.fetchval(
        "SELECT sector_analysis_id FROM sub_sector WHERE id = $1", p.sub_sector_id
    )
    return run


async def run_of_stock(
    pool: asyncpg.Pool, p: StockAnalysisPayload | JudgeReviewPayload | FormatInsightsPayload
) -> UUID | None:
    """The run of a payload naming a stock (the three jobs of a stock's flow)."""
    run: UUID | None = await pool.fetchval(
        "SELECT ss.sector_analysis_id FROM stock s JOIN sub_sector ss ON ss.id = s.sub_sector_id "
        "WHERE s.id = $1",
        p.stock_id,
    )
    return run


RUN_OF: dict[str, RunOf] = {
    "sector-research": run_of_research,
    "stock-ranking": run_of_sub_sector,
    "stock-analysis": run_of_stock,
    "judge-review": run_of_stock,
    "format-insights": run_of_stock,
}
"""The run resolver of each job type."""
