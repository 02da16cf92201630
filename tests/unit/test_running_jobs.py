"""RunningJobs: a lost lease stops only the run it belonged to, and an entry never outlives
its task (a task cancelled before it ran never runs the body that would remove it)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from jobqueue.worker.running import RunningJobs


def _job(job_id: str, token: str) -> Any:
    return SimpleNamespace(id=job_id, token=token, cancel_reason=None)


async def test_a_lost_lease_of_an_earlier_run_leaves_the_new_run_alone() -> None:
    running, ended = RunningJobs(), []
    gate = asyncio.Event()
    # the job was taken again under a new token after its first lease expired (Redis frozen)
    task = asyncio.create_task(gate.wait())
    running.add(_job("j1", "w:2"), task, lambda: ended.append(1))
    assert not running.lose("j1", "w:1")  # the renewal sent the old token: not this run
    assert "j1" in running and not task.cancelled()
    assert running.lose("j1", "w:2")
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and "j1" not in running and not running.lost and ended == [1]


async def test_a_task_cancelled_before_it_ran_leaves_no_entry() -> None:
    running, ended = RunningJobs(), []
    ran = []

    async def body() -> None:
        ran.append(1)

    task = asyncio.create_task(body())
    running.add(_job("j2", "w:1"), task, lambda: ended.append(1))
    running.cancel("j2", "asked")  # before the task's first step: its body never runs
    await asyncio.gather(task, return_exceptions=True)
    assert not ran and "j2" not in running and ended == [1]


async def test_an_old_run_ending_does_not_remove_the_new_one() -> None:
    running = RunningJobs()
    old = asyncio.create_task(asyncio.sleep(0))
    new = asyncio.create_task(asyncio.Event().wait())
    running.add(_job("j3", "w:1"), old, lambda: None)
    running.add(_job("j3", "w:2"), new, lambda: None)  # taken again while the old one ran
    await old
    await asyncio.sleep(0)
    assert running["j3"][1] is new
    new.cancel()
    await asyncio.gather(new, return_exceptions=True)
    assert "j3" not in running
