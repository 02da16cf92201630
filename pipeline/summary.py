"""The end-of-run summary: sub-sectors, ranked stocks, verdicts, re-runs, tokens, cost, time."""

from __future__ import annotations

import sys
from uuid import UUID

from rich.console import Console
from rich.table import Table

from pipeline.budget_report import get_run_budget
from pipeline.runtime import Runtime
from pipeline.usage_report import cache_share

__all__ = ["print_summary"]


async def print_summary(rt: Runtime, run_id: UUID, seconds: float) -> None:
    """Print what a run produced."""
    console = Console(width=None if sys.stdout.isatty() else 120)
    pool = rt.pool
    run = await pool.fetchrow("SELECT sector_name, status FROM sector_analysis WHERE id=$1", run_id)
    subs = await pool.fetch(
        "SELECT id, name, status FROM sub_sector WHERE sector_analysis_id=$1 ORDER BY name", run_id
    )
    console.print(f"\n[bold]{run['sector_name']}[/bold]: run {run_id} is {run['status']}")
    console.print("sub-sectors: " + ", ".join(f"{s['name']} ({s['status']})" for s in subs))
    for sub in subs:
        if sub["status"] in ("awaiting_approval",):
            continue
        table = Table(title=f"{sub['name']}: ranked stocks")
        for col in ("rank", "ticker", "name", "status", "rejections", "verdict", "confidence"):
            table.add_column(col)
        rows = await pool.fetch(
            """
            SELECT s.rank, s.ticker, s.name, s.status, s.rejections,
                   a.insights->>'verdict' AS verdict, a.insights->>'confidence' AS confidence
            FROM stock s LEFT JOIN stock_analysis a
              ON a.stock_id = s.id AND a.status = 'completed'
            WHERE s.sub_sector_id = $1 ORDER BY s.rank
            """,
            sub["id"],
        )
        for r in rows:
            table.add_row(
                str(r["rank"]),
                r["ticker"],
                r["name"] or "",
                r["status"],
                str(r["rejections"]),
                r["verdict"] or "-",
                r["confidence"] or "-",
            )
        console.print(table)
    reruns = await pool.fetchval(
        "SELECT count(*) FROM stock_analysis a JOIN stock s ON s.id = a.stock_id "
        "JOIN sub_sector ss ON ss.id = s.sub_sector_id "
        "WHERE ss.sector_analysis_id = $1 AND a.attempt > 1",
        run_id,
    )
    rejected = await pool.fetchval(
        "SELECT count(*) FROM stock_analysis a JOIN stock s ON s.id = a.stock_id "
        "JOIN sub_sector ss ON ss.id = s.sub_sector_id "
        "WHERE ss.sector_analysis_id = $1 AND a.approved = false",
        run_id,
    )
    usage = await pool.fetchrow(
        "SELECT coalesce(sum(input_tokens), 0) AS i, coalesce(sum(output_tokens), 0) AS o, "
        "coalesce(sum(cost_usd), 0) AS c, count(*) AS calls FROM llm_usage WHERE related_id = $1",
        str(run_id),
    )
    jobs = await pool.fetchval("SELECT count(*) FROM job_status WHERE related_id = $1", str(run_id))
    console.print(
        f"judge rejections: {rejected}, re-runs: {reruns}; jobs: {jobs}; model calls: "
        f"{usage['calls']}, tokens in/out: {usage['i']}/{usage['o']}, cost: ${usage['c']:.4f}; "
        f"time: {seconds:.1f}s"
    )
    console.print((await cache_share(pool, run_id)).line(), markup=False, soft_wrap=True)
    budget = await get_run_budget(pool, run_id)
    if budget is not None:
        line = budget.line()
        if budget.spent_usd > 0 and not usage["c"]:
            # the offline model costs nothing; the budget counts it at the configured models'
            # prices so that budgets behave offline as they would online
            line += " (offline: priced as the configured models)"
        console.print(line, markup=False, highlight=False, soft_wrap=True)
