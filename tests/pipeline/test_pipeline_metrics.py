"""`python -m pipeline.workers --metrics-port P`: after an offline run, the process serves the
model tokens, cost and calls by model, its workers' counters and histograms, and the state of
its shared limiters (parsed with prometheus_client's parser); and `MetricsGuard` counts what it
sees in process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline_helpers import HANG, wait_for, wait_row
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.ai.base import LLMError, LLMResult, Usage
from pipeline.ai.guard import LLMCall
from pipeline.flow import approve_subsector, start_sector_research
from pipeline.metrics import MetricsGuard
from pipeline.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name` over the samples whose labels include `labels`."""
    return sum(
        v for (n, lbls), v in samples.items() if n == name and set(labels.items()) <= set(lbls)
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def workers_process(runtime: Runtime, tmp_path: Path) -> Iterator[int]:
    """`python -m pipeline.workers --metrics-port P` on the test's runtime; yields P."""
    s = runtime.settings
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "REDIS_URL": s.redis_url or "",
            "DATABASE_URL": s.database_url or "",
            "PIPELINE_PREFIX": s.prefix,
            "PIPELINE_LLM_MODE": "offline",
            "PIPELINE_OFFLINE_LATENCY": "0",
            "PIPELINE_LEASE": "30",
            "PIPELINE_STALL_INTERVAL": "0.2",
            "PIPELINE_DRAIN_DELAY": "0.3",
            "PIPELINE_REJECTION_DELAY": "0.1",
            "PIPELINE_RETRY_SCALE": "0.01",
            "PIPELINE_STOCKS_TO_ANALYZE": "2",
            "PIPELINE_SHUTDOWN_GRACE": "1",
            "PYTHONPATH": str(ROOT),
        }
    )
    env.pop("ANTHROPIC_API_KEY", None)
    log = tmp_path / "workers.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.workers", "--metrics-port", str(port)],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield port
    finally:
        proc.terminate()
        try:
            code = proc.wait(HANG)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        assert code == 0, log.read_text()[-3000:]


def get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=HANG) as r:
        return str(r.read().decode())


async def scrape(port: int) -> Samples:
    return parse(await asyncio.to_thread(get, port))


@pytest.mark.integration
@pytest.mark.e2e
async def test_the_workers_process_serves_tokens_cost_and_job_metrics(
    runtime: Runtime, workers_process: int
) -> None:
    port = workers_process

    async def up() -> Samples | None:
        try:
            return await scrape(port)
        except OSError:
            return None

    before = await wait_for(up, what="the metrics server")
    assert total(before, "pipeline_llm_calls_total") == 0

    run_id = await start_sector_research("Energy", "u", runtime=runtime)
    await wait_row(
        runtime.pool, "SELECT status = 'awaiting_approval' FROM sector_analysis WHERE id=$1", run_id
    )
    sub = await runtime.pool.fetchval(
        "SELECT id FROM sub_sector WHERE sector_analysis_id=$1 ORDER BY name LIMIT 1", run_id
    )
    await approve_subsector(sub, runtime=runtime)
    await wait_row(runtime.pool, "SELECT status = 'completed' FROM sub_sector WHERE id=$1", sub)

    stages = ("sector-research", "stock-ranking", "stock-analysis", "format-insights")

    async def all_counted() -> Samples | None:
        # a hook counts a completion once Redis recorded it, after the handler's own rows:
        # the ranking (a flow parent) completes last, after its trees' format-insights jobs
        s = await scrape(port)
        done = {q: total(s, "jobqueue_jobs_completed_total", queue=q) for q in stages}
        timed = [
            total(s, f"jobqueue_job_{m}_seconds_count", queue=q)
            for q in stages
            for m in ("run", "wait")
        ]
        return s if done["format-insights"] >= 2 and min([*done.values(), *timed]) >= 1 else None

    s = await wait_for(all_counted, what="every stage's completions counted")
    calls = await runtime.pool.fetchval(
        "SELECT count(*) FROM llm_usage u JOIN sub_sector ss ON u.related_id = ss.id::text "
        "OR u.related_id = ss.sector_analysis_id::text WHERE ss.id = $1",
        sub,
    )
    ok = total(s, "pipeline_llm_calls_total", outcome="ok")
    assert ok >= 1 and ok >= calls > 0
    models = {dict(lbls)["model"] for (n, lbls), v in s.items() if n == "pipeline_llm_calls_total"}
    assert models and all(m.startswith("claude") for m in models), models
    assert total(s, "pipeline_llm_tokens_total", kind="input") > 0
    assert total(s, "pipeline_llm_tokens_total", kind="output") > 0
    assert total(s, "pipeline_llm_cost_usd_total") > 0  # priced as the configured models
    for stage in stages:  # (the wait above returned once each was counted: restated)
        assert total(s, "jobqueue_jobs_completed_total", queue=stage) >= 1, stage
        assert total(s, "jobqueue_job_run_seconds_count", queue=stage) >= 1, stage
        assert total(s, "jobqueue_job_wait_seconds_count", queue=stage) >= 1, stage
    # the shared limiters of the stages' models and their breakers, closed (their buckets have
    # no capacity until learned from a provider's headers: none offline)
    breakers = {
        dict(lbls)["limiter"]: v for (n, lbls), v in s.items() if n == "jobqueue_breaker_open"
    }
    if runtime.settings.limits == "shared":
        assert breakers and set(breakers.values()) == {0.0}, breakers
        assert total(s, "jobqueue_breaker_state", state="closed") == len(breakers)


async def test_the_metrics_guard_counts_tokens_cost_and_outcomes() -> None:
    registry = CollectorRegistry()
    guard = MetricsGuard(registry)
    call = LLMCall(
        kind="complete", tier="analysis", model="claude-sonnet-5-5", system="s", prompt="p",
        max_tokens=100,
    )  # fmt: skip
    usage = Usage(input_tokens=1000, output_tokens=200, cache_read_tokens=50, cache_write_tokens=7)
    result = LLMResult(text="x", model="offline", usage=usage, cost_usd=0.0)
    await guard.before(call)
    await guard.after(call, None, result)
    await guard.after(call, None, LLMError("slow down", error_type="RATE_LIMIT"))
    s = parse(generate_latest(registry).decode())
    model = "claude-sonnet-5-5"
    assert total(s, "pipeline_llm_tokens_total", model=model, kind="input") == 1000
    assert total(s, "pipeline_llm_tokens_total", model=model, kind="output") == 200
    assert total(s, "pipeline_llm_tokens_total", model=model, kind="cache_read") == 50
    assert total(s, "pipeline_llm_tokens_total", model=model, kind="cache_write") == 7
    assert total(s, "pipeline_llm_cost_usd_total", model=model) > 0
    assert total(s, "pipeline_llm_calls_total", model=model, outcome="ok") == 1
    assert total(s, "pipeline_llm_calls_total", model=model, outcome="RATE_LIMIT") == 1
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Metrics") :]
    for name in {n for n, _ in s}:
        if name.startswith("pipeline_") and not name.endswith("_created"):
            assert f"`{name}`" in section, name
