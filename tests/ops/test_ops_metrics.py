"""Prometheus metrics: the queue-level gauges of `metrics_app` against the real counts in
Redis, the standalone `python -m jobqueue.metrics`, and a worker's counters and histograms
(`instrument`) after real jobs ran, failed and were deferred."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from ops_helpers import HANG, ROOT, child_env, wait_for
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from jobqueue import Breaker, Bucket, Job, Limiter, Queue, RetryAfter, Worker, WorkerHooks
from jobqueue.errors import ErrorType
from jobqueue.metrics import (
    JOB_STATES,
    LimiterMetricsCollector,
    instrument,
    metrics_app,
    worker_metrics,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample by (name, sorted labels), through prometheus_client's own parser."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def scrape(app: Any, path: str = "/metrics", accept: str = "") -> tuple[int, str, str]:
    """Call the ASGI app as a server would; (status, content type, body)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "root_path": "",
        "headers": [(b"accept", accept.encode())] if accept else [],
    }
    await app(scope, receive, send)
    headers = dict(sent[0]["headers"])
    return sent[0]["status"], headers[b"content-type"].decode(), sent[1]["body"].decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_gauges_are_the_real_counts_of_every_queue(
    make_queue: Callable[..., Queue],
    run_worker: Callable[..., Worker],
    redis_client: Any,
    prefix: str,
) -> None:
    busy = make_queue("busy", attempts=1)
    held = make_queue("held")
    await busy.add_bulk([("ok", 1), ("ok", 2), ("boom", 3)])

    async def handler(job: Job) -> int:
        if job.name == "boom":
            raise ValueError("bad input")
        return 1

    worker = run_worker(busy, handler)
    await wait_for(lambda: _finished(busy, 3), what="three jobs finished")
    await worker.close()
    await busy.add_bulk([("ok", 4), ("ok", 5)])
    await busy.add("later", delay=3600)
    await held.pause()
    await held.add_bulk([("x", i) for i in range(4)])

    app = metrics_app(redis=redis_client, prefix=prefix)
    status, ctype, body = await scrape(app)
    assert status == 200 and ctype.startswith("text/plain")
    samples = parse(body)
    assert value(samples, "jobqueue_redis_up") == 1
    for queue in (busy, held):
        counts = await queue.get_job_counts()
        assert set(counts) == set(JOB_STATES)
        for state in JOB_STATES:
            got = value(samples, "jobqueue_jobs", queue=queue.name, state=state)
            assert got == counts[state], (queue.name, state, got, counts)
    assert value(samples, "jobqueue_jobs", queue="busy", state="completed") == 2
    assert value(samples, "jobqueue_jobs", queue="busy", state="failed") == 1
    assert value(samples, "jobqueue_jobs", queue="busy", state="delayed") == 1
    assert value(samples, "jobqueue_jobs", queue="held", state="paused") == 4
    assert value(samples, "jobqueue_queue_paused", queue="held") == 1
    assert value(samples, "jobqueue_queue_paused", queue="busy") == 0

    # a second scrape reads Redis again: the gauges follow the queue
    await held.resume()
    samples = parse((await scrape(app))[2])
    assert value(samples, "jobqueue_queue_paused", queue="held") == 0
    assert value(samples, "jobqueue_jobs", queue="held", state="waiting") == 4

    # mounted under /metrics the app sees "/"; OpenMetrics when the scraper asks for it
    status, ctype, body = await scrape(app, "/", accept="application/openmetrics-text")
    assert status == 200 and ctype.startswith("application/openmetrics-text")
    assert body.rstrip().endswith("# EOF")
    assert (await scrape(app, "/nothing"))[0] == 404


async def _finished(queue: Queue, n: int) -> bool:
    c = await queue.get_job_counts()
    return c["completed"] + c["failed"] >= n


