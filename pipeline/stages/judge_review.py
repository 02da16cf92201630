"""Stage 5, `judge-review`: an AI verdict on a stock's latest analysis, its child in the
stock's flow. Approved -> it completes, and its parent formats the insights. Rejected -> the
revise loop (`pipeline.fanout`): the re-run analysis, with the judge's reasons and a new angle,
is added as its next child and it waits; after `max_rejections` rejections it fails
(`JUDGE_REJECTION`) with the stock, and the stock's format job fails with it."""

from __future__ import annotations

from typing import Any

from jobqueue import Job, UnrecoverableError
from pipeline.ai.errors import JUDGE_REJECTION
from pipeline.fanout import add_run_children, analysis_child
from pipeline.models import JudgeReviewPayload, Variation, Verdict
from pipeline.prompts import ANGLES, judge_prompt
from pipeline.runs import run_of_stock
from pipeline.runtime import Runtime
from pipeline.stages.base import Stage, fail_stock, record_usage

__all__ = ["STAGE"]

_ANALYSIS = """
SELECT a.id, a.stock_id, a.attempt, a.analysis, s.ticker, s.name, ss.sector_analysis_id
FROM stock_analysis a JOIN stock s ON s.id = a.stock_id
JOIN sub_sector ss ON ss.id = s.sub_sector_id WHERE a.id = $1 AND a.stock_id = $2
"""


async def latest_analysis(job: Job) -> str:
    """The id of the analysis to judge: the result of the judge's child of the highest
    attempt (the one its last step added)."""
    results = [
        r for r in (await job.children_results()).values() if isinstance(r, dict) and "attempt" in r
    ]
    if not results:
        raise UnrecoverableError(
            f"{job.id} has no analysis among its children: a judge review runs in its stock's "
            "flow, as the parent of the stock's analyses"
        )
    return str(max(results, key=lambda r: int(r["attempt"]))["stock_analysis_id"])


async def run(rt: Runtime, job: Job, p: JudgeReviewPayload) -> dict[str, Any]:
    await job.update_progress(0)
    a = await rt.pool.fetchrow(_ANALYSIS, await latest_analysis(job), p.stock_id)
    if a is None:
        raise UnrecoverableError(f"no analysis of stock {p.stock_id} to judge")
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
    # the loop's counter: the attempt of the analysis judged (job.step + 1 in a stock's flow),
    # never the judge's own attempts, which count its errors
    attempt = a["attempt"]
    give_up = not verdict.approved and attempt >= rt.settings.max_rejections
    async with rt.pool.acquire() as conn, conn.transaction():
        await record_usage(conn, job, "judge-review", [result], a["sector_analysis_id"])
        await conn.execute(
            "UPDATE stock_analysis SET verdict = $2::jsonb, approved = $3, status = $4 "
            "WHERE id = $1",
            a["id"],
            verdict.model_dump(),
            verdict.approved,
            "approved" if verdict.approved else "rejected",
        )
        if verdict.approved:
            await conn.execute(
                "UPDATE stock SET status = 'formatting' WHERE id = $1 AND status = 'judging'",
                p.stock_id,
            )
        else:
            # the attempt number, not +1: a replayed review must not count twice
            await conn.execute(
                "UPDATE stock SET rejections = GREATEST(rejections, $2) WHERE id = $1",
                p.stock_id,
                attempt,
            )
            if give_up:
                reasons = [f"rejected {attempt} times; last reasons:", *verdict.reasons]
                await fail_stock(rt, p.stock_id, reasons, conn=conn)
    await job.update_progress(90)
    if give_up:
        raise UnrecoverableError(
            f"analysis rejected {attempt} times: {'; '.join(verdict.reasons)}"[:2000],
            error_type=JUDGE_REJECTION,
        )
    if not verdict.approved:
        angle = ANGLES[(attempt - 1) % len(ANGLES)]
        rerun = analysis_child(
            rt,
            p.stock_id,
            attempt=attempt + 1,
            variation=Variation(angle=angle, judge_reasons=verdict.reasons),
            delay=rt.settings.rejection_delay,
        )
        await add_run_children(rt, job, a["sector_analysis_id"], [rerun])
        await job.update_progress(100)
        await job.wait_for_children()
    await job.update_progress(100)
    return {
        "approved": True,
        "score": verdict.score,
        "attempt": attempt,
        "stock_analysis_id": str(a["id"]),
    }


async def on_final_failure(rt: Runtime, job: Job, p: JudgeReviewPayload, error: str) -> None:
    await fail_stock(rt, p.stock_id, [f"judge review failed: {error}"])


STAGE = Stage("judge-review", JudgeReviewPayload, run, on_final_failure, run_of=run_of_stock)
