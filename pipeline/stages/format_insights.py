"""Stage 6, `format-insights`: turn an approved analysis into validated insights, then
complete the sub-sector when all its stocks are finished (exactly once)."""

from __future__ import annotations

from typing import Any

from jobqueue import Job, UnrecoverableError
from pipeline.models import FormatInsightsPayload, Insights
from pipeline.prompts import format_prompt
from pipeline.runs import run_of_analysis
from pipeline.runtime import Runtime
from pipeline.stages.base import (
    Stage,
    complete_subsector_if_done,
    fail_stock_of_analysis,
    record_usage,
)
from pipeline.status import update_job_status

__all__ = ["STAGE"]

_ANALYSIS = """
SELECT a.stock_id, a.analysis, a.approved, s.ticker, s.name, s.sub_sector_id,
       ss.sector_analysis_id
FROM stock_analysis a JOIN stock s ON s.id = a.stock_id
JOIN sub_sector ss ON ss.id = s.sub_sector_id WHERE a.id = $1
"""


async def run(rt: Runtime, job: Job, p: FormatInsightsPayload) -> dict[str, Any]:
    await job.update_progress(0)
    a = await rt.pool.fetchrow(_ANALYSIS, p.stock_analysis_id)
    if a is None or not a["approved"]:
        raise UnrecoverableError(f"no approved stock analysis {p.stock_analysis_id}")
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
            p.stock_analysis_id,
            insights.model_dump(),
        )
        await conn.execute(
            "UPDATE stock SET status = 'completed', completed_at = now() WHERE id = $1",
            a["stock_id"],
        )
        # the domain change and the job's status row commit together
        await update_job_status(job.id, progress=90, conn=conn)
        completed = await complete_subsector_if_done(
            conn, a["sub_sector_id"], rt.settings.stocks_to_analyze, rt=rt
        )
    await job.update_progress(90)
    await job.update_progress(100)
    return {"ticker": a["ticker"], "verdict": insights.verdict, "sub_sector_completed": completed}


async def on_final_failure(rt: Runtime, job: Job, p: FormatInsightsPayload, error: str) -> None:
    await fail_stock_of_analysis(rt, p.stock_analysis_id, f"formatting failed: {error}")


STAGE = Stage(
    "format-insights", FormatInsightsPayload, run, on_final_failure, run_of=run_of_analysis
)
