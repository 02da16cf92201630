"""`python -m pipeline run SECTOR [SECTOR ...]`: several sectors at once in one process, as a real
process on the test servers; and the totals of its summary (429s and breaker openings) counted
from what the real engine writes."""

from __future__ import annotations

import asyncio
import re
import sys
import uuid
from typing import Any

import pytest
from pipeline_helpers import HANG, ROOT, cli, cli_env, wait_row

from jobqueue import Breaker, Bucket, ErrorType, Job, Limiter, Queue, QueueConfig, RetryAfter
from jobqueue.testing import run_until_empty
from pipeline.run_totals import command_totals, count_rate_limited, take_baseline
from pipeline.runtime import Runtime
from pipeline.status import create_job_status

pytestmark = pytest.mark.integration

RUN_LINE = re.compile(r"^run (\S+): researching '([^']+)'$", re.M)
UUID_LINE = re.compile(r"^\s+([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\s+\S")


def _runs(out: str) -> dict[str, uuid.UUID]:
    return {sector: uuid.UUID(run) for run, sector in RUN_LINE.findall(out)}


@pytest.mark.e2e
async def test_two_sectors_at_once(runtime: Runtime) -> None:
    code, out, err = await cli(
        cli_env(runtime), "run", "Energy", "Utilities", "--auto-approve", "--timeout", str(HANG)
    )
    assert code == 0, err
    runs = _runs(out)
    assert set(runs) == {"Energy", "Utilities"}, out
    pool = runtime.pool
    ids = list(runs.values())
    statuses = await pool.fetch("SELECT status FROM sector_analysis WHERE id = ANY($1)", ids)
    assert [r["status"] for r in statuses] == ["completed", "completed"]
    # plain progress lines (stdout is a pipe), each run's last one at its end state
    for sector in runs:
        progress = re.findall(rf"^\[\s*\d+\.\ds\] {sector} \((\w+)\): sector-research", out, re.M)
        assert progress and progress[-1] == "completed", out
    # one summary: a row per run, then the totals
    for sector, run in runs.items():
        assert re.search(rf"│ {sector}\s+│ {run} │ completed\s+│", out), out
    assert out.count("\ntotals\n") == 1, out
    totals = out[out.index("\ntotals\n") :]
    assert "runs: 2 of 2 completed" in totals
    usage = await pool.fetchrow(
        "SELECT count(*) AS calls, sum(cost_usd) AS cost FROM llm_usage "
        "WHERE related_id = ANY($1::text[])",
        [str(r) for r in ids],
    )
    assert usage["calls"] > 0
    assert f"spend: ${usage['cost']:.4f} in {usage['calls']} model calls (llm_usage)" in totals
    assert re.search(r"^cached input: \d+\.\d% of [\d,]+ prompt tokens", totals, re.M), totals
    jobs = await pool.fetchval(
        "SELECT count(*) FROM job_status WHERE related_id = ANY($1::text[])",
        [str(r) for r in ids],
    )
    assert f"429s received: 0 (RATE_LIMIT events among the {jobs} jobs of these runs)" in totals
    assert (
        "breaker openings: 0 (anthropic.claude-haiku-5-5 0, anthropic.claude-opus-5-5 0, "
        "anthropic.claude-sonnet-5-5 0)"
    ) in totals
    assert re.search(r"^wall time: \d+\.\ds$", totals, re.M), totals


@pytest.mark.e2e
async def test_one_run_stopped_by_its_budget_leaves_the_other_going(runtime: Runtime) -> None:
    """Without --auto-approve: every run lists its sub-sectors and waits; one is approved, the
    other runs out of budget at its ranking; the first completes all the same, exit 1."""
    env = cli_env(runtime)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipeline", "run", "Energy", "Utilities", "--timeout", str(HANG),
        env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    stderr = asyncio.create_task(proc.stderr.read())
    try:
        head: list[str] = []
        listed: dict[str, str] = {}  # sector -> its first sub-sector listed
        listing: str | None = None
        while len(listed) < 2:
            line = (await asyncio.wait_for(proc.stdout.readline(), HANG)).decode()
            assert line, f"run ended before listing the sub-sectors: {head}"
            head.append(line)
            if m := re.match(r"^(\w+): sub-sectors awaiting approval", line):
                listing = m.group(1)
            elif (m := UUID_LINE.match(line)) and listing is not None:
                listed.setdefault(listing, m.group(1))
        runs = _runs("".join(head))
        # Utilities may spend nothing more: its ranking's model call is refused
        await runtime.pool.execute(
            "UPDATE sector_analysis SET budget_usd = 0 WHERE id = $1", runs["Utilities"]
        )
        for sector in ("Energy", "Utilities"):
            code, _, err = await cli(env, "approve", listed[sector])
            assert code == 0, err
        rest = (await asyncio.wait_for(proc.stdout.read(), HANG)).decode()
        assert await asyncio.wait_for(proc.wait(), HANG) == 1, await stderr
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert re.search(rf"│ Energy\s+│ {runs['Energy']} │ completed\s+│", rest), rest
    assert "runs: 1 of 2 completed" in rest
    pool = runtime.pool
    assert (
        await pool.fetchval("SELECT status FROM sector_analysis WHERE id=$1", runs["Energy"])
        == "completed"
    )
    await wait_row(
        pool,
        "SELECT status = 'budget_exceeded' FROM sector_analysis WHERE id = $1",
        runs["Utilities"],
    )


