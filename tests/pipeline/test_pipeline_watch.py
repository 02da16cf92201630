"""Watched sectors: `python -m pipeline watch` registers, lists and removes a schedule; a tick
makes the workers start a run of the sector (offline model), once per tick even when the
tick's job is retried."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pipeline_helpers import cli, cli_env

from jobqueue import Job
from pipeline.runtime import Runtime
from pipeline.watch import WATCH_QUEUE, add_watch, list_watches, remove_watch, watch_handler
from pipeline.workers import Workers

pytestmark = pytest.mark.integration


async def wait_until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + 60  # bounds a hang only
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_tick_of_a_watch_starts_a_run(
    runtime: Runtime, workers: Callable[..., Awaitable[Workers]]
) -> None:
    queue = runtime.queues[WATCH_QUEUE]
    s = await add_watch(queue, "Energy", cron="* * * * * *", user_id="u-watch")  # every second
    assert s.id == "watch.energy" and s.name == "watch"
    assert s.data == {"sector_name": "Energy", "user_id": "u-watch", "budget_usd": None}
    await workers(queues=["sector-research"])
    pool = runtime.pool

    async def researched() -> bool:
        status = await pool.fetchval(
            "SELECT status FROM sector_analysis WHERE sector_name = 'Energy' AND user_id = "
            "'u-watch' ORDER BY created_at LIMIT 1"
        )
        return status == "awaiting_approval"

    await wait_until(researched, "a watched run to finish its research")
    assert await remove_watch(queue, "Energy") is True  # by its sector's name
    assert await list_watches(queue) == []
    # each run belongs to one tick: its id derives from the tick's job id
    ticks = [
        i for i in await queue.get_job_ids("completed", limit=100) if i.startswith("sched:watch.")
    ]
    runs = await pool.fetch(
        "SELECT id FROM sector_analysis WHERE sector_name = 'Energy' AND user_id = 'u-watch'"
    )
    assert ticks and len(runs) >= len(ticks)
    results = [(await queue.get_job(i)) for i in ticks]
    run_ids = {uuid.UUID(j.result["run_id"]) for j in results if j is not None}
    assert run_ids <= {r["id"] for r in runs}
    assert len(run_ids) == len(ticks)


async def test_a_retried_watch_job_starts_one_run(runtime: Runtime) -> None:
    queue = runtime.queues[WATCH_QUEUE]
    data: dict[str, Any] = {"sector_name": "Utilities", "user_id": "u-retry", "budget_usd": 1.5}
    job = Job(queue, "sched:watch.utilities:1767250800000", {"n": "watch", "d": data})
    handler = watch_handler(runtime)
    first = await handler(job)
    again = await handler(job)  # at-least-once: the same tick's job delivered twice
    assert first == again
    rows = await runtime.pool.fetch(
        "SELECT id, budget_usd FROM sector_analysis WHERE user_id = 'u-retry'"
    )
    assert [str(r["id"]) for r in rows] == [first["run_id"]]
    assert float(rows[0]["budget_usd"]) == 1.5
    assert await queue.get_job_state(f"sector-research:{first['run_id']}") is not None


async def test_watch_cli_registers_lists_and_removes(runtime: Runtime) -> None:
    env = cli_env(runtime)
    code, out, err = await cli(
        env, "watch", "Technology", "--cron", "0 6 * * 1-5", "--tz", "America/New_York"
    )
    assert code == 0, err
    assert out.startswith("watch watch.technology: 'Technology' on 0 6 * * 1-5 (America/New_York)")
    [s] = await list_watches(runtime.queues[WATCH_QUEUE])
    assert (s.cron, s.tz) == ("0 6 * * 1-5", "America/New_York")

    code, out, err = await cli(env, "watch", "--list")
    assert code == 0, err
    assert "watch.technology" in out and "'Technology'" in out and "0 6 * * 1-5" in out

    for bad in (
        ["watch", "Technology", "--cron", "0 25 * * *"],  # no such hour
        ["watch", "Technology", "--cron", "0 6 * * *", "--tz", "Nowhere/City"],
        ["watch", "Technology"],  # no --cron
        ["watch", "--remove", "watch.nothing"],
    ):
        code, out, err = await cli(env, *bad)
        assert code == 2, (bad, out, err)
        assert err.startswith("error: "), err

    code, out, err = await cli(env, "watch", "--remove", "watch.technology")
    assert code == 0, err
    assert await list_watches(runtime.queues[WATCH_QUEUE]) == []
