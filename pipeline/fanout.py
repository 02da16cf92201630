"""The pipeline on engine flows: a stock's tree, the ranking's fan-out and fan-in, and the
judge's revise loop.

A stock is analysed by one tree of jobs (`jobqueue.Child`), parents first:

    format-insights:<stock>            what the ranking does when it fails: continue
      judge-review:<stock>             fail (its parent fails with it)
        stock-analysis:<stock>:1       fail; a rejection adds :2, then :3, as the judge's
                                       next child

The ranking adds its top stocks' trees as its children and waits (`Job.add_children`, then
`job.wait_for_children()`); the engine runs it again, once, when every tree has ended (its
`job.step` is then 1): that run completes the sub-sector. The fan-in is the engine's: the
script that records a tree's end releases the ranking exactly once, whatever retries, stalls
or crashed workers did (no database lock decides it).

The judge's revise loop is the judge's steps: a rejection adds the re-run analysis (with the
judge's reasons and a new angle) as its next child and waits; the judge then runs again with
`job.step` one higher and judges the new analysis. The number of analyses judged is the loop's
counter, apart from the judge's attempts (error retries). After `max_rejections` rejections the
judge fails (`JUDGE_REJECTION`), its format job fails with it, and the ranking records the
stock failed.

Every job of a run gets its run's priority and group (`pipeline.tiers`), and its status row
with the run as `related_id`; nothing is added for a cancelled run, checked before adding and
again after, as `pipeline.flow.enqueue_many` does.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg

from jobqueue import Child, Job, OnFailure
from pipeline.cancelled import RunCancelledError, cancelled_runs, withdraw_jobs
from pipeline.job_ids import stock_job_id
from pipeline.models import Variation
from pipeline.runtime import Runtime
from pipeline.status import create_job_status
from pipeline.tiers import RunFairness, fairness_of_runs

__all__ = [
    "add_run_children",
    "add_stock_flow",
    "analysis_child",
    "stock_of_ref",
    "stock_tree",
    "tree_jobs",
]

log = logging.getLogger(__name__)


def analysis_child(
    rt: Runtime,
    stock_id: UUID | str,
    *,
    attempt: int = 1,
    variation: Variation | None = None,
    delay: float = 0.0,
) -> Child:
    """The `stock-analysis` job of one attempt, as a child of its judge (fails it when it
    fails for good)."""
    data: dict[str, Any] = {"stock_id": str(stock_id), "attempt": attempt}
    if variation is not None:
        data["variation"] = variation.model_dump(mode="json")
    return Child(
        queue=rt.queues["stock-analysis"],
        name="stock-analysis",
        data=data,
        job_id=stock_job_id("stock-analysis", stock_id, attempt),
        on_failure="fail",
        delay=delay,
    )


def stock_tree(
    rt: Runtime,
    stock_id: UUID | str,
    *,
    attempt: int = 1,
    variation: Variation | None = None,
    on_failure: OnFailure = "continue",
    delay: float = 0.0,
) -> Child:
    """A stock's tree: format-insights <- judge-review <- stock-analysis (`attempt`, starting
    after `delay` seconds)."""
    judge = Child(
        queue=rt.queues["judge-review"],
        name="judge-review",
        data={"stock_id": str(stock_id)},
        job_id=stock_job_id("judge-review", stock_id),
        on_failure="fail",
        children=[analysis_child(rt, stock_id, attempt=attempt, variation=variation, delay=delay)],
    )
    return Child(
        queue=rt.queues["format-insights"],
        name="format-insights",
        data={"stock_id": str(stock_id)},
        job_id=stock_job_id("format-insights", stock_id),
        on_failure=on_failure,
        children=[judge],
    )


def stock_of_ref(ref: str) -> str:
    """The stock id of a child reference `"<queue>:<job id>"` of a stock's tree."""
    job_id = ref.split(":", 1)[1]
    return job_id.split(":")[1]


def tree_jobs(children: Sequence[Child]) -> list[tuple[str, str]]:
    """`(queue, job id)` of every job of the trees, parents first."""
    out: list[tuple[str, str]] = []
    for c in children:
        queue = c.queue if isinstance(c.queue, str) else c.queue.name
        out.append((queue, c.job_id or ""))
        out += tree_jobs(c.children)
    return out


