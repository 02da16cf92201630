"""Stage 3, `stock-ranking`: rank ten stocks of an approved sub-sector, add the top five's
trees as its children (the fan-out) and wait; once every tree has ended the engine runs it
again (step 1): that run completes the sub-sector (the fan-in, `pipeline.fanout`)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from jobqueue import Job, UnrecoverableError
from pipeline.fanout import add_run_children, stock_of_ref, stock_tree
from pipeline.models import StockRanking, StockRankingPayload
from pipeline.prompts import ranking_prompt
from pipeline.runs import run_of_sub_sector
from pipeline.runtime import Runtime
from pipeline.stages.base import Stage, complete_subsector_if_done, record_usage

__all__ = ["STAGE"]


async def run(rt: Runtime, job: Job, p: StockRankingPayload) -> dict[str, Any]:
    if job.step > 0:
        return await fan_in(rt, job, p)
    await job.update_progress(0)
    row = await rt.pool.fetchrow(
        "SELECT ss.name, ss.thesis, ss.sector_analysis_id, sa.sector_name, sa.research "
        "FROM sub_sector ss "
        "JOIN sector_analysis sa ON sa.id = ss.sector_analysis_id WHERE ss.id = $1",
        p.sub_sector_id,
    )
    if row is None:
        raise UnrecoverableError(f"no sub-sector {p.sub_sector_id}")
    await rt.pool.execute(
        "UPDATE sub_sector SET status = 'ranking' WHERE id = $1 AND status = 'approved'",
        p.sub_sector_id,
    )
    await job.update_progress(10)
    ask = ranking_prompt(row["sector_name"], row["name"], row["thesis"] or "", row["research"])
    ranking, result = await rt.llm.structured(
        tier="ranking",
        system=ask.system,
        context=ask.context,
        prompt=ask.prompt,
        schema=StockRanking,
        seed_key=row["name"],
    )
    await job.update_progress(70)
    top = rt.settings.stocks_to_analyze
    stock_ids = []
    async with rt.pool.acquire() as conn, conn.transaction():
        for s in ranking.stocks:
            stock_id = await conn.fetchval(
                """
                INSERT INTO stock (sub_sector_id, ticker, name, rank, rationale, status)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (sub_sector_id, ticker) DO UPDATE SET rank = excluded.rank,
                    name = excluded.name, rationale = excluded.rationale
                RETURNING id
                """,
                p.sub_sector_id,
                s.ticker,
                s.name,
                s.rank,
                s.rationale,
                "analyzing" if s.rank <= top else "ranked",
            )
            if s.rank <= top:
                stock_ids.append(stock_id)
        await conn.execute(
            "UPDATE sub_sector SET status = 'analyzing' WHERE id = $1 "
            "AND status IN ('approved', 'ranking')",
            p.sub_sector_id,
        )
        await record_usage(conn, job, "stock-ranking", [result], row["sector_analysis_id"])
    await job.update_progress(90)
    # fan-out: the trees' ids derive from their stocks, so a retried ranking adds nothing twice
    trees = [stock_tree(rt, sid) for sid in stock_ids]
    await add_run_children(rt, job, row["sector_analysis_id"], trees)
    await job.wait_for_children()


async def fan_in(rt: Runtime, job: Job, p: StockRankingPayload) -> dict[str, Any]:
    """Every stock's tree has ended: a stock whose tree failed is failed (its failure hook
    may not have run, e.g. a tree cancelled), then the sub-sector completes (and its run).
    Its progress goes on from the fan-out's 90 to 100."""
    if job.queue.config.limiter is not None:
        await job.settle({})  # no model call in this step: its start's reservation back
    failures = await job.children_failures()
    done = sorted(stock_of_ref(r) for r in await job.children_results())
    failed = sorted(stock_of_ref(r) for r in failures)
    async with rt.pool.acquire() as conn, conn.transaction():
        for ref, failure in failures.items():
            await conn.execute(
                "UPDATE stock SET status = 'failed', final_reasons = $2::jsonb, "
                "completed_at = now() WHERE id = $1 AND status NOT IN ('completed', 'failed')",
                UUID(stock_of_ref(ref)),
                [f"{failure.error_type}: {failure.message}"],
            )
        completed = await complete_subsector_if_done(
            conn, p.sub_sector_id, rt.settings.stocks_to_analyze, rt=rt
        )
    await job.update_progress(100)
    return {"stock_ids": done + failed, "failed": failed, "sub_sector_completed": completed}


async def on_final_failure(rt: Runtime, job: Job, p: StockRankingPayload, error: str) -> None:
    await rt.pool.execute(
        "UPDATE sub_sector SET status = 'failed', error_message = $2 WHERE id = $1",
        p.sub_sector_id,
        error[:2000],
    )


STAGE = Stage("stock-ranking", StockRankingPayload, run, on_final_failure, run_of=run_of_sub_sector)
