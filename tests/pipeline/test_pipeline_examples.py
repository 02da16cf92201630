"""Every script in `examples/` runs as a real process against the test servers (under the test's
own key prefix) and does what its docstring says."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pipeline_helpers import HANG, wait_for
from servers import free_port

from pipeline.runtime import Runtime

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]


async def run_example(script: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / script),
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), HANG)  # bounds a hang only
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_hello(redis_url: str, prefix: str) -> None:
    code, out, err = await run_example("hello.py", redis_url, prefix)
    assert code == 0, err
    assert "{'greeting': 'hello, ada'}" in out
    assert "{'greeting': 'hello, bob'}" in out  # after its first attempt failed on purpose
    assert "'completed': 2" in out


async def test_custom_stage(redis_url: str, prefix: str) -> None:
    code, out, err = await run_example("custom_stage.py", redis_url, prefix)
    assert code == 0, err
    events = [line.split(" ", 2)[:2] for line in out.splitlines()]
    completed = {job for ev, job in events if ev == "completed"}
    assert len(completed) == 3
    # NVDA's first attempt raised the application's error, mapped to a quick retry
    retried = [line for line in out.splitlines() if line.startswith("retrying ")]
    assert len(retried) == 1 and "NETWORK_ERROR" in retried[0], out
    assert not any(ev == "failed" for ev, _ in events)


@pytest.fixture
async def web_app(runtime: Runtime) -> Any:
    """`examples/web_enqueue.py` serving on a free port, on the test servers and prefix."""
    s = runtime.settings
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIPELINE_", "ANTHROPIC_")) and k not in ("REDIS_URL", "DATABASE_URL")
    }
    env.update(
        REDIS_URL=s.redis_url or "",
        DATABASE_URL=s.database_url or "",
        PIPELINE_PREFIX=s.prefix,
        PIPELINE_LLM_MODE="offline",
        PORT=str(port),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "web_enqueue.py"),
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HANG)) as http:

        async def serving() -> bool:
            if proc.returncode is not None:
                raise AssertionError(f"the app exited with {proc.returncode}")
            try:
                async with http.get(f"{base}/runs/{uuid.uuid4()}") as resp:
                    return resp.status == 200
            except aiohttp.ClientConnectionError:
                return False

        try:
            await wait_for(serving, what="the web app to listen")
            yield http, base
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)  # aiohttp's graceful exit: on_cleanup runs
            _, err = await asyncio.wait_for(proc.communicate(), HANG)
    assert proc.returncode == 0, err.decode()


async def test_web_enqueue(web_app: Any, workers: Any, runtime: Runtime) -> None:
    http, base = web_app
    await workers()  # the workers "run elsewhere": here, in the test process

    async with http.post(f"{base}/runs", json={"sector": "", "user_id": "u1"}) as resp:
        assert resp.status == 422
        assert "invalid sector-research payload" in (await resp.json())["error"]
    async with http.post(f"{base}/runs", json={"sector": "Technology", "user_id": "u1"}) as resp:
        assert resp.status == 202
        run_id = (await resp.json())["run_id"]

    async def run_status() -> Any:
        async with http.get(f"{base}/runs/{run_id}") as resp:
            assert resp.status == 200
            return await resp.json()

    async def awaiting() -> Any:
        body = await run_status()
        subs = [s for s in body["sub_sectors"] if s["status"] == "awaiting_approval"]
        return subs or None

    subs = await wait_for(awaiting, what="sub-sectors awaiting approval")
    chosen = subs[0]["id"]
    for _ in range(2):  # approving twice enqueues once
        async with http.post(f"{base}/sub-sectors/{chosen}/approve") as resp:
            assert resp.status == 202
            assert (await resp.json()) == {"job_id": f"stock-ranking:{chosen}"}
    async with http.post(f"{base}/sub-sectors/{uuid.uuid4()}/approve") as resp:
        assert resp.status == 422
    async with http.post(f"{base}/sub-sectors/not-a-uuid/approve") as resp:
        assert resp.status == 422

    async def finished() -> Any:
        body = await run_status()
        sub = next(s for s in body["sub_sectors"] if s["id"] == chosen)
        jobs = body["jobs"]
        done = sub["status"] == "completed" and all(j["status"] == "completed" for j in jobs)
        return body if done else None

    body = await wait_for(finished, what="the run completed, as the API reports it")
    types = {j["job_type"] for j in body["jobs"]}
    assert types == {
        "sector-research",
        "stock-ranking",
        "stock-analysis",
        "judge-review",
        "format-insights",
    }
    assert all(j["progress"] == 100 and j["related_id"] == run_id for j in body["jobs"])
    assert re.fullmatch(r"[0-9a-f-]{36}", run_id)
