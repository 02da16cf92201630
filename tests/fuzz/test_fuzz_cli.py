"""Every command line with wrong arguments, as real processes: each ends with exit code 2 and
one clear line (argparse's usage error, or `error: ...`), never a traceback, never a 10 KB
argument echoed whole, and writes nothing (the test's Redis keys and the pipeline's rows are
unchanged). A few representative cases per command: processes are slow to start."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from fuzz_helpers import BIG, redis_state, row_counts
from pipeline_helpers import HANG, cli_env
from redis.asyncio import Redis

from jobqueue import Queue
from pipeline.runtime import Runtime

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
UUID0 = "00000000-0000-0000-0000-000000000000"
TABLES = ("job_status", "sector_analysis", "sub_sector", "webhook_delivery")


async def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run `python ARGS` to its end (bounded: a hang fails); returns (exit code, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, env=env, cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _out, err = await asyncio.wait_for(proc.communicate(), HANG)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{args[:3]} did not end") from None
    return proc.returncode or 0, err.decode(errors="replace")


def assert_usage_error(code: int, err: str, expect: str) -> None:
    assert "Traceback" not in err, err[-2000:]
    assert code == 2, (code, err[-2000:])
    assert len(err) < 2000, f"{len(err)} chars on stderr: an argument echoed whole?"
    assert expect in err, err


def engine_env(redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return {**env, "PYTHONPATH": str(ROOT)}


@pytest.fixture
async def fuzz_queue(redis_client: Redis, prefix: str) -> Queue:
    """A queue with one job, so that commands get past "unknown queue"."""
    queue = Queue("fuzz", redis=redis_client, prefix=prefix)
    await queue.add("seed", {"n": 1}, job_id="seed")
    return queue


INSPECT = [
    (["job", "fuzz", BIG], "chars) not found in queue"),
    (["job", "a b", "x"], "queue name 'a b' is invalid"),
    (["failed", BIG], "chars) is invalid"),
    (["cancel", "fuzz", BIG, "--yes"], "chars) not found in queue"),
    (["retry", "fuzz", BIG, "--yes"], "error:"),
    (["clean", "fuzz", "--state", "bogus", "--older-than", "1", "--yes"], "invalid choice"),
    (["--watch", "--interval", "nan"], "must be a finite number of seconds"),
    (["--watch", "--count", "-1"], "must be an int >= 0"),
]


@pytest.mark.parametrize(("args", "expect"), INSPECT, ids=[" ".join(a)[:40] for a, _ in INSPECT])
async def test_inspect_with_wrong_arguments(
    redis_url: str,
    redis_client: Redis,
    prefix: str,
    fuzz_queue: Queue,
    args: list[str],
    expect: str,
) -> None:
    before = await redis_state(redis_client, prefix)
    code, err = await run(
        engine_env(redis_url),
        "-m",
        "jobqueue.inspect",
        "--redis",
        redis_url,
        "--prefix",
        prefix,
        *args,
    )
    assert_usage_error(code, err, expect)
    assert await redis_state(redis_client, prefix) == before


ENGINE_CLIS = [
    (["-m", "jobqueue.inspect", "--prefix", "a:b", "failed", "q"], "prefix 'a:b' is invalid"),
    (["-m", "jobqueue.inspect", "--redis", "http://x", "failed", "q"], "error:"),
    (["-m", "jobqueue", "worker", BIG], "cannot import module"),
    (["-m", "jobqueue", "worker", "json", "--concurrency", "abc"], "invalid"),
    (["-m", "jobqueue", "bogus"], "usage"),
    (["-m", "jobqueue.metrics", "--port", "99999"], "port must be within 0-65535"),
    (["-m", "jobqueue.metrics", "--timeout", "nan"], "must be a finite number of seconds"),
    (["-m", "jobqueue.metrics", "--prefix", "{x}"], "prefix '{x}' is invalid"),
    (["-m", "jobqueue.metrics", "--redis", "http://x"], "--redis"),
    (["-m", "jobqueue.metrics", "--host", BIG, "--port", "0"], "cannot serve on"),
]


@pytest.mark.parametrize(
    ("args", "expect"), ENGINE_CLIS, ids=[" ".join(a)[:40] for a, _ in ENGINE_CLIS]
)
async def test_engine_commands_with_wrong_arguments(
    redis_url: str, args: list[str], expect: str
) -> None:
    code, err = await run(engine_env(redis_url), *args)
    assert_usage_error(code, err, expect)


PIPELINE = [
    (["status", BIG], "not a run id"),
    (["cancel", BIG], "no run"),
    (["approve", "not-a-uuid"], "not a sub-sector id: 'not-a-uuid'"),
    (["run", BIG], "chars): invalid sector-research payload"),
    (["run", "Tech", "--timeout", "-5"], "argument --timeout"),
    (["run", "Tech", "--user-id", BIG], "user_id"),
    (["webhooks", "--limit", "-1"], "argument --limit"),
    (["watch", "Tech", "--cron", "0 0 30 2 *"], "has no run time"),
    (["watch", "Tech", "--cron", "* * * * *", "--budget-usd", "nan"], "budget_usd"),
    (["-m", "pipeline.workers", "--queues", "bogus"], "--queues: unknown"),
    (["-m", "pipeline.workers", "--metrics-port", "-1"], "argument --metrics-port"),
    (["-m", "pipeline.workers", "--concurrency", "x"], "argument --concurrency"),
]


@pytest.mark.parametrize(("args", "expect"), PIPELINE, ids=[" ".join(a)[:40] for a, _ in PIPELINE])
async def test_pipeline_commands_with_wrong_arguments(
    runtime: Runtime, redis_client: Redis, prefix: str, args: list[str], expect: str
) -> None:
    before = (await redis_state(redis_client, prefix), await row_counts(runtime.pool, TABLES))
    argv = args if args[0] == "-m" else ["-m", "pipeline", *args]
    code, err = await run(cli_env(runtime), *argv)
    assert_usage_error(code, err, expect)
    after = (await redis_state(redis_client, prefix), await row_counts(runtime.pool, TABLES))
    assert after == before


BAD_ENV = [
    ({"PIPELINE_LEASE": "abc"}, ["status", UUID0], "lease"),
    ({"PIPELINE_PREFIX": "a:b"}, ["status", UUID0], "prefix 'a:b' is invalid"),
    ({"PIPELINE_QUEUES": "{bad json"}, ["-m", "pipeline.workers"], "queues"),
    ({"REDIS_URL": "http://x"}, ["cancel", UUID0], "Redis URL"),
    ({"DATABASE_URL": "notaurl"}, ["status", UUID0], "DSN"),
]


@pytest.mark.parametrize(
    ("extra", "args", "expect"), BAD_ENV, ids=[next(iter(e)) for e, _, _ in BAD_ENV]
)
async def test_pipeline_commands_with_bad_settings(
    runtime: Runtime, extra: dict[str, str], args: list[str], expect: str
) -> None:
    argv = args if args[0] == "-m" else ["-m", "pipeline", *args]
    code, err = await run(cli_env(runtime, **extra), *argv)
    assert_usage_error(code, err, expect)
