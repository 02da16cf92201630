"""Stage 5, `judge-review`: an AI verdict on one analysis. Approved -> format insights.
Rejected -> a re-run of the analysis with variation, up to `max_rejections`; after that the
stock fails for good with the judge's reasons."""

from __future__ import annotations

from typing import Any

from jobqueue import Job, UnrecoverableError
from pipeline.flow import enqueue
from pipeline.models import JudgeReviewPayload, Verdict
from pipeline.prompts import ANGLES, judge_prompt
from pipeline.runs import run_of_analysis
from pipeline.runtime import Runtime
from pipeline.stages.base import Stage, fail_stock, fail_stock_of_analysis, record_usage

__all__ = ["STAGE"]

_ANALYSIS = """
SELECT a.stock_id, a.attempt, a.analysis, s.ticker, s.name, ss.sector_analysis_id
FROM stock_analysis a JOIN stock s ON s.id = a.stock_id
JOIN sub_sector ss ON ss.id = s.sub_sector_id WHERE a.id = $1
"""


async def run(rt: Runtime, job: Job, p: JudgeReviewPayload) -> dict[str, Any]:
    await job.update_progress(0)
    a = await rt.pool.fetchrow(_ANALYSIS, p.stock_analysis_id)
    if a is None:
        raise UnrecoverableError(f"no stock analysis {p.stock_analysis_id}")
    await job.update_progress(20)
    ask = judge_prompt(a["ticker"], a["name"] or a["ticker"], a["analysis"] or "", a["attempt"])
    verdict, result = await rt.llm.structured(
        tier="judge",
        system=ask.system,
        context=ask.context,
        prompt=ask.prompt,
        schema=Verdict,
        seed_key=f"{a['ticker']}:{a['attempt']}",
    )
    await job.update_progress(70)
    attempt = a["attempt"]
    give_up = not verdict.approved and attempt >= rt.settings.max_rejections
    async with rt.pool.acquire() as conn, conn.transaction():
        await record_usage(conn, job, "judge-review", [result], a["sector_analysis_id"])
        await conn.execute(
            "UPDATE stock_analysis SET verdict = $2::jsonb, approved = $3, status = $4 "
            "WHERE id = $1",
            p.stock_analysis_id,
            verdict.model_dump(),
            verdict.approved,
            "approved" if verdict.approved else "rejected",
        )
        if verdict.approved:
            await conn.execute(
                "UPDATE stock SET status = 'formatting' WHERE id = $1 AND status = 'judging'",
                a["stock_id"],
            )
        else:
            # the attempt number, not +1: a replayed review must not count twice
            await conn.execute(
                "UPDATE stock SET rejections = GREATEST(rejections, $2) WHERE id = $1",
                a["stock_id"],
                attempt,
            )
            if give_up:
                reasons = [f"rejected {attempt} times; last reasons:", *verdict.reasons]
                await fail_stock(rt, a["stock_id"], reasons, conn=conn)
    await job.update_progress(90)
    if verdict.approved:
        await enqueue("format-insights", {"stock_analysis_id": p.stock_analysis_id}, runtime=rt)
    elif not give_up:
        angle = ANGLES[(attempt - 1) % len(ANGLES)]
        await enqueue(
            "stock-analysis",
            {
                "stock_id": a["stock_id"],
                "attempt": attempt + 1,
                "variation": {"angle": angle, "judge_reasons": verdict.reasons},
            },
            delay=rt.settings.rejection_delay,
            runtime=rt,
        )
    await job.update_progress(100)
    return {
        "approved": verdict.approved,
        "score": verdict.score,
        "attempt": attempt,
        "gave_up": give_up,
    }


async def on_final_failure(rt: Runtime, job: Job, p: JudgeReviewPayload, error: str) -> None:
    await fail_stock_of_analysis(rt, p.stock_analysis_id, f"judge review failed: {error}")


STAGE = Stage("judge-review", JudgeReviewPayload, run, on_final_failure, run_of=run_of_analysis)
