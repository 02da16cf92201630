"""The pipeline plugin's pages: what they read from PostgreSQL, and the handlers."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from uuid import UUID

import asyncpg
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from jobqueue import redact
from jobqueue.dashboard import DashboardHost, dashboard_of, render
from pipeline.budget_report import get_day_budget
from pipeline.db import create_pool
from pipeline.settings import get_settings
from pipeline.webhooks.log import list_deliveries

__all__ = ["NAME", "close_pool", "run_page", "runs_page", "webhooks_page"]

NAME = "pipeline"
PAGE = 25
log = logging.getLogger(__name__)

_RUNS = """
SELECT a.id, a.user_id, a.sector_name, a.status, a.user_tier, a.budget_usd, a.spent_usd,
       a.reserved_usd, a.budget_exceeded_at, a.created_at, a.completed_at, a.error_message,
       (SELECT count(*) FROM sub_sector s WHERE s.sector_analysis_id = a.id) AS sub_sectors,
       (SELECT count(*) FROM stock k JOIN sub_sector s ON s.id = k.sub_sector_id
         WHERE s.sector_analysis_id = a.id) AS stocks,
       (SELECT count(*) FROM stock_analysis x JOIN stock k ON k.id = x.stock_id
         JOIN sub_sector s ON s.id = k.sub_sector_id WHERE s.sector_analysis_id = a.id) AS attempts
FROM sector_analysis a ORDER BY a.created_at DESC, a.id LIMIT $1 OFFSET $2
"""
_RUN = "SELECT * FROM sector_analysis WHERE id = $1"
_SUB_SECTORS = """
SELECT id, name, status, thesis, error_message FROM sub_sector
WHERE sector_analysis_id = $1 ORDER BY created_at, name
"""
_STOCKS = """
SELECT k.id, k.sub_sector_id, k.ticker, k.name, k.rank, k.status, k.rejections
FROM stock k JOIN sub_sector s ON s.id = k.sub_sector_id
WHERE s.sector_analysis_id = $1 ORDER BY k.rank, k.ticker
"""
_ATTEMPTS = """
SELECT x.stock_id, x.attempt, x.status, x.approved, x.verdict, x.input_tokens, x.output_tokens,
       x.cost_usd, x.error_message
FROM stock_analysis x JOIN stock k ON k.id = x.stock_id
JOIN sub_sector s ON s.id = k.sub_sector_id
WHERE s.sector_analysis_id = $1 ORDER BY x.attempt
"""


async def _pool(request: Request) -> asyncpg.Pool:
    """The plugin's pool for this app, made on first use (in the serving event loop)."""
    dash = dashboard_of(request)
    state = dash.plugin_state.setdefault(NAME, {"database_url": None})
    pool = state.get("pool")
    if pool is None:
        lock = state.setdefault("lock", asyncio.Lock())
        async with lock:
            pool = state.get("pool")
            if pool is None:
                url = state.get("database_url") or get_settings().database_url
                if not url:
                    raise HTTPException(503, "no database: set DATABASE_URL")
                try:
                    pool = await create_pool(url, min_size=0, max_size=4)
                except (OSError, asyncpg.PostgresError) as exc:
                    raise HTTPException(503, f"database unreachable: {exc}") from None
                state["pool"] = pool
    return pool


async def close_pool(dash: DashboardHost) -> None:
    """Close this app's pool, if one was made."""
    pool = dash.plugin_state.get(NAME, {}).pop("pool", None)
    if pool is not None:
        await pool.close()


def _share(spent: float, budget: float | None) -> float | None:
    if budget is None:
        return None
    return spent / budget if budget > 0 else (1.0 if spent > 0 else 0.0)


def _run(row: Any) -> dict[str, Any]:
    out = dict(row)
    for key in ("budget_usd", "spent_usd", "reserved_usd"):
        out[key] = None if out.get(key) is None else float(out[key])
    out["share"] = _share(out["spent_usd"], out["budget_usd"])
    if out.get("error_message"):
        out["error_message"] = redact(out["error_message"])
    return out


def _verdict(value: Any) -> str:
    if value is None:
        return ""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return redact(text if len(text) <= 400 else text[:399] + "…")


async def runs_page(request: Request) -> Response:
    """The runs, newest first, with their counts and spend, and the day's budget."""
    pool = await _pool(request)
    try:
        page = max(0, min(int(request.query_params.get("page", 0)), 1000))
    except ValueError:
        page = 0
    rows = await pool.fetch(_RUNS, PAGE + 1, page * PAGE)
    settings = get_settings()
    day = await get_day_budget(pool, settings.budget_org, settings.daily_budget_usd)
    return render(
        request,
        "pipeline/runs.html",
        {
            "nav": NAME,
            "runs": [_run(r) for r in rows[:PAGE]],
            "page": page,
            "more": len(rows) > PAGE,
            "day": day,
            "day_share": _share(day.spent_usd, day.budget_usd),
            "deliveries": await list_deliveries(pool, limit=10),
        },
    )


async def run_page(request: Request) -> Response:
    """One run: sub-sectors, their stocks, each stock's analysis and judge attempts."""
    pool = await _pool(request)
    try:
        run_id = UUID(request.path_params["run_id"])
    except ValueError:
        raise HTTPException(404, "no such run") from None
    row = await pool.fetchrow(_RUN, run_id)
    if row is None:
        raise HTTPException(404, "no such run")
    attempts: dict[Any, list[dict[str, Any]]] = {}
    for a in await pool.fetch(_ATTEMPTS, run_id):
        item = dict(a)
        item["cost_usd"] = float(item["cost_usd"])
        item["verdict"] = _verdict(item["verdict"])
        item["error_message"] = redact(item["error_message"] or "")
        attempts.setdefault(a["stock_id"], []).append(item)
    stocks: dict[Any, list[dict[str, Any]]] = {}
    for s in await pool.fetch(_STOCKS, run_id):
        stocks.setdefault(s["sub_sector_id"], []).append(
            {**dict(s), "attempts": attempts.get(s["id"], [])}
        )
    subs = [
        {**dict(s), "stocks": stocks.get(s["id"], [])}
        for s in await pool.fetch(_SUB_SECTORS, run_id)
    ]
    return render(
        request,
        "pipeline/run.html",
        {
            "nav": NAME,
            "run": _run(row),
            "sub_sectors": subs,
            "deliveries": await list_deliveries(pool, run_id=run_id, limit=50),
        },
    )


async def webhooks_page(request: Request) -> Response:
    """The webhook delivery log: every try, newest first."""
    pool = await _pool(request)
    return render(
        request,
        "pipeline/webhooks.html",
        {"nav": NAME, "deliveries": await list_deliveries(pool, limit=200)},
    )
