"""The benchmark harness: its options, the environment it gives the pipeline, and one small
run end to end (the pipeline as processes, through the real SDK, against the simulator)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from provider_helpers import HANG

from bench.provider_run import CONFIGURATIONS, SECTORS, parse_args, pipeline_env

ROOT = Path(__file__).resolve().parents[2]


def test_pipeline_env_scales_the_pipeline_clocks_to_the_simulated_minute() -> None:
    env = pipeline_env(
        minute_seconds=12.0,
        redis_url="redis://r",
        database_url="postgresql://d",
        base_url="http://s",
    )
    assert env["ANTHROPIC_BASE_URL"] == "http://s"
    assert env["PIPELINE_LLM_MODE"] == "anthropic"
    assert env["PIPELINE_RETRY_SCALE"] == "0.2"
    assert env["PIPELINE_REJECTION_DELAY"] == "1"
    per = [v for k, v in env.items() if k.endswith("__RATE_PER")]
    assert per == ["12"] * 5


def test_options_are_checked() -> None:
    args = parse_args(["--sectors", "3", "--set", "per-queue:PIPELINE_X=1", "--env", "A=b"])
    assert args.configs == ["per-queue"]
    assert args.set == {"per-queue": {"PIPELINE_X": "1"}}
    assert args.env == {"A": "b"}
    assert (args.minute_seconds, args.rpm, args.itpm) == (10.0, 30, 2500)
    for bad in (
        ["--sectors", str(len(SECTORS) + 1)],
        ["--configs", "nope"],
        ["--minute-seconds", "0"],
        ["--set", "no-equals"],
    ):
        with pytest.raises(SystemExit):
            parse_args(bad)
    if not CONFIGURATIONS["shared"].ready:
        with pytest.raises(SystemExit):
            parse_args(["--configs", "per-queue,shared"])


@pytest.mark.e2e
@pytest.mark.integration
async def test_one_sector_end_to_end(postgres_admin_url: str, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "ANTHROPIC_"))}
    env["TEST_DATABASE_URL"] = postgres_admin_url
    if not Path(os.environ.get("BENCH_REDIS_SERVER", "/usr/bin/redis-server")).exists():
        from jobqueue.testing import valkey_binary

        env["BENCH_REDIS_SERVER"] = valkey_binary()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.provider_run",
        "--sectors",
        "1",
        "--workers",
        "1",
        "--minute-seconds",
        "5",
        "--latency-median",
        "0.05",
        "--latency-min",
        "0.01",
        "--latency-max",
        "0.2",
        "--configs",
        "per-queue,shared",
        "--json",
        str(out),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    printed, _ = await asyncio.wait_for(proc.communicate(), 2 * HANG)
    text = printed.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    assert "| stocks failed" in text
    doc = json.loads(out.read_text())
    # both configurations side by side: today's per-queue buckets and the shared limits
    # (learned from the simulator's headers through the real SDK)
    for name in ("per-queue", "shared"):
        result = doc["results"][name]
        assert result["outcome"]["sectors"] == {"completed": 1}, name
        assert result["outcome"]["stocks_failed"] == 0, name
        assert result["outcome"]["stocks_total"] == 5, name
        assert result["outcome"]["cost_usd"] > 0, name
        stats = result["stats"]
        # every call the pipeline recorded went through the simulator (429s are calls too)
        assert stats["admitted"] >= result["outcome"]["llm_calls_recorded"] >= 18, name
        shutil.rmtree(result["outcome"]["logs"], ignore_errors=True)
