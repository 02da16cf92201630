"""OpenTelemetry tracing: a `send` span when a job is added, its context in the job, a
`process` span for each run; nothing of it when no tracer provider is set."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from engine_helpers import HANG, wait_for
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from tracing_helpers import named, parent_id, tracing

from jobqueue import Child, Job, Queue, QueueConfig, UnrecoverableError, Worker

pytestmark = pytest.mark.integration

FAST = {"NETWORK_ERROR": 0.02, "UNKNOWN": 0.02, "RATE_LIMIT": 0.05}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with tracing() as exporter:
        yield exporter


@pytest.fixture
async def start(
    redis_url: str, prefix: str
) -> AsyncIterator[Callable[..., Awaitable[tuple[Queue, Worker]]]]:
    started: list[tuple[Worker, asyncio.Task[None], Queue]] = []

    async def run(handler: Any, name: str = "tq", **options: Any) -> tuple[Queue, Worker]:
        options.setdefault("retry_delays", FAST)
        options.setdefault("drain_delay", 0.5)
        q = Queue(QueueConfig(name, **options), redis=redis_url, prefix=prefix)
        w = Worker(q, handler, concurrency=2, handle_signals=False, shutdown_grace=1)
        started.append((w, asyncio.create_task(w.run()), q))
        return q, w

    yield run
    for w, task, q in started:
        await w.close()
        await task
        await q.close()


async def stored_envelope(q: Queue, job_id: str) -> dict[str, Any]:
    record = await q.scripts.get_job(job_id)
    assert record is not None
    env: dict[str, Any] = json.loads(record.envelope)
    return env


async def test_a_job_and_the_job_its_handler_adds_are_one_trace(
    spans: InMemorySpanExporter, start: Any
) -> None:
    async def handler(job: Job) -> str:
        if job.name == "first":
            assert trace.get_current_span().get_span_context().is_valid
            await job.queue.add("second", {"from": job.id})
        return job.name

    q, _ = await start(handler)
    first = await q.add("first", {"n": 1})
    assert await first.wait_until_finished(timeout=HANG) == "first"
    env = await stored_envelope(q, first.id)
    assert env["tp"]["traceparent"].startswith("00-")

    async def both_ran() -> bool:  # the second job's span ends after the first's result
        return len(named(spans.get_finished_spans(), "process tq")) == 2

    await wait_for(both_ran, timeout=HANG, what="the second job's run")
    finished = spans.get_finished_spans()
    send = named(finished, "send tq")
    process = named(finished, "process tq")
    assert len(send) == 2 and len(process) == 2, [s.name for s in finished]
    # one trace: send(first) -> process(first) -> send(second) -> process(second)
    assert {s.context.trace_id for s in finished} == {send[0].context.trace_id}
    by_msg = {s.attributes["messaging.message.id"]: s for s in process}
    p1 = by_msg[first.id]
    (p2,) = [s for s in process if s is not p1]
    second = p2.attributes["messaging.message.id"]
    s1 = next(s for s in send if s.attributes["messaging.message.id"] == first.id)
    s2 = next(s for s in send if s.attributes["messaging.message.id"] == second)
    assert parent_id(s1) is None
    assert parent_id(p1) == s1.context.span_id
    assert parent_id(s2) == p1.context.span_id
    assert parent_id(p2) == s2.context.span_id
    assert s1.kind == SpanKind.PRODUCER and p1.kind == SpanKind.CONSUMER
    assert dict(s1.attributes or {}) == {
        "messaging.system": "jobqueue",
        "messaging.destination.name": "tq",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.message.id": first.id,
    }
    attrs = dict(p1.attributes or {})
    assert attrs["messaging.operation.type"] == "process"
    assert attrs["messaging.destination.name"] == "tq"
    assert attrs["jobqueue.job.name"] == "first"
    assert attrs["jobqueue.job.attempt"] == 1
    assert attrs["jobqueue.job.outcome"] == "completed"
    assert p1.status.status_code == StatusCode.UNSET


async def test_a_failed_run_is_an_error_span_with_its_type(
    spans: InMemorySpanExporter, start: Any
) -> None:
    async def handler(job: Job) -> str:
        if job.name == "once" and job.attempt == 1:
            raise RuntimeError("first try fails")
        if job.name == "never":
            raise UnrecoverableError("secret=hunter2 fails for good")
        return "ok"

    q, _ = await start(handler, attempts=3)
    once = await q.add("once")
    never = await q.add("never")
    assert await once.wait_until_finished(timeout=HANG) == "ok"
    with pytest.raises(Exception, match="fails for good"):
        await never.wait_until_finished(timeout=HANG)
    process = named(spans.get_finished_spans(), "process tq")
    runs = {
        (s.attributes["messaging.message.id"], s.attributes["jobqueue.job.attempt"]): s
        for s in process
    }
    retried, done, failed = runs[(once.id, 1)], runs[(once.id, 2)], runs[(never.id, 1)]
    assert retried.attributes["jobqueue.job.outcome"] == "retried"
    assert retried.status.status_code == StatusCode.ERROR
    assert retried.attributes["jobqueue.job.exception"] == "RuntimeError"
    assert done.attributes["jobqueue.job.outcome"] == "completed"
    assert done.status.status_code == StatusCode.UNSET
    assert done.context.trace_id == retried.context.trace_id  # both runs of one job
    assert failed.attributes["jobqueue.job.outcome"] == "failed"
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["error.type"] == failed.status.description
    assert failed.attributes["jobqueue.job.exception"] == "UnrecoverableError"
    # error messages may quote user data: not recorded
    assert not failed.events
    assert "hunter2" not in repr(dict(failed.attributes or {}))


async def test_bulk_and_flows_carry_the_send_span(
    spans: InMemorySpanExporter, redis_url: str, prefix: str
) -> None:
    async with Queue("tb", redis=redis_url, prefix=prefix) as q:
        jobs = await q.add_bulk([("a", 1), ("b", 2), ("c", 3)])
        parent = await q.add_flow("parent", children=[Child(queue="tb", name="kid", data=1)])
        send = named(spans.get_finished_spans(), "send tb")
        assert len(send) == 2
        bulk, flow = send
        assert bulk.attributes["messaging.batch.message_count"] == 3
        assert "messaging.message.id" not in (bulk.attributes or {})
        assert flow.attributes["messaging.message.id"] == parent.id
        assert flow.attributes["messaging.batch.message_count"] == 2
        for job in jobs:
            tp = (await stored_envelope(q, job.id))["tp"]["traceparent"]
            assert tp.split("-")[2] == format(bulk.context.span_id, "016x")
        kid_id = next(i for i in await q.get_job_ids("waiting") if i not in {j.id for j in jobs})
        for job_id in (parent.id, kid_id):
            tp = (await stored_envelope(q, job_id))["tp"]["traceparent"]
            assert tp.split("-")[1] == format(flow.context.trace_id, "032x")


async def test_a_thread_pool_handler_runs_in_its_process_span(
    spans: InMemorySpanExporter, start: Any
) -> None:
    def handler(job: Job) -> str:
        return format(trace.get_current_span().get_span_context().span_id, "016x")

    q, _ = await start(handler)
    job = await q.add("x")
    seen = await job.wait_until_finished(timeout=HANG)
    (process,) = named(spans.get_finished_spans(), "process tq")
    assert seen == format(process.context.span_id, "016x")


async def test_no_tracer_provider_means_no_trace_field(start: Any) -> None:
    seen: list[bool] = []

    async def handler(job: Job) -> None:
        seen.append(trace.get_current_span().get_span_context().is_valid)

    q, _ = await start(handler)
    job = await q.add("x", {"n": 1})
    await job.wait_until_finished(timeout=HANG)
    assert set(await stored_envelope(q, job.id)) == {"n", "d", "ts"}
    assert seen == [False]


@pytest.mark.e2e
async def test_the_trace_crosses_into_a_worker_process(
    spans: InMemorySpanExporter, redis_url: str, prefix: str, tmp_path: Any
) -> None:
    import os
    import sys
    from pathlib import Path

    out = tmp_path / "spans.jsonl"
    here = Path(__file__).parent
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(here / "traced_worker_proc.py"), redis_url, prefix, "tx", str(out),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(here.parents[1])},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), HANG) == b"ready\n"
        async with Queue("tx", redis=redis_url, prefix=prefix) as q:
            first = await q.add("first")
            assert await first.wait_until_finished(timeout=HANG) == "first"

            async def second_done() -> bool:
                ids = await q.get_job_ids("completed")
                return len(ids) == 2

            await wait_for(second_done, timeout=HANG, what="the second job")
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), HANG)
    (send,) = named(spans.get_finished_spans(), "send tx")  # this process: the producer
    theirs = [json.loads(line) for line in out.read_text().splitlines()]
    by_name = {(s["name"], s["attributes"]["messaging.message.id"]): s for s in theirs}
    p1 = by_name[("process tx", first.id)]
    assert p1["kind"] == "CONSUMER"
    assert p1["trace_id"] == format(send.context.trace_id, "032x")
    assert p1["parent_id"] == format(send.context.span_id, "016x")
    (s2,) = [s for s in theirs if s["name"] == "send tx"]
    (p2,) = [s for s in theirs if s["name"] == "process tx" and s is not p1]
    assert s2["parent_id"] == p1["span_id"] and p2["parent_id"] == s2["span_id"]
    assert {s["trace_id"] for s in theirs} == {p1["trace_id"]}


async def test_a_bad_trace_field_starts_a_trace_of_its_own(
    spans: InMemorySpanExporter, start: Any
) -> None:
    from jobqueue.core.replies import NewJob

    async def handler(job: Job) -> str:
        return "ran"

    q, _ = await start(handler)
    bad = ['{"traceparent":"00-zz-yy-01"}', '"not a carrier"', "[1,2]"]
    added = await q.scripts.add(
        [NewJob("", "x", '{"n":"x","d":null,"tp":' + tp + "}", 0, 0) for tp in bad]
    )
    for job_id, _code in added:
        got = await q.get_job(job_id)
        assert got is not None and await got.wait_until_finished(timeout=HANG) == "ran"
    process = named(spans.get_finished_spans(), "process tq")
    assert len(process) == 3
    assert all(parent_id(s) is None for s in process)
