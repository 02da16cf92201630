"""Stage 1, `sector-research`: research a sector, store its 3-8 sub-sectors for approval."""

from __future__ import annotations

from typing import Any

from jobqueue import Job
from pipeline.models import SectorResearchPayload, SubSectorList
from pipeline.prompts import research_prompt, subsector_prompt
from pipeline.runs import run_of_research
from pipeline.runtime import Runtime
from pipeline.stages.base import Stage, record_usage
from pipeline.webhooks.events import emit_run_ended

__all__ = ["STAGE"]


async def run(rt: Runtime, job: Job, p: SectorResearchPayload) -> dict[str, Any]:
    await job.update_progress(0)
    await rt.pool.execute(
        "UPDATE sector_analysis SET status = 'researching' WHERE id = $1 "
        "AND status IN ('researching', 'failed')",
        p.sector_analysis_id,
    )
    await job.update_progress(10)
    ask = research_prompt(p.sector_name)
    research = await rt.llm.complete(
        tier="research",
        system=ask.system,
        context=ask.context,
        prompt=ask.prompt,
        web_search=True,
        seed_key=p.sector_name,
    )
    await job.update_progress(60)
    ask = subsector_prompt(p.sector_name, research.text)
    await job.update_progress(70)
    ideas, parsed = await rt.llm.structured(
        tier="research",
        system=ask.system,
        context=ask.context,
        prompt=ask.prompt,
        schema=SubSectorList,
        seed_key=p.sector_name,
    )
    await job.update_progress(90)
    ids = []
    async with rt.pool.acquire() as conn, conn.transaction():
        for idea in ideas.sub_sectors:
            # a retried research upserts by name instead of duplicating sub-sectors
            ids.append(
                await conn.fetchval(
                    """
                    INSERT INTO sub_sector (sector_analysis_id, name, thesis, why_now)
                    VALUES ($1, $2, $3, $4)
                    ON CONFLICT (sector_analysis_id, name)
                    DO UPDATE SET thesis = excluded.thesis, why_now = excluded.why_now
                    RETURNING id
                    """,
                    p.sector_analysis_id,
                    idea.name,
                    idea.thesis,
                    idea.why_now,
                )
            )
        await conn.execute(
            "UPDATE sector_analysis SET research = $2, status = 'awaiting_approval' "
            "WHERE id = $1 AND status = 'researching'",
            p.sector_analysis_id,
            research.text,
        )
        await record_usage(conn, job, "sector-research", [research, parsed], p.sector_analysis_id)
    await job.update_progress(100)
    return {"sub_sector_ids": [str(i) for i in ids]}


async def on_final_failure(rt: Runtime, job: Job, p: SectorResearchPayload, error: str) -> None:
    # a research its budget refused ends the run as such (never seen `failed` first)
    # the run's end and its webhook's enqueueing commit together
    async with rt.pool.acquire() as conn, conn.transaction():
        ended = await conn.fetchval(
            "UPDATE sector_analysis SET status = CASE WHEN budget_exceeded_at IS NULL "
            "THEN 'failed' ELSE 'budget_exceeded' END, error_message = $2 WHERE id = $1 "
            "AND status <> 'cancelled' RETURNING status",
            p.sector_analysis_id,
            error[:2000],
        )
        await emit_run_ended(rt, p.sector_analysis_id, ended, conn=conn)


STAGE = Stage(
    "sector-research", SectorResearchPayload, run, on_final_failure, run_of=run_of_research
)
