"""Whole offline runs through the real stages (real Redis and PostgreSQL): what a new user sees
is about the sector asked for, and a sector the universe does not know still completes."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from pipeline_helpers import wait_row

from pipeline.ai.universe import universe
from pipeline.flow import approve_subsector, start_sector_research
from pipeline.runtime import Runtime

pytestmark = pytest.mark.integration


async def _run(runtime: Runtime, sector: str) -> tuple[UUID, UUID]:
    """Research `sector`, approve its first sub-sector by name (as the demo does), and wait
    until that sub-sector is completed; returns (run id, sub-sector id)."""
    run_id = await start_sector_research(sector, "u1", runtime=runtime)
    pool = runtime.pool
    await wait_row(
        pool, "SELECT status = 'awaiting_approval' FROM sector_analysis WHERE id=$1", run_id
    )
    sub = await pool.fetchval(
        "SELECT id FROM sub_sector WHERE sector_analysis_id=$1 ORDER BY name LIMIT 1", run_id
    )
    await approve_subsector(sub, runtime=runtime)
    await wait_row(pool, "SELECT status = 'completed' FROM sub_sector WHERE id=$1", sub)
    await wait_row(pool, "SELECT status = 'completed' FROM sector_analysis WHERE id=$1", run_id)
    return run_id, sub


async def test_a_health_care_run_names_health_care_companies(
    runtime: Runtime, workers: Any
) -> None:
    await workers()
    run_id, sub = await _run(runtime, "Health Care")
    pool = runtime.pool
    health = universe().sector("Health Care")
    assert health is not None
    research = await pool.fetchval("SELECT research FROM sector_analysis WHERE id=$1", run_id)
    assert research.startswith("Health Care overview.")
    names = await pool.fetch("SELECT name FROM sub_sector WHERE sector_analysis_id=$1", run_id)
    assert {r["name"] for r in names} <= {s.name for s in health.sub_sectors}
    stocks = await pool.fetch(
        "SELECT ticker, name, rank, status FROM stock WHERE sub_sector_id=$1 ORDER BY rank", sub
    )
    assert len(stocks) == 10
    assert {s["ticker"] for s in stocks} <= {c.ticker for c in health.companies}
    for s in stocks:
        listing = universe().listing(s["ticker"])
        assert listing is not None and s["name"] == listing.name
    analyses = await pool.fetch(
        "SELECT s.ticker, s.name, a.analysis, a.insights FROM stock_analysis a "
        "JOIN stock s ON s.id = a.stock_id WHERE s.sub_sector_id = $1 AND a.status='completed'",
        sub,
    )
    assert len(analyses) == 5
    for a in analyses:
        assert f"{a['name']} ({a['ticker']})" in a["analysis"]
        assert a["ticker"] in a["insights"]["thesis"]


async def test_an_unknown_sector_completes_with_a_mix_that_says_so(
    runtime: Runtime, workers: Any
) -> None:
    await workers()
    run_id, sub = await _run(runtime, "Crypto")
    pool = runtime.pool
    research = await pool.fetchval("SELECT research FROM sector_analysis WHERE id=$1", run_id)
    assert "'Crypto' is not one of the 11 GICS sectors" in research
    thesis = await pool.fetchval("SELECT thesis FROM sub_sector WHERE id=$1", sub)
    assert "cross-sector mix" in thesis
    stocks = await pool.fetch("SELECT ticker, status FROM stock WHERE sub_sector_id=$1", sub)
    assert len(stocks) == 10 and all(universe().listing(s["ticker"]) for s in stocks)
    assert sum(s["status"] == "completed" for s in stocks) == 5
