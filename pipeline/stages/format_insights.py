"""Stage 6, `format-insights`: turn a stock's approved analysis (its judge review's result,
its child in the stock's flow) into validated insights; the stock is completed. The ranking,
parent of the stock's tree, completes the sub-sector once every tree has ended."""

from __future__ import annotations

from typing import Any

from jobqueue import Job, UnrecoverableError
from pipeline.models import FormatInsightsPayload, Insights
from pipeline.prompts import format_prompt
from pipeline.runs import run_of_stock
from pipeline.runtime import Runtime
from pipeline.stages.base import Stage, fail_stock, record_usage
from pipeline.status import update_job_status

__all__ = ["STAGE"]

_ANALYSIS = """
SELECT a.id, a.stock_id, a.analysis, a.approved, s.ticker, s.name, s.sub_sector_id,
       ss.sector_analysis_id
FROM stock_analysis a JOIN stock s ON s.id = a.stock_id
JOIN sub_sector ss ON ss.id = s.sub_sector_id WHERE a.id = $1 AND a.stock_id = $2
"""


async def approved_analysis(job: Job) -> str | None:
    """The analysis its judge review approved (the child's result), None when it has none."""
    for result in (await job.children_results()).values():
        if isinstance(result, dict) and result.get("approved"):
            return str(result["stock_analysis_id"])
    return None


async def run(rt: Runtime, job: Job, p: FormatInsightsPayload) -> dict[str, Any]:
    await job.update_progress(0)
    analysis_id = await approved_analysis(job)
    a = None if analysis_id is None else await rt.pool.fetchrow(_ANALYSIS, analysis_id, p.stock_id)
    if a is None or not a["approved"]:
        raise UnrecoverableError(
            f"no approved analysis of stock {p.stock_id} among {job.id}'s children: formatting "
            "runs in the stock's flow, as the parent of its judge review"
        )
    await job.update_progress(20)
    ask = format_prompt(a["ticker"], a["name"] or a["ticker"], a["analysis"] or "")
    insights, result = await rt.llm.structured(
        tier="format",
        system=ask.system,
        context=ask.context,
        prompt=ask.prompt,
        schema=Insights,
        seed_key=a["ticker"],
    )
    await job.update_progress(70)
    async with rt.pool.acquire() as conn, conn.transaction():
        await record_usage(conn, job, "format-insights", [result], a["sector_analysis_id"])
        await conn.execute(
            "UPDATE stock_analysis SET insights = $2::jsonb, status = 'completed', "
            "completed_at = now() WHERE id = $1",
            a["id"],
            insights.model_dump(),
        )
        await conn.execute(
            "UPDATE stock SET status = 'completed', completed_at = now() WHERE id = $1",
            a["stock_id"],
        )
        # the domain change and the job's status row commit together
        await update_job_status(job.id, progress=90, conn=conn)
    await job.update_progress(90)
    await job.update_progress(100)
    return {"ticker": a["ticker"], "verdict": insights.verdict, "stock_analysis_id": str(a["id"])}


async def on_final_failure(rt: Runtime, job: Job, p: FormatInsightsPayload, error: str) -> None:
    await fail_stock(rt, p.stock_id, [f"formatting failed: {error}"])


STAGE = Stage("format-insights", FormatInsightsPayload, run, on_final_failure, run_of=run_of_stock)
