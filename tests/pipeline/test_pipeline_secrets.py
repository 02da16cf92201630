"""Secrets never reach logs, errors or status rows: a canary Redis password and a canary API
key (echoed back by the API in its error message) through a real workers process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_helpers import HANG, fast_settings, wait_row
from servers import RedisProcess

from jobqueue import connect
from pipeline import db
from pipeline.flow import start_sector_research
from pipeline.runtime import Runtime

sys.path.insert(0, str(Path(__file__).parent.parent / "ai"))
from fake_anthropic import API_KEY, FakeAnthropic

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
REDIS_PASSWORD = "canary-redis-pw-7f3a"


@pytest.mark.parametrize("log_format", ["json", "console"])
async def test_no_secret_in_logs_errors_or_rows(database_url: str, log_format: str) -> None:
    server = RedisProcess(extra=["--requirepass", REDIS_PASSWORD]).start()
    fake = await FakeAnthropic().start()
    fake.enqueue(*["401"] * 20)  # the API's 401 message contains the key it was sent
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{server.port}/0"
    pool = await db.create_pool(database_url)
    await db.migrate(pool)
    settings = fast_settings(url, database_url, "jqsecret")
    rt = await Runtime.create(settings, redis=connect(url), pool=pool)
    env = dict(os.environ)
    env.update(
        {
            "REDIS_URL": url,
            "DATABASE_URL": database_url,
            "PIPELINE_PREFIX": "jqsecret",
            "ANTHROPIC_API_KEY": API_KEY,
            "ANTHROPIC_BASE_URL": fake.base_url,
            "PIPELINE_LOG_FORMAT": log_format,
            "PIPELINE_LOG_LEVEL": "DEBUG",
            "PIPELINE_QUEUES__SECTOR_RESEARCH__ATTEMPTS": "1",
            "PYTHONPATH": str(ROOT),
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.workers"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        run_id = await start_sector_research("Financials", "u", runtime=rt)
        await wait_row(pool, "SELECT status = 'failed' FROM sector_analysis WHERE id=$1", run_id)
        job_id = f"sector-research:{run_id}"
        await wait_row(pool, "SELECT status = 'failed' FROM job_status WHERE job_id=$1", job_id)
        assert fake.requests, "the real client called the API"
        row = await pool.fetchrow(
            "SELECT error_message, error_type FROM job_status WHERE job_id=$1", job_id
        )
        assert row["error_type"] == "API_ERROR"
        run_error = await pool.fetchval(
            "SELECT error_message FROM sector_analysis WHERE id=$1", run_id
        )
        job = await rt.queues["sector-research"].get_job(job_id)
        assert job is not None
        stored = [row["error_message"] or "", run_error or "", job.error_message or ""]
    finally:
        proc.terminate()
        out, err = await asyncio.to_thread(proc.communicate, timeout=HANG)
        await rt.close()
        await fake.close()
        server.close()
    logs = out.decode() + err.decode()
    assert "invalid x-api-key" in logs  # the failure was logged, with the API's message...
    for text in [logs, *stored]:
        assert REDIS_PASSWORD not in text  # ...without the secrets
        assert API_KEY not in text
