"""`python -m pipeline run / approve / status / migrate` as real processes against the test Redis
and PostgreSQL: exit codes, what they print, and what they leave in the database."""

from __future__ import annotations

import asyncio
import re
import sys
import uuid

import pytest
from pipeline_helpers import HANG, ROOT, cli, cli_env

from pipeline.runtime import Runtime

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

UUID_LINE = re.compile(r"^\s+([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\s+\S")
STATUS_LINE = re.compile(r"^(\S+)\s+(waiting|active|completed|failed|cancelled)\s+(\d+)%\s+(\S+)")
CACHED_LINE = re.compile(
    r"^cached input: (\d+\.\d)% of ([\d,]+) prompt tokens \(cache reads ([\d,]+), "
    r"cache writes ([\d,]+), uncached ([\d,]+)\)$",
    re.M,
)


async def test_run_with_auto_approve(runtime: Runtime) -> None:
    code, out, err = await cli(
        cli_env(runtime), "run", "Technology", "--auto-approve", "--timeout", str(HANG)
    )
    assert code == 0, err
    run_id = re.search(r"^run (\S+): researching 'Technology'$", out, re.M)
    assert run_id, out
    run = uuid.UUID(run_id.group(1))
    assert f"Technology: run {run} is completed" in out
    status = await runtime.pool.fetchval("SELECT status FROM sector_analysis WHERE id=$1", run)
    assert status == "completed"
    # the summary waited for the mirror: the jobs it counts are all the run's rows, finished
    rows = await runtime.pool.fetch("SELECT status FROM job_status WHERE related_id=$1", str(run))
    assert {r["status"] for r in rows} == {"completed"}
    assert f"jobs: {len(rows)};" in out
    assert re.search(r"model calls: [1-9]", out)
    # the offline model reads the run's shared prefixes from its prompt cache
    cached = CACHED_LINE.search(out)
    assert cached, out
    assert float(cached.group(1)) > 0
    spent = await runtime.pool.fetchval("SELECT spent_usd FROM sector_analysis WHERE id=$1", run)
    assert spent > 0
    offline = r" \(offline: priced as the configured models\)"
    assert re.search(rf"^spent \${spent:.2f} of \$5\.00 budget \(\d+%\){offline}$", out, re.M), out
    # then the totals of the command, as for several sectors (the cached share printed once)
    totals = out[out.index("\ntotals\n") :]
    assert "runs: 1 of 1 completed" in totals
    assert (
        f"429s received: 0 (RATE_LIMIT events among the {len(rows)} jobs of these runs)" in totals
    )
    # one breaker per model (the default shared limits), none opened
    assert (
        "breaker openings: 0 (anthropic.claude-haiku-5-5 0, anthropic.claude-opus-5-5 0, "
        "anthropic.claude-sonnet-5-5 0)"
    ) in totals
    assert re.search(r"^wall time: \d+\.\ds$", totals, re.M), totals
    assert len(CACHED_LINE.findall(out)) == 1