async def test_limiter_and_breaker_gauges(
    make_queue: Callable[..., Queue],
    run_worker: Callable[..., Worker],
    redis_client: Any,
    prefix: str,
) -> None:
    limiter = Limiter(
        "model.x",
        {"requests": Bucket(50, per=60)},
        Breaker(failures=1, window=60, cooldown=3600, max_wait=7200),
    )
    q = make_queue("calls", limiter=limiter, cost={"requests": 1})
    await q.add_bulk([("down", 1), ("down", 2)])
    registry = CollectorRegistry()

    async def handler(job: Job) -> None:
        raise ConnectionError("HTTP 529 overloaded")

    worker = run_worker(q, handler)
    metrics = instrument(worker, registry)
    # the worker published the limiter in `meta`; one server-side failure opens the breaker
    await wait_for(lambda: _breaker_open(q), what="the breaker opened")
    samples = parse((await scrape(metrics_app(redis=redis_client, prefix=prefix)))[2])
    assert value(samples, "jobqueue_breaker_open", limiter="model.x") == 1
    assert value(samples, "jobqueue_breaker_state", limiter="model.x", state="open") == 1
    assert value(samples, "jobqueue_breaker_state", limiter="model.x", state="closed") == 0
    assert value(samples, "jobqueue_breaker_openings_total", limiter="model.x") == 1
    assert value(samples, "jobqueue_limiter_capacity", limiter="model.x", bucket="requests") == 50
    tokens = value(samples, "jobqueue_limiter_tokens", limiter="model.x", bucket="requests")
    assert tokens is not None and 0 <= tokens <= 50
    # the worker counted its deferral behind the breaker, not a retry
    await wait_for(
        lambda: _async(metrics.deferrals.labels("calls", "breaker")._value.get() >= 1),
        what="the deferral counted",
    )
    own = parse(generate_latest(registry).decode())
    assert value(own, "jobqueue_job_deferrals_total", queue="calls", reason="breaker") >= 1
    assert (
        value(own, "jobqueue_job_retries_total", queue="calls", error_type="NETWORK_ERROR") is None
    )

    # the worker process's own view of its limiters (served by start_http_server)
    collector = LimiterMetricsCollector([q])
    await collector.refresh()
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    own = parse(generate_latest(reg).decode())
    assert value(own, "jobqueue_breaker_open", limiter="model.x") == 1


async def _async(v: Any) -> Any:
    return v


async def _breaker_open(q: Queue) -> bool:
    state = await q.get_limiter_state()
    return state.breaker is not None and state.breaker.state == "open"


async def test_worker_counters_and_histograms(
    make_queue: Callable[..., Queue], run_worker: Callable[..., Worker]
) -> None:
    q = make_queue("work", attempts=2, max_deferrals=1)
    seen: list[str] = []
    limited: list[str] = []

    async def handler(job: Job) -> int:
        if job.name == "boom":
            raise ValueError("bad")
        if job.name == "limited" and not limited:
            limited.append(job.id)
            raise RetryAfter(0.01, "429", error_type=ErrorType.RATE_LIMIT)
        return 1

    def users_hook(job: Job, result: Any) -> None:
        seen.append(job.id)

    registry = CollectorRegistry()
    worker = run_worker(q, handler, on_completed=users_hook)
    metrics = instrument(worker, registry)
    assert instrument(worker, registry) is metrics  # one set of metrics per registry
    await q.add_bulk([("ok", i) for i in range(5)])
    await q.add("boom")
    await q.add("limited")

    await wait_for(lambda: _finished(q, 7), what="seven jobs finished")

    async def counted() -> bool:
        s = parse(generate_latest(registry).decode())
        return (value(s, "jobqueue_jobs_completed_total", queue="work") or 0) >= 6 and (
            value(s, "jobqueue_jobs_failed_total", queue="work", error_type="UNKNOWN") or 0
        ) >= 1

    await wait_for(counted, what="the counters")
    text = generate_latest(registry).decode()
    s = parse(text)
    assert value(s, "jobqueue_jobs_completed_total", queue="work") == 6
    assert len(seen) == 6  # the user's own hook still runs beside the metrics'
    # boom: one retry (attempts=2), then failed for good, both as its error type
    assert value(s, "jobqueue_job_retries_total", queue="work", error_type="UNKNOWN") == 1
    assert value(s, "jobqueue_jobs_failed_total", queue="work", error_type="UNKNOWN") == 1
    assert value(s, "jobqueue_job_deferrals_total", queue="work", reason="rate_limited") == 1
    assert value(s, "jobqueue_jobs_started_total", queue="work") == 9
    assert value(s, "jobqueue_job_run_seconds_count", queue="work") == 9
    assert (value(s, "jobqueue_job_run_seconds_sum", queue="work") or 0) > 0
    assert value(s, "jobqueue_job_wait_seconds_count", queue="work") == 7  # first attempts
    assert value(s, "jobqueue_job_wait_seconds_bucket", queue="work", le="+Inf") == 7
    metrics.observe_limiter_wait("work", 0.5)
    s = parse(generate_latest(registry).decode())
    assert value(s, "jobqueue_limiter_wait_seconds_count", queue="work") == 1