def _fair(children: Sequence[Child], fairness: RunFairness | None, groups: bool) -> list[Child]:
    """The trees with the run's priority (and group) on every job."""
    if fairness is None:
        return list(children)
    group, priority = fairness
    return [
        dataclasses.replace(
            c,
            priority=priority,
            group=group if groups else None,
            children=_fair(c.children, fairness, groups),
        )
        for c in children
    ]


async def _checked(rt: Runtime, run_id: UUID | str) -> RunFairness | None:
    """Refuse a cancelled run; its (group, priority). Should PostgreSQL not answer, the jobs
    are added all the same, ungrouped (a job of a cancelled run then ends at its start)."""
    try:
        if await cancelled_runs(rt.pool, [run_id]):
            raise RunCancelledError(run_id, "adding jobs")
        return (await fairness_of_runs(rt.pool, [run_id])).get(str(run_id))
    except (OSError, asyncpg.PostgresError) as exc:
        log.warning("could not read run %s (%s): jobs added ungrouped", run_id, type(exc).__name__)
        return None


async def _rows_then_recheck(rt: Runtime, run_id: UUID | str, jobs: list[tuple[str, str]]) -> None:
    """Write the jobs' status rows (best effort: the mirror creates a missing one from the
    `added` event), then check the run again: jobs added while a cancel swept are withdrawn
    (whole trees, parents first) and `RunCancelledError` raised."""
    try:
        async with rt.pool.acquire() as conn:
            for queue, job_id in jobs:
                await create_job_status(job_id, queue, str(run_id), queue=queue, conn=conn)
        cancelled = bool(await cancelled_runs(rt.pool, [run_id]))
    except (OSError, asyncpg.PostgresError) as exc:
        log.warning("status rows of %d job(s) not written (%s)", len(jobs), type(exc).__name__)
        return
    if cancelled:
        await withdraw_jobs(rt.queues, rt.pool, jobs, children=True)
        raise RunCancelledError(run_id, f"adding {len(jobs)} job(s)")


async def add_run_children(
    rt: Runtime, job: Job, run_id: UUID | str, children: Sequence[Child]
) -> list[str]:
    """Add children to the running `job` of run `run_id` (`Job.add_children`: atomic, fenced
    by its lease, idempotent per child id), with the run's priority and group and their status
    rows. The job then waits for them with `await job.wait_for_children()`.

    Returns:
        The children's references `"<queue>:<id>"`.

    Raises:
        RunCancelledError: the run is cancelled (nothing added, or what was added withdrawn).
        LeaseLostError: this worker no longer holds the job (nothing added).
    """
    fairness = await _checked(rt, run_id)
    trees = _fair(children, fairness, rt.settings.fair_groups)
    refs = await job.add_children(trees)
    await _rows_then_recheck(rt, run_id, tree_jobs(trees))
    return refs


async def add_stock_flow(
    rt: Runtime,
    stock_id: UUID,
    run_id: UUID | str | None,
    *,
    attempt: int = 1,
    variation: Variation | None = None,
    delay: float = 0.0,
) -> tuple[Job, list[tuple[str, str]]]:
    """Add a stock's tree on its own (no ranking waits for it: `enqueue("stock-analysis")`,
    e.g. an operator analysing one stock again). Adding it again adds nothing.

    Returns:
        The tree's analysis job (the format job at its root, when the stock had a tree
        already), and every `(queue, job id)` of the tree, parents first.

    Raises:
        RunCancelledError: the run is cancelled (nothing added, or what was added withdrawn).
    """
    fairness = await _checked(rt, run_id) if run_id is not None else None
    [root] = _fair(
        [stock_tree(rt, stock_id, attempt=attempt, variation=variation, delay=delay)],
        fairness,
        rt.settings.fair_groups,
    )
    top = await rt.queues["format-insights"].add_flow(
        root.name,
        root.data,
        job_id=root.job_id,
        priority=root.priority,
        group=root.group,
        children=root.children,
    )
    jobs = tree_jobs([root])
    if run_id is not None:
        await _rows_then_recheck(rt, run_id, jobs)
    # the tree's analysis; the existing tree's root when the stock had one already (adding
    # the flow again wrote nothing, and its analyses are the ones that tree has)
    analysis = await rt.queues["stock-analysis"].get_job(jobs[-1][1])
    return analysis or top, jobs