async def test_run_waits_for_approve_then_status_shows_the_run(runtime: Runtime) -> None:
    env = cli_env(runtime)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pipeline",
        "run",
        "Energy",
        "--timeout",
        str(HANG),
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    stderr = asyncio.create_task(proc.stderr.read())
    try:
        head: list[str] = []
        sub_sector = None
        while sub_sector is None:
            line = (await asyncio.wait_for(proc.stdout.readline(), HANG)).decode()
            assert line, f"run ended before listing the sub-sectors: {head}"
            head.append(line)
            match = UUID_LINE.match(line)
            if match and any("awaiting approval" in h for h in head):
                sub_sector = match.group(1)
        run = uuid.UUID(re.search(r"^run (\S+):", head[0]).group(1))  # type: ignore[union-attr]

        code, out, err = await cli(env, "approve", sub_sector)
        assert (code, out.strip()) == (0, f"approved; ranking job stock-ranking:{sub_sector}"), err
        code, again, err = await cli(env, "approve", sub_sector)
        assert (code, again) == (0, out), err  # approving twice enqueues once

        rest = (await asyncio.wait_for(proc.stdout.read(), HANG)).decode()
        assert await asyncio.wait_for(proc.wait(), HANG) == 0, await stderr
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert f"Energy: run {run} is completed" in rest
    approved = await runtime.pool.fetchval("SELECT status FROM sub_sector WHERE id=$1", sub_sector)
    assert approved == "completed"

    code, out, err = await cli(env, "status", str(run))
    assert code == 0, err
    (share_line,) = [line for line in out.splitlines() if line.startswith("cached input:")]
    (spend,) = [line for line in out.splitlines() if line.startswith("spent $")]
    assert re.fullmatch(r"spent \$\d+\.\d\d of \$5\.00 budget \(\d+%\)", spend), out
    assert out.splitlines()[0] == f"run {run} is completed"
    job_lines = [line for line in out.splitlines()[1:] if line not in (share_line, spend)]
    usage = await runtime.pool.fetchrow(
        "SELECT sum(input_tokens) AS i, sum(cache_read_input_tokens) AS r, "
        "sum(cache_creation_input_tokens) AS w FROM llm_usage WHERE related_id = $1",
        str(run),
    )
    cached = CACHED_LINE.match(share_line)  # one line of its own: the run's cached share
    assert cached, out
    read, written, uncached = (int(cached.group(i).replace(",", "")) for i in (3, 4, 5))
    assert (uncached, read, written) == (usage["i"], usage["r"], usage["w"])
    assert read > 0
    assert float(cached.group(1)) == pytest.approx(
        100 * read / (read + written + uncached), abs=0.051
    )
    lines = [STATUS_LINE.match(line) for line in job_lines]
    assert lines and all(lines), out
    rows = await runtime.pool.fetch(
        "SELECT job_id, job_type, status, progress FROM job_status WHERE related_id=$1", str(run)
    )
    shown = {(m.group(4), m.group(1), m.group(2), int(m.group(3))) for m in lines if m}
    assert shown == {(r["job_id"], r["job_type"], r["status"], r["progress"]) for r in rows}
    assert {m.group(1) for m in lines if m} == {
        "sector-research",
        "stock-ranking",
        "stock-analysis",
        "judge-review",
        "format-insights",
    }


async def test_run_stopped_by_its_budget(runtime: Runtime) -> None:
    code, out, err = await cli(
        cli_env(runtime, PIPELINE_RUN_BUDGET_USD="0.10"),
        "run",
        "Technology",
        "--auto-approve",
        "--timeout",
        str(HANG),
    )
    assert code == 1, err
    assert "the research failed" in err
    run = uuid.UUID(re.search(r"^run (\S+):", out, re.M).group(1))  # type: ignore[union-attr]
    status = await runtime.pool.fetchval("SELECT status FROM sector_analysis WHERE id=$1", run)
    assert status == "budget_exceeded"


async def test_approve_and_status_errors(runtime: Runtime) -> None:
    env = cli_env(runtime)
    unknown = str(uuid.uuid4())
    code, out, err = await cli(env, "approve", unknown)
    assert (code, out) == (2, "")
    assert f"error: invalid stock-ranking payload: no sub-sector {unknown}" in err
    code, out, err = await cli(env, "approve", "not-a-uuid")
    assert (code, out) == (2, "")
    assert "error:" in err
    code, out, err = await cli(env, "status", unknown)
    assert (code, out) == (0, "")  # a run without jobs shows nothing
    no_urls = {k: v for k, v in env.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    code, out, err = await cli(no_urls, "approve", unknown)
    assert (code, err.strip()) == (2, "error: set REDIS_URL and DATABASE_URL")
    code, out, err = await cli(no_urls, "status", unknown)
    assert (code, err.strip()) == (2, "error: set DATABASE_URL")
    code, out, err = await cli(env, "bogus")
    assert code == 2 and "invalid choice" in err


async def test_migrate(runtime: Runtime) -> None:
    code, out, err = await cli(cli_env(runtime), "migrate")
    assert code == 0, err
    assert "schema version" in out
