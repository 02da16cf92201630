"""User tiers and fair share in the pipeline: the tier stored on the run, its priority and the
user's group on every job of the run, and B's first analysis not waiting behind A's backlog."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pipeline_helpers import make_stocks

from pipeline.fairness_figure import measure
from pipeline.flow import PayloadError, enqueue, start_sector_research
from pipeline.runtime import Runtime
from pipeline.tiers import TIER_PRIORITY, user_group

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("tier", ["free", "pro", "enterprise"])
async def test_the_tier_is_stored_and_sets_the_priority(runtime: Runtime, tier: str) -> None:
    run_id = await start_sector_research("Energy", "user-1", user_tier=tier, runtime=runtime)
    assert (
        await runtime.pool.fetchval("SELECT user_tier FROM sector_analysis WHERE id = $1", run_id)
        == tier
    )
    job = await runtime.queues["sector-research"].get_job(f"sector-research:{run_id}")
    assert job is not None
    assert job.priority == TIER_PRIORITY[tier] and job.group == "u:user-1"
    assert TIER_PRIORITY["enterprise"] > TIER_PRIORITY["pro"] > TIER_PRIORITY["free"]


async def test_a_bad_tier_writes_nothing(runtime: Runtime) -> None:
    with pytest.raises(PayloadError, match="gold"):
        await start_sector_research("Energy", "user-gold", user_tier="gold", runtime=runtime)
    assert (
        await runtime.pool.fetchval(
            "SELECT count(*) FROM sector_analysis WHERE user_id = 'user-gold'"
        )
        == 0
    )


async def test_later_stages_inherit_the_run_tier_and_group(runtime: Runtime) -> None:
    sub, stocks = await make_stocks(runtime, 2)
    run = await runtime.pool.fetchval(
        "UPDATE sector_analysis SET user_tier = 'pro', user_id = 'a b/c' "
        "WHERE id = (SELECT sector_analysis_id FROM sub_sector WHERE id = $1) RETURNING id",
        sub,
    )
    assert run is not None
    job = await enqueue("stock-analysis", {"stock_id": stocks[0]}, runtime=runtime)
    assert job.priority == TIER_PRIORITY["pro"]
    assert job.group == user_group("a b/c") and job.group.startswith("h:")


async def test_without_fair_groups_jobs_keep_the_priority_only(
    make_runtime: Callable[..., Awaitable[Runtime]],
) -> None:
    rt = await make_runtime(fair_groups=False)
    run_id = await start_sector_research("Energy", "u", user_tier="enterprise", runtime=rt)
    job = await rt.queues["sector-research"].get_job(f"sector-research:{run_id}")
    assert job is not None and job.group is None and job.priority == TIER_PRIORITY["enterprise"]


async def test_a_newcomer_user_waits_one_analysis_per_slot_at_most(runtime: Runtime) -> None:
    settings = runtime.settings.model_copy(update={"offline_latency": 0.02})
    figure: Any = await measure(settings, runs_a=4, groups=True, timeout=120)
    slots = settings.queue_settings("stock-analysis").concurrency
    # while B's first analysis waited, A's queued analyses took at most one turn per slot
    assert figure.analyses_of_a_while_b_waited <= slots
    print(f"\n{figure}")
