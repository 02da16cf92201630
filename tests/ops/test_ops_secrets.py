"""Secret canaries through the engine's tools: a Redis password, and an API key, a bearer token
and a password written into a job's data, error and log, must not appear in what
`python -m jobqueue.inspect` prints (table, job, JSON), in the dashboard's pages and event
stream, nor in `/metrics`. (The workers' logs, status rows and webhooks have theirs in
tests/pipeline/test_pipeline_secrets.py and test_pipeline_webhooks.py.)"""

from __future__ import annotations

import shutil
import subprocess
import sys

import httpx2
import pytest

from jobqueue import Queue, QueueConfig
from jobqueue.dashboard import create_app
from jobqueue.testing import RedisServer

pytestmark = pytest.mark.integration

PASSWORD = "canary-redis-pw-91c2"
API_KEY = "sk-ant-api03-canary-5b7e4d"
TOKEN = "canary-bearer-33aa"
DATA_PASSWORD = "canary-data-pw-77d1"
CANARIES = (PASSWORD, API_KEY, TOKEN, DATA_PASSWORD)
PREFIX = "sec"
DASHBOARD_TOKEN = "dashboard-token-long"


def leaked(text: str) -> list[str]:
    return [c for c in CANARIES if c in text]


@pytest.fixture
def server() -> RedisServer:
    srv = RedisServer(shutil.which("redis-server"), extra=["--requirepass", PASSWORD]).start()
    yield srv  # type: ignore[misc]
    srv.close()


async def test_no_canary_in_inspect_dashboard_or_metrics(server: RedisServer) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"
    q = Queue(QueueConfig("secrets"), redis=url, prefix=PREFIX)
    try:
        data = {"api_key": API_KEY, "note": f"password={DATA_PASSWORD}"}
        job = await q.add("call", data, job_id="j1")
        await q.add_job_log(job.id, f"calling with Authorization: Bearer {TOKEN}")
        failed = await q.add("call", {"x": 1}, job_id="j2")
        # a failure whose message quotes the secrets, as a careless SDK error would
        await q.redis.hset(
            q.keys.state(failed.id), mapping={"em": f"401: invalid x-api-key {API_KEY}"}
        )
        outputs: list[str] = []
        for args in (
            [], ["--json"], ["job", "secrets", "j1"], ["job", "secrets", "j2"],
            ["--json", "job", "secrets", "j1"], ["failed", "secrets"],
        ):  # fmt: skip
            out = subprocess.run(
                [sys.executable, "-m", "jobqueue.inspect", "--redis", url, "--prefix", PREFIX,
                 *args],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
            outputs.append(out.stdout + out.stderr)
        assert "secrets" in outputs[0]
        app = create_app(redis=url, token=DASHBOARD_TOKEN, prefix=PREFIX)
        headers = {"authorization": f"Bearer {DASHBOARD_TOKEN}"}
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as client:
            for path in (
                "/", "/queues/secrets", "/queues/secrets/jobs/j1", "/queues/secrets/jobs/j2",
                "/workers", "/metrics",
            ):  # fmt: skip
                page = await client.get(path)
                assert page.status_code == 200, (path, page.status_code)
                outputs.append(page.text)
        await app.state.dashboard.aclose()
        for text in outputs:
            assert leaked(text) == [], text[:2000]
    finally:
        await q.obliterate(force=True)
        await q.close()
