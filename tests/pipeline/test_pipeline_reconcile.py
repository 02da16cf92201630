"""The real rebuild path: a status mirror whose unread events were trimmed from the capped stream
rebuilds the queue's rows from the job keys through `Workers._reconcile` (no stub)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from pipeline_helpers import HANG, wait_for

from jobqueue import ErrorType, Job, JobState, Queue, RetryAfter, UnrecoverableError, Worker
from pipeline.mirror import StatusMirror
from pipeline.runtime import Runtime
from pipeline.status import get_job_status
from pipeline.status_fold import parse_stream_id
from pipeline.workers import Workers

pytestmark = pytest.mark.integration

QUEUE = "judge-review"  # three attempts; the jobs below run a handler of the test's own


async def drain(mirror: StatusMirror) -> int:
    """Mirror steps until one applies nothing; returns the entries applied."""
    total = 0
    while applied := await mirror.run_once():
        total += applied
    return total


def row_status(state: str) -> str:
    return "waiting" if state in ("waiting", "paused", "delayed") else state


async def test_trimmed_stream_rebuilds_rows_from_the_job_keys(runtime: Runtime) -> None:
    rt = runtime
    # A small cap: the engine's own `XADD MAXLEN ~` trims the stream as the jobs run.
    original = rt.queues[QUEUE]
    q = Queue(
        dataclasses.replace(original.config, events_maxlen=20),
        redis=rt.redis,
        prefix=rt.settings.prefix,
    )
    rt.queues[QUEUE] = q  # what the Workers below, and their reconcile, read
    await original.close()
    release = asyncio.Event()

    async def handler(job: Job) -> dict[str, Any]:
        kind = job.data["kind"]
        if kind == "done":
            for i in range(300):  # events enough for the cap to trim whole stream nodes
                await job.update_progress(i * 100 // 299)
        elif kind == "failed":
            await job.update_progress(40)
            if job.attempt == 1:
                raise ValueError("vendor hiccup")  # retried at once (test retry delays)
            raise UnrecoverableError("judge unreachable", error_type=ErrorType.API_ERROR)
        elif kind == "retry":
            await job.update_progress(25)
            raise RetryAfter(3600, "quote not ready", error_type=ErrorType.UNKNOWN)
        elif kind == "running":
            await job.update_progress(30)
            await release.wait()
        return {"kind": kind}

    # A workers process mirrors the jobs' `added` events, then goes away.
    first = Workers(rt, queues=[QUEUE])
    assert first.mirror is not None
    seen = {kind: f"{kind}-1" for kind in ("done", "failed", "retry", "running")}
    for kind, job_id in seen.items():
        await q.add("review", {"kind": kind}, job_id=job_id)
    assert await drain(first.mirror) == len(seen)
    await first.close()
    for job_id in seen.values():
        row = await get_job_status(job_id)
        assert row is not None and (row.status, row.job_type) == ("waiting", "review")

    # While no mirror runs, the jobs move on and the capped stream forgets their events.
    worker = Worker(q, handler, concurrency=4, handle_signals=False)
    task = asyncio.create_task(worker.run())
    try:
        targets = {
            "done-1": JobState.COMPLETED,
            "failed-1": JobState.FAILED,
            "retry-1": JobState.DELAYED,
            "running-1": JobState.ACTIVE,
        }

        async def reached() -> bool:
            states = {j: await q.get_job_state(j) for j in targets}
            running = await q.get_job("running-1")
            return states == targets and running is not None and running.progress == 30

        await wait_for(reached, what=f"jobs in states {targets}")
        await q.pause()  # what is added now stays waiting
        await q.add("review", {"kind": "never"}, job_id="paused-1")
        await q.add("review", {"kind": "never"}, job_id="delayed-1", delay=3600)
        stream = await rt.redis.xinfo_stream(q.keys.events)
        [group] = await rt.redis.xinfo_groups(q.keys.events)
        assert stream["entries-added"] > stream["length"], "the cap trimmed the stream"
        first_kept = parse_stream_id(stream["first-entry"][0])
        assert first_kept > parse_stream_id(group["last-delivered-id"]), (
            "events the mirror never read were trimmed"
        )

        # A new workers process: its mirror finds the loss and rebuilds the rows.
        second = Workers(rt, queues=[QUEUE])
        assert second.mirror is not None
        await asyncio.wait_for(drain(second.mirror), HANG)
        assert second.mirror.stats.reconciles == 1
        assert second.mirror.stats.trimmed > 0
        for job_id in [*targets, "paused-1", "delayed-1"]:
            job = await q.get_job(job_id)
            row = await get_job_status(job_id)
            assert job is not None and row is not None, job_id
            status = row_status(job.state)
            assert (row.status, row.queue, row.job_type) == (status, QUEUE, "review"), job_id
            # rows count attempts started (the running one too) and restart progress at 0
            # when a job goes back to waiting
            attempts = job.attempts_made + (1 if status == "active" else 0)
            progress = 0 if status == "waiting" else job.progress
            assert (row.progress, row.attempts, row.error_type, row.error_message) == (
                progress,
                attempts,
                job.error_type,
                job.error_message,
            ), job_id
        # the rebuilt rows are what the jobs really went through
        done, failed = await get_job_status("done-1"), await get_job_status("failed-1")
        assert done is not None and (done.progress, done.attempts) == (100, 1)
        assert failed is not None
        assert (failed.progress, failed.attempts, failed.error_type) == (40, 2, "API_ERROR")
        retry = await get_job_status("retry-1")
        assert retry is not None
        assert retry.attempts == 1 and "quote not ready" in (retry.error_message or "")
        running = await get_job_status("running-1")
        assert running is not None and (running.status, running.attempts) == ("active", 1)

        # Events after the rebuild apply on top of it.
        release.set()

        async def mirrored_completion() -> bool:
            await drain(second.mirror)  # type: ignore[union-attr]
            row = await get_job_status("running-1")
            return row is not None and (row.status, row.progress) == ("completed", 100)

        await wait_for(mirrored_completion, what="the running job's completion mirrored")
        assert second.mirror.stats.reconciles == 1, "the same loss is not detected twice"
        await second.close()
    finally:
        release.set()
        await worker.close()
        await task