def test_instrument_refuses_a_running_worker() -> None:
    q = Queue("never", redis="redis://127.0.0.1:1/0")
    worker = Worker(q, lambda job: None, handle_signals=False)
    worker._started = True
    with pytest.raises(RuntimeError, match="before the worker runs"):
        instrument(worker, CollectorRegistry())


async def test_the_standalone_server(
    make_queue: Callable[..., Queue], redis_url: str, prefix: str
) -> None:
    q = make_queue("solo")
    await q.add_bulk([("x", i) for i in range(3)])
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobqueue.metrics", "--redis", redis_url, "--prefix", prefix,
         "--port", str(port)],
        cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:

        def get() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=HANG) as r:
                return str(r.read().decode())

        async def served() -> str | None:
            try:
                return await asyncio.to_thread(get)
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                return None

        s = parse(await wait_for(served, what="the metrics server"))
        assert value(s, "jobqueue_jobs", queue="solo", state="waiting") == 3
        await q.add("x", 4)
        s = parse(await asyncio.to_thread(get))  # each scrape reads Redis again
        assert value(s, "jobqueue_jobs", queue="solo", state="waiting") == 4
    finally:
        proc.terminate()
        assert proc.wait(HANG) == 0
        if proc.stdout:
            proc.stdout.close()


def test_merged_hooks_run_both_even_when_one_raises() -> None:
    calls: list[str] = []

    def broken(job: Any) -> None:
        calls.append("first")
        raise RuntimeError("a broken hook")

    def second(job: Any) -> None:
        calls.append("second")

    merged = WorkerHooks(on_active=broken).merged(WorkerHooks(on_active=second, on_error=second))
    assert merged.on_error is second  # set on one side only: kept as it is
    assert merged.on_active is not None
    merged.on_active("job")
    assert calls == ["first", "second"]


def test_the_readme_lists_every_metric() -> None:
    from datetime import UTC, datetime

    from jobqueue import BreakerState, BucketState, LimiterState
    from jobqueue.metrics import QueueMetricsCollector, QueueSnapshot, Snapshot

    registry = CollectorRegistry()
    metrics = worker_metrics(registry)
    assert metrics is worker_metrics(registry)
    limiter = LimiterState(
        "l",
        (BucketState("requests", 10.0, 5.0, 60.0, False),),
        0,
        BreakerState("open", datetime.now(UTC), 3, 1),
    )
    snapshot = Snapshot(
        queues=(QueueSnapshot("q", dict.fromkeys(JOB_STATES, 0), False, 0, "l"),),
        limiters=(limiter,),
    )
    collector = QueueMetricsCollector.__new__(QueueMetricsCollector)  # families() only
    families = [*collector.families(snapshot), *registry.collect()]
    shown = {f.name + ("_total" if f.type == "counter" else "") for f in families}
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Metrics") :]
    for name in sorted(shown | {"jobqueue_redis_up"}):
        assert f"`{name}`" in section, name


async def test_the_app_answers_lifespan_and_refuses_other_methods(
    redis_url: str, prefix: str
) -> None:
    app = metrics_app(redis=redis_url, prefix=prefix)  # a URL: the app owns its client
    status, _, body = await scrape(app)
    assert status == 200
    assert value(parse(body), "jobqueue_redis_up") == 1
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def post() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "POST", "path": "/metrics", "headers": []}
    await app(scope, post, send)
    assert sent[0]["status"] == 405
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def lifespan() -> dict[str, Any]:
        return next(messages)

    sent.clear()
    await app({"type": "lifespan"}, lifespan, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_redis_down_gives_up_zero_and_no_stale_gauges() -> None:
    app = metrics_app(redis="redis://127.0.0.1:1/0", timeout=1.0)
    status, _, body = await scrape(app)
    samples = parse(body)
    assert status == 200 and value(samples, "jobqueue_redis_up") == 0
    assert not [n for n, _ in samples if n == "jobqueue_jobs"]
    await app.aclose()
