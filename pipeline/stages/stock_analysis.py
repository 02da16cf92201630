"""Stage 4, `stock-analysis`: deep analysis of one stock (a re-run carries the judge's
reasons and a new angle); its judge review, its parent in the stock's flow, reads the result."""

from __future__ import annotations

import json
from typing import Any

from jobqueue import Job, UnrecoverableError
from pipeline.models import StockAnalysisPayload
from pipeline.prompts import analysis_prompt
from pipeline.runs import run_of_stock
from pipeline.runtime import Runtime
from pipeline.stages.base import Stage, fail_stock, record_usage

__all__ = ["STAGE"]

_STOCK = """
SELECT s.ticker, s.name, s.rationale, s.status, ss.name AS sub_sector, ss.thesis,
       ss.sector_analysis_id, sa.sector_name, sa.research
FROM stock s JOIN sub_sector ss ON ss.id = s.sub_sector_id
JOIN sector_analysis sa ON sa.id = ss.sector_analysis_id WHERE s.id = $1
"""


async def run(rt: Runtime, job: Job, p: StockAnalysisPayload) -> dict[str, Any]:
    await job.update_progress(0)
    stock = await rt.pool.fetchrow(_STOCK, p.stock_id)
    if stock is None:
        raise UnrecoverableError(f"no stock {p.stock_id}")
    await job.update_progress(10)
    ask = analysis_prompt(
        ticker=stock["ticker"],
        name=stock["name"] or stock["ticker"],
        sub_sector=stock["sub_sector"],
        thesis=stock["thesis"] or "",
        rationale=stock["rationale"] or "",
        attempt=p.attempt,
        angle=p.variation.angle if p.variation else None,
        judge_reasons=p.variation.judge_reasons if p.variation else (),
        sector=stock["sector_name"],
        research=stock["research"],
    )
    result = await rt.llm.complete(
        tier="analysis",
        system=ask.system,
        context=ask.context,
        prompt=ask.prompt,
        seed_key=f"{stock['ticker']}:{p.attempt}",
    )
    await job.update_progress(80)
    variation = json.loads(p.variation.model_dump_json()) if p.variation else None
    async with rt.pool.acquire() as conn, conn.transaction():
        tokens_in, tokens_out, cost = await record_usage(
            conn, job, "stock-analysis", [result], stock["sector_analysis_id"]
        )
        analysis_id = await conn.fetchval(
            """
            INSERT INTO stock_analysis (stock_id, attempt, variation, analysis, status,
                input_tokens, output_tokens, cost_usd, usage)
            VALUES ($1, $2, $3::jsonb, $4, 'judging', $5, $6, $7, $8::jsonb)
            ON CONFLICT (stock_id, attempt) DO UPDATE SET analysis = excluded.analysis,
                status = 'judging', input_tokens = excluded.input_tokens,
                output_tokens = excluded.output_tokens, cost_usd = excluded.cost_usd
            RETURNING id
            """,
            p.stock_id,
            p.attempt,
            variation,
            result.text,
            tokens_in,
            tokens_out,
            cost,
            result.usage.model_dump(),
        )
        await conn.execute(
            "UPDATE stock SET status = 'judging' WHERE id = $1 AND status IN "
            "('analyzing', 'judging', 'ranked')",
            p.stock_id,
        )
    await job.update_progress(90)
    await job.update_progress(100)
    return {"stock_analysis_id": str(analysis_id), "attempt": p.attempt}


async def on_final_failure(rt: Runtime, job: Job, p: StockAnalysisPayload, error: str) -> None:
    await fail_stock(rt, p.stock_id, [f"analysis attempt {p.attempt} failed: {error}"])


STAGE = Stage("stock-analysis", StockAnalysisPayload, run, on_final_failure, run_of=run_of_stock)
