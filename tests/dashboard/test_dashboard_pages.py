"""The dashboard's pages against a real Redis: overview, queue, job, workers, lookup, metrics."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Callable
from typing import Any

import httpx2
from dash_helpers import wait_for
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from jobqueue import Breaker, Bucket, Child, Job, Limiter, Queue, RateLimit, Worker
from jobqueue.dashboard import DashboardOptions

MakeApp = Callable[..., Starlette]
ClientFor = Callable[..., httpx2.AsyncClient]


def count_cell(page: str, queue: str, state: str) -> int:
    """The count shown for `queue` in `state`."""
    found = re.search(rf'data-count="{re.escape(queue)}\|{re.escape(state)}">(\d+)<', page)
    assert found, f"no count of {queue}|{state}"
    return int(found.group(1))


async def test_overview_shows_every_queue_with_counts_rates_and_pause(
    make_queue: Callable[..., Queue],
    run_worker: Callable[..., Worker],
    make_app: MakeApp,
    client_for: ClientFor,
) -> None:
    emails, reports = make_queue("emails", attempts=1), make_queue("reports")

    async def handler(job: Job) -> Any:
        if job.data.get("fail"):
            raise ValueError("boom")
        return "ok"

    jobs = [await emails.add("send", {"n": i}) for i in range(3)]
    bad = await emails.add("send", {"fail": True})
    run_worker(emails, handler)
    for job in jobs:
        await job.wait_until_finished(timeout=30)
    await wait_for(lambda: emails.get_job_state(bad.id), what="the failure")
    await wait_for(
        lambda: _is(emails.get_job_state(bad.id), "failed"), what="the job to fail for good"
    )
    await reports.add("later", {}, delay=3600)
    await reports.add_flow("parent", {}, children=[Child(queue=reports, name="child")])
    await reports.pause()
    await reports.add("held", {})

    page = (await client_for(make_app()).get("/")).text
    assert count_cell(page, "emails", "completed") == 3
    assert count_cell(page, "emails", "failed") == 1
    assert count_cell(page, "reports", "delayed") == 1
    assert count_cell(page, "reports", "waiting-children") == 1
    assert count_cell(page, "reports", "paused") >= 1
    row = page[page.index('data-queue="emails"') :].split("</tr>")[0]
    assert "25.0%" in row  # 1 failed of 4 ended in the last hour
    assert 'data-paused="emails" hidden' in page
    assert 'data-paused="reports">' in page  # shown: paused
    assert "1 worker" in row


async def _is(state: Any, wanted: str) -> bool:
    return str(await state) == wanted


async def test_queue_page_lists_jobs_by_state_a_page_at_a_time(
    make_queue: Callable[..., Queue], make_app: MakeApp, client_for: ClientFor
) -> None:
    queue = make_queue("paged")
    added = [await queue.add("job", {"i": i}, delay=3600) for i in range(7)]
    client = client_for(make_app(options=DashboardOptions(page_size=3, queue_cache_seconds=0)))
    first = (await client.get("/queues/paged?state=delayed")).text
    last = (await client.get("/queues/paged?state=delayed&page=2")).text
    ids = [j.id for j in added]
    assert [i for i in ids if f'data-job-state="paged|{i}"' in first] == ids[:3]
    assert [i for i in ids if f'data-job-state="paged|{i}"' in last] == ids[6:]
    assert "page 3 of 3" in last
    assert (await client.get("/queues/nope")).status_code == 404
    assert (await client.get("/queues/paged?state=bogus")).status_code == 400


async def test_job_page_shows_data_result_error_logs_timeline_and_flow(
    make_queue: Callable[..., Queue],
    run_worker: Callable[..., Worker],
    make_app: MakeApp,
    client_for: ClientFor,
) -> None:
    queue = make_queue("jobs", attempts=2)

    async def handler(job: Job) -> Any:
        await job.log(f"attempt {job.attempt} token=abc123secret")
        await job.update_progress(40)
        if job.name == "flaky":
            raise RuntimeError("no luck: password=hunter2")
        return {"answer": 42}

    flaky = await queue.add("flaky", {"api_key": "sk-live-abcdefghijkl", "x": 1})
    parent = await queue.add_flow(
        "parent", {"p": 1}, children=[Child(queue=queue, name="kid", job_id="kid-1")]
    )
    run_worker(queue, handler)
    await wait_for(lambda: _is(queue.get_job_state(flaky.id), "failed"), what="flaky to fail")
    await parent.wait_until_finished(timeout=30)
    client = client_for(make_app())

    page = html.unescape((await client.get(f"/queues/jobs/jobs/{flaky.id}")).text)
    assert '<b class="error-type">UNKNOWN</b>' in page
    assert "RuntimeError: no luck: password=***" in page and "hunter2" not in page
    assert "sk-live" not in page and "abc123secret" not in page  # data and log redacted
    assert "attempt 1 token=***" in page and "attempt 2 token=***" in page
    assert "2 of 2" in page  # attempts
    assert 'value="40"' in page  # progress
    timeline = page[page.index('id="timeline"') :]
    assert timeline.index("added") < timeline.index("active") < timeline.index("retrying")
    assert "failed" in timeline

    kid = html.unescape((await client.get("/queues/jobs/jobs/kid-1")).text)
    assert '"answer": 42' in kid  # the result
    tree = kid[kid.index('class="tree"') :]
    assert f"jobs:{parent.id}" in tree and "jobs:kid-1" in tree
    assert tree.index(f"jobs:{parent.id}") < tree.index("jobs:kid-1")
    assert (await client.get("/queues/jobs/jobs/nope")).status_code == 404


async def test_lookup_by_id_finds_the_queue(
    make_queue: Callable[..., Queue], make_app: MakeApp, client_for: ClientFor
) -> None:
    await make_queue("one").add("a", {})
    job = await make_queue("two").add("b", {}, job_id="order-17")
    client = client_for(make_app())
    found = await client.get("/jobs", params={"id": "order-17"})
    assert found.status_code == 303
    assert found.headers["location"] == f"/queues/two/jobs/{job.id}"
    assert (await client.get("/jobs", params={"id": "missing"})).status_code == 404


async def test_workers_page_shows_heartbeats_and_running_jobs(
    make_queue: Callable[..., Queue],
    run_worker: Callable[..., Worker],
    make_app: MakeApp,
    client_for: ClientFor,
) -> None:
    queue = make_queue("busy")
    release = asyncio.Event()

    async def handler(job: Job) -> Any:
        await release.wait()

    job = await queue.add("long-task", {})
    worker = run_worker(queue, handler, name="dash-worker-1")
    await wait_for(lambda: _is(queue.get_job_state(job.id), "active"), what="the job to start")
    await wait_for(queue.get_workers, what="a heartbeat")
    client = client_for(make_app())
    page = (await client.get("/workers")).text
    release.set()
    assert "dash-worker-1" in page
    row = page[page.index("dash-worker-1") :].split("</tr>")[0]
    assert f"busy:{job.id}" in row and "long-task" in row
    assert worker is not None


async def test_metrics_are_served_from_the_dashboard(
    make_queue: Callable[..., Queue], make_app: MakeApp, client_for: ClientFor
) -> None:
    await make_queue("measured").add("a", {})
    response = await client_for(make_app()).get("/metrics")
    assert response.status_code == 200
    samples = {
        (s.name, s.labels.get("queue"), s.labels.get("state")): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert samples[("jobqueue_jobs", "measured", "waiting")] == 1.0
    assert (await client_for(make_app(), auth=False).get("/metrics")).status_code == 401


async def test_overview_shows_shared_limiter_buckets_and_breaker(
    make_queue: Callable[..., Queue], make_app: MakeApp, client_for: ClientFor
) -> None:
    limiter = Limiter(
        "llm-dash",
        {"requests": Bucket(50, per=60.0), "input_tokens": Bucket(40_000, per=60.0)},
        Breaker(failures=3, window=30.0, cooldown=30.0),
    )
    queue = make_queue("calls", limiter=limiter, rate_limit=RateLimit(10, 1.0))
    await queue.publish_config()
    await queue.add("call", {})
    page = html.unescape((await client_for(make_app()).get("/")).text)
    section = page[page.index('data-limiter="llm-dash"') :]
    assert "breaker closed" in section
    assert "requests" in section and "input_tokens" in section
    assert "40,000" in section  # the bucket's capacity
    row = page[page.index('data-queue="calls"') :].split("</tr>")[0]
    assert "limiter llm-dash" in row and "10/1s" in row
