"""The dashboard's actions on a real Redis: a confirmation first, then retry, remove, cancel
(running jobs too), promote, pause and resume, clean, retry every failed job."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import httpx2
from dash_helpers import wait_for
from starlette.applications import Starlette

from jobqueue import Job, Queue, Worker

MakeApp = Callable[..., Starlette]
ClientFor = Callable[..., httpx2.AsyncClient]


async def _csrf(client: httpx2.AsyncClient) -> str:
    found = re.search(r'name="csrf-token" content="([0-9a-f]+)"', (await client.get("/")).text)
    assert found
    return found.group(1)


async def _state(queue: Queue, job_id: str) -> str:
    return str(await queue.get_job_state(job_id))


async def test_an_action_asks_for_confirmation_first(
    make_queue: Callable[..., Queue], make_app: MakeApp, client_for: ClientFor
) -> None:
    queue = make_queue("confirm")
    job = await queue.add("a", {}, delay=3600)
    client = client_for(make_app())
    csrf = await _csrf(client)
    url = f"/queues/confirm/jobs/{job.id}/remove"
    page = await client.post(url, data={"csrf": csrf, "next": "/queues/confirm"})
    assert page.status_code == 200 and "Remove job" in page.text
    assert 'name="confirmed" value="1"' in page.text and 'value="/queues/confirm"' in page.text
    assert await _state(queue, job.id) == "delayed"  # nothing done yet
    done = await client.post(url, data={"csrf": csrf, "confirmed": "1"})
    assert done.status_code == 303 and done.headers["location"] == "/queues/confirm?done=remove"
    assert await queue.get_job(job.id) is None


async def test_retry_cancel_promote_and_refusals(
    make_queue: Callable[..., Queue],
    run_worker: Callable[..., Worker],
    make_app: MakeApp,
    client_for: ClientFor,
) -> None:
    queue = make_queue("acts", attempts=1)
    started, release = asyncio.Event(), asyncio.Event()

    async def handler(job: Job) -> Any:
        if job.name == "fail":
            raise ValueError("nope")
        if job.name == "long":
            started.set()
            await release.wait()
        return "done"

    failed = await queue.add("fail", {})
    run_worker(queue, handler, concurrency=2)
    await wait_for(lambda: _is_state(queue, failed.id, "failed"), what="the failure")
    client = client_for(make_app())
    csrf = await _csrf(client)

    def act(job_id: str, action: str) -> Any:
        return client.post(
            f"/queues/acts/jobs/{job_id}/{action}", data={"csrf": csrf, "confirmed": "1"}
        )

    # retry: the failed job runs again (and fails again)
    assert (await act(failed.id, "retry")).status_code == 303
    # a job that has not failed cannot be retried: 409 with the reason
    delayed = await queue.add("later", {}, delay=3600)
    refused = await act(delayed.id, "retry")
    assert refused.status_code == 409 and "has not failed" in refused.text
    # promote the delayed job: it runs now
    assert (await act(delayed.id, "promote")).status_code == 303
    await wait_for(lambda: _is_state(queue, delayed.id, "completed"), what="the promoted job")
    # cancel a running job: it ends failed, CANCELLED, without retry
    long = await queue.add("long", {})
    await asyncio.wait_for(started.wait(), 30)
    assert (await act(long.id, "cancel")).status_code == 303
    await wait_for(lambda: _is_state(queue, long.id, "failed"), what="the cancelled job")
    got = await queue.get_job(long.id)
    assert got is not None and got.error_type == "CANCELLED"
    # cancel a delayed job: removed
    other = await queue.add("later", {}, delay=3600)
    assert (await act(other.id, "cancel")).status_code == 303
    assert await queue.get_job(other.id) is None
    release.set()


async def _is_state(queue: Queue, job_id: str, wanted: str) -> bool:
    return await _state(queue, job_id) == wanted


async def test_queue_actions_pause_resume_clean_and_retry_failed(
    make_queue: Callable[..., Queue], make_app: MakeApp, client_for: ClientFor
) -> None:
    queue = make_queue("qacts")
    for i in range(3):
        await queue.add("a", {"i": i}, delay=3600)
    client = client_for(make_app())
    csrf = await _csrf(client)

    def act(action: str, **fields: str) -> Any:
        data = {"csrf": csrf, "confirmed": "1", **fields}
        return client.post(f"/queues/qacts/action/{action}", data=data)

    assert (await act("pause")).headers["location"] == "/queues/qacts?done=pause"
    assert await queue.is_paused()
    page = (await client.get("/queues/qacts?done=pause")).text
    assert "The queue was paused." in page and 'data-action="resume"' in page
    assert (await act("resume")).status_code == 303
    assert not await queue.is_paused()
    assert (await act("clean", state="delayed", grace="0")).status_code == 303
    assert (await queue.get_job_counts())["delayed"] == 0
    assert (await act("clean", state="active", grace="0")).status_code == 400
    assert (await act("clean", state="failed", grace="-1")).status_code == 400
    assert (await act("retry-failed")).status_code == 303
    assert (await act("obliterate")).status_code == 404
