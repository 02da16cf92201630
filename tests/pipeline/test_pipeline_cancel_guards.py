"""The checks that hold a run's cancel (`pipeline.cancel_run`): the model-call guard refuses a
call before it is sent, the enqueue gate adds nothing, its re-check after adding withdraws
what the cancel's sweep missed (a run's jobs, a stock's flow), and a job that escaped every
sweep ends at its start."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import pytest
from pipeline_helpers import make_stocks, settled_rows

from jobqueue import ErrorType, classify_error
from pipeline import RunCancelledError, cancel_run, fanout, flow
from pipeline.ai.guard import job_scope
from pipeline.ai.offline import OfflineLLM
from pipeline.flow import enqueue
from pipeline.runtime import Runtime
from pipeline.status import get_jobs_by_related_id

pytestmark = [pytest.mark.integration]


class CountingLLM:
    """The offline model, counting the calls that reach it."""

    def __init__(self) -> None:
        self.inner = OfflineLLM()
        self.calls = 0

    async def complete(self, **kwargs: Any) -> Any:
        self.calls += 1
        return await self.inner.complete(**kwargs)

    async def structured(self, **kwargs: Any) -> Any:
        self.calls += 1
        return await self.inner.structured(**kwargs)


async def test_a_model_call_of_a_cancelled_run_is_refused_before_it_is_sent(
    runtime: Runtime,
) -> None:
    model = CountingLLM()
    runtime.use_llm(model)  # type: ignore[arg-type]
    sub, _ = await make_stocks(runtime, 1)
    run_id = await runtime.pool.fetchval(
        "SELECT sector_analysis_id FROM sub_sector WHERE id=$1", sub
    )
    with job_scope(run_id, job_id="j-before", attempt=1, stage="stock-ranking"):
        await runtime.llm.complete(tier="ranking", system="s", prompt="p")
    assert model.calls == 1
    await cancel_run(run_id, runtime=runtime)
    with job_scope(run_id, job_id="j-after", attempt=1, stage="stock-ranking"):
        with pytest.raises(RunCancelledError) as refused:
            await runtime.llm.complete(tier="ranking", system="s", prompt="p")
    assert model.calls == 1  # nothing was sent
    c = classify_error(refused.value)
    assert (c.error_type, c.retryable) == (ErrorType.CANCELLED, False)
    # the budget held the call's estimate before the check, and gave it back
    states = await runtime.pool.fetch(
        "SELECT job_id, state FROM budget_reservation WHERE run_id=$1 ORDER BY id", run_id
    )
    assert [(r["job_id"], r["state"]) for r in states] == [
        ("j-before", "settled"),
        ("j-after", "released"),
    ]
    # a call of no run, or of another run, is not concerned
    with job_scope(None):
        await runtime.llm.complete(tier="ranking", system="s", prompt="p")
    assert model.calls == 2


async def test_nothing_is_enqueued_for_a_cancelled_run(runtime: Runtime) -> None:
    sub, stocks = await make_stocks(runtime, 2)
    run_id = await runtime.pool.fetchval(
        "SELECT sector_analysis_id FROM sub_sector WHERE id=$1", sub
    )
    await cancel_run(run_id, runtime=runtime)
    with pytest.raises(RunCancelledError):
        await enqueue("stock-analysis", {"stock_id": stocks[0]}, runtime=runtime)
    assert await runtime.queues["stock-analysis"].get_job(f"stock-analysis:{stocks[0]}:1") is None
    assert not await get_jobs_by_related_id(str(run_id))


@pytest.mark.parametrize(
    ("module", "check", "stage", "tree"),
    [
        # a run's jobs: the enqueuer's own check after adding withdraws them
        pytest.param(flow, "_cancelled", "stock-ranking", ["stock-ranking"], id="run"),
        # a stock's flow: its own check after adding withdraws the whole tree
        pytest.param(
            fanout,
            "cancelled_runs",
            "stock-analysis",
            ["format-insights", "judge-review", "stock-analysis"],
            id="stock-flow",
        ),
    ],
)
async def test_jobs_added_while_the_cancel_swept_are_withdrawn(
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    module: ModuleType,
    check: str,
    stage: str,
    tree: list[str],
) -> None:
    """The check before adding (`check` of `module`) passed, then the cancel committed and
    swept before the jobs were in their queue: the check after adding withdraws them (every
    job of `tree`, added as `stage`)."""
    sub, stocks = await make_stocks(runtime, 2)
    run_id = await runtime.pool.fetchval(
        "SELECT sector_analysis_id FROM sub_sector WHERE id=$1", sub
    )
    real: Callable[..., Awaitable[set[str]]] = getattr(module, check)
    checks = 0

    async def cancel_between(*args: Any) -> set[str]:
        nonlocal checks
        checks += 1
        if checks == 1:  # the check before adding: passes, then the cancel lands
            assert not await real(*args)
            result = await cancel_run(run_id, runtime=runtime)
            assert not result.removed and not result.signalled  # nothing to sweep yet
            return set()
        return await real(*args)

    monkeypatch.setattr(module, check, cancel_between)
    payload, job_id = {
        "stock-ranking": ({"sub_sector_id": sub}, f"stock-ranking:{sub}"),
        "stock-analysis": ({"stock_id": stocks[0]}, f"stock-analysis:{stocks[0]}:1"),
    }[stage]
    with pytest.raises(RunCancelledError):
        await flow.enqueue_many([(stage, payload)], runtime=runtime)
    assert checks == 2
    assert await runtime.queues[stage].get_job(job_id) is None
    for name, q in runtime.queues.items():
        counts = await q.get_job_counts()
        assert not any(counts.values()), (name, counts)
    rows = await get_jobs_by_related_id(str(run_id))
    assert sorted(r.job_type for r in rows) == tree
    assert {(r.status, r.error_type) for r in rows} == {("cancelled", "CANCELLED")}
    assert stocks


async def test_a_job_of_a_cancelled_run_ends_at_its_start(runtime: Runtime, workers: Any) -> None:
    """A job that escaped every sweep (here: the run is marked without one) ends at its start,
    `cancelled`, without a model call or a change to its domain rows."""
    model = CountingLLM()
    runtime.use_llm(model)  # type: ignore[arg-type]
    sub, stocks = await make_stocks(runtime, 1)
    run_id = await runtime.pool.fetchval(
        "SELECT sector_analysis_id FROM sub_sector WHERE id=$1", sub
    )
    await enqueue("stock-analysis", {"stock_id": stocks[0]}, runtime=runtime)
    await runtime.pool.execute(
        "UPDATE sector_analysis SET status = 'cancelled', cancelled_at = now() WHERE id = $1",
        run_id,
    )
    await workers()
    # the analysis ends at its start, and its flow (its judge, its format job) with it
    rows = await settled_rows(run_id)
    assert len(rows) == 3
    assert {(r.status, r.error_type) for r in rows} == {("cancelled", "CANCELLED")}
    assert model.calls == 0
    assert await runtime.pool.fetchval("SELECT status FROM stock WHERE id=$1", stocks[0]) == (
        "analyzing"
    )
    job = await runtime.queues["stock-analysis"].get_job(f"stock-analysis:{stocks[0]}:1")
    assert job is not None and job.attempts_made == 1  # not retried