async def test_a_sector_given_twice_is_refused(runtime: Runtime) -> None:
    env = cli_env(runtime)
    before = await runtime.pool.fetchval("SELECT count(*) FROM sector_analysis")
    code, out, err = await cli(env, "run", "Energy", "Utilities", " energy", "--auto-approve")
    assert (code, out) == (2, "")
    assert err.strip() == (
        "error: sector ' energy' is given twice (as 'Energy'): give each sector once"
    )
    code, out, err = await cli(env, "run", "Energy", "Energy")
    assert (code, out) == (2, "")
    assert "error: sector 'Energy' is given twice" in err
    assert await runtime.pool.fetchval("SELECT count(*) FROM sector_analysis") == before
    code, out, _ = await cli(env, "run", "--help")
    assert code == 0
    assert "SECTOR [SECTOR ...]" in out and "exit codes:" in out


# --- the totals, from what the engine writes ---------------------------------------------------


def _handler(calls: dict[tuple[str, str], int]) -> Any:
    """Fails each job's first attempt as its data says: a 429, or a server-side failure."""

    async def handle(job: Job) -> str:
        key = (job.queue.name, job.id)  # a job id is unique in its queue only
        calls[key] = calls.get(key, 0) + 1
        if calls[key] == 1 and job.data["first"] == "429":
            raise RetryAfter(0.01, "429 too many requests", error_type=ErrorType.RATE_LIMIT)
        if calls[key] == 1 and job.data["first"] == "down":
            raise ConnectionError("connection reset by the provider")
        return "ok"

    return handle


async def test_totals_count_429s_and_breaker_openings(make_runtime: Any) -> None:
    """Queues on a shared limiter with a breaker (two of them), one on a limiter without; jobs
    of our run and of another; the 429s and an opening before the baseline are not counted."""
    rt: Runtime = await make_runtime(limits="per-queue")  # the limiters are the test's own
    prefix = rt.settings.prefix
    llm = Limiter(
        "llm.test",
        {"requests": Bucket(1000, per=60)},
        breaker=Breaker(failures=2, window=60, cooldown=0.05, max_wait=600),
    )
    plain = Limiter("plain.test", {"requests": Bucket(1000, per=60)})
    fast = {"RATE_LIMIT": 0.01, "NETWORK_ERROR": 0.01}
    for job_type, limiter in (
        ("stock-analysis", llm),
        ("judge-review", llm),
        ("format-insights", plain),
    ):
        await rt.queues[job_type].close()
        rt.queues[job_type] = Queue(
            QueueConfig(job_type, limiter=limiter, retry_delays=fast), redis=rt.redis, prefix=prefix
        )
    # a 429 past the last deferral fails the job: a `failed` event, a 429 all the same
    await rt.queues["stock-ranking"].close()
    rt.queues["stock-ranking"] = Queue(
        QueueConfig("stock-ranking", max_deferrals=0), redis=rt.redis, prefix=prefix
    )
    analysis, judge, insights, ranking = (
        rt.queues[t] for t in ("stock-analysis", "judge-review", "format-insights", "stock-ranking")
    )
    ours, other = str(uuid.uuid4()), str(uuid.uuid4())
    calls: dict[tuple[str, str], int] = {}

    async def add(queue: Queue, first: str, run: str) -> None:
        # ids unique across queues, as the pipeline's (`job_status` is keyed by job id)
        job = await queue.add("x", {"first": first}, job_id=f"{queue.name}:{uuid.uuid4()}")
        await create_job_status(job.id, queue.name, run, queue=queue.name)

    async def drain(*queues: Queue) -> None:
        for queue in queues:
            result = await run_until_empty(queue, _handler(calls), concurrency=4, timeout=HANG)
            assert len(result.failed) == (1 if queue is ranking else 0)

    # before the command: a 429 of our run and one opening of the breaker
    await add(analysis, "429", ours)
    await add(analysis, "down", ours)
    await add(analysis, "down", ours)
    await drain(analysis)
    state = await analysis.get_limiter_state()
    assert state.breaker is not None and state.breaker.openings == 1

    baseline = await take_baseline(rt)
    assert baseline.openings == {"llm.test": 1}  # the limiter without a breaker is left out
    for first, run in (("429", ours), ("429", ours), ("429", other), ("down", ours)):
        await add(analysis, first, run)
    await add(judge, "429", ours)
    await add(judge, "down", other)  # the second server-side failure: the breaker opens
    await add(insights, "429", ours)
    await add(insights, "ok", ours)
    await add(ranking, "429", ours)
    await drain(analysis, judge, insights, ranking)

    totals = await command_totals(rt, [uuid.UUID(ours)], baseline, 1.5)
    ours_jobs = await rt.pool.fetchval("SELECT count(*) FROM job_status WHERE related_id=$1", ours)
    assert totals.rate_limited.count == 5  # 2 on analysis, 1 each on judge, insights, ranking
    assert totals.rate_limited.jobs == ours_jobs
    assert totals.rate_limited.complete
    assert totals.openings == {"llm.test": 1}
    lines = totals.lines()
    assert f"429s received: 5 (RATE_LIMIT events among the {ours_jobs} jobs of these runs)" in lines
    assert "breaker openings: 1 (llm.test 1)" in lines
    assert "wall time: 1.5s" in lines
    # without the jobs' mapping: every job of the window, the other run's included
    every = await count_rate_limited(rt.queues.values(), baseline.since_ms)
    assert (every.count, every.jobs) == (6, None)


async def test_totals_without_a_limiter(make_runtime: Any) -> None:
    runtime = await make_runtime(limits="per-queue")
    baseline = await take_baseline(runtime)
    assert baseline.openings == {}
    totals = await command_totals(runtime, [uuid.uuid4()], baseline, 0.0)
    assert totals.openings is None and totals.rate_limited.count == 0
    assert "breaker openings: 0 (no breaker configured)" in totals.lines()
