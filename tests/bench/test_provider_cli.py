"""`python -m bench.provider` runs standalone: it prints its URL, serves the SDK, and stops on
SIGTERM writing its counters."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import aiohttp
import anthropic
import pytest
from provider_helpers import HANG, MODEL, sdk, user

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


class _Remote:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url


async def test_standalone_server_prints_its_url_and_enforces_its_limits(tmp_path: Path) -> None:
    stats_file = tmp_path / "stats.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.provider",
        "--port",
        "0",
        "--minute-seconds",
        "3600",
        "--rpm",
        "2",
        "--itpm",
        "100000",
        "--model-limits",
        "claude-haiku-5-5=5,1000,2000",
        "--latency-median",
        "0",
        "--stats-json",
        str(stats_file),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), HANG)
        url = line.decode().strip()
        assert url.startswith("http://127.0.0.1:")
        async with sdk(_Remote(url)) as client:
            for i in range(2):
                await client.messages.create(model=MODEL, max_tokens=10, messages=user(f"{i}"))
            with pytest.raises(anthropic.RateLimitError):
                await client.messages.create(model=MODEL, max_tokens=10, messages=user("x"))
            raw = await client.messages.with_raw_response.create(
                model="claude-haiku-5-5", max_tokens=10, messages=user("y")
            )
            assert raw.headers["anthropic-ratelimit-input-tokens-limit"] == "1000"
        async with aiohttp.ClientSession() as http, http.get(f"{url}/_sim/stats") as r:
            live = await r.json()
        assert live["calls"] == 4 and live["rate_limited"] == 1
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), HANG)
    assert proc.returncode == 0
    saved = json.loads(stats_file.read_text())
    assert saved["models"][MODEL]["limits"]["rpm"] == 2
    assert saved["admitted"] == 3


async def test_bad_options_are_a_usage_error() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.provider",
        "--minute-seconds",
        "0",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), HANG)
    assert proc.returncode == 2
    assert b"minute_seconds" in err
