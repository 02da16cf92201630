"""Signed webhooks of run events: a real receiver (aiohttp) on 127.0.0.1, real Redis and
PostgreSQL, the deliveries worked by `Workers`. Signatures are checked here with an
independent implementation of the Standard Webhooks scheme (hmac over id.timestamp.body)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import pytest
import structlog
from aiohttp import web
from pipeline_helpers import HANG, ROOT, cli, cli_env, wait_for, wait_row

from jobqueue import JobState
from pipeline.cancel import cancel_run
from pipeline.flow import approve_subsector, start_sector_research
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from pipeline.webhooks.events import emit_run_ended, event_job_id
from pipeline.webhooks.log import list_deliveries
from pipeline.webhooks.signing import WebhookConfigError, sign

pytestmark = pytest.mark.integration

KEY = b"canary-webhook-key-0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
HOOK = dict(webhook_secret=SECRET, webhook_backoff=0.01, webhook_timeout=5.0)


@dataclass
class Receiver:
    """Answers each POST with the next scripted status (then 200), recording every request."""

    script: list[int] = field(default_factory=list)
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((dict(request.headers), await request.read()))
        return web.Response(status=self.script.pop(0) if self.script else 200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    app = web.Application()
    app.router.add_post("/hook", r.handle)
    runner = web.AppRunner(app, access_log=None)  # the receiver's own log is not ours
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    # credentials and a query in the URL: sent, never shown in a log or the delivery log
    r.url = f"http://hookuser:hookpass@127.0.0.1:{port}/hook?k=canary-query-value"
    yield r
    await runner.cleanup()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


def verify(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The receiver's side, written from the specification: recompute the signature."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, ts = lower["webhook-id"], lower["webhook-timestamp"]
    signed = f"{msg_id}.{ts}.".encode() + body
    expected = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
    given = [s.split(",", 1)[1] for s in lower["webhook-signature"].split() if s.startswith("v1,")]
    assert any(hmac.compare_digest(expected, g) for g in given), "bad signature"
    payload: dict[str, Any] = json.loads(body)
    return payload


async def delivered(rt: Runtime, run_id: UUID, event: str) -> Any:
    """The delivery job once it finished (completed or failed)."""
    assert rt.webhooks is not None

    async def done() -> Any:
        job = await rt.webhooks.get_job(event_job_id(run_id, event))  # type: ignore[union-attr]
        return job if job and job.state in (JobState.COMPLETED, JobState.FAILED) else None

    return await wait_for(done, what=f"the delivery of {event}")


async def ended_run(rt: Runtime, status: str) -> UUID:
    """A run row that ended with `status` (no stage ran)."""
    run_id = uuid4()
    await rt.pool.execute(
        "INSERT INTO sector_analysis (id, user_id, sector_name, status, budget_usd, spent_usd) "
        "VALUES ($1, 'u-hooks', 'Energy', $2, 5, 0.25)",
        run_id,
        status,
    )
    return run_id


def test_signature_matches_the_specification_example() -> None:
    # the example of the Standard Webhooks specification's reference libraries
    key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    got = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize(
    "secret", ["whsec_not*base64*canary", "canary-no-prefix-secret", "whsec_Y2FuYXJ5"]
)
def test_a_bad_secret_is_refused_without_showing_it(secret: str) -> None:
    with pytest.raises(WebhookConfigError) as info:
        Settings(webhook_url="http://127.0.0.1:1/hook", webhook_secret=secret)
    assert "PIPELINE_WEBHOOK_SECRET" in str(info.value)
    assert secret not in str(info.value) and "canary" not in repr(info.value)


def test_a_url_without_a_secret_or_not_http_is_refused() -> None:
    with pytest.raises(WebhookConfigError, match="PIPELINE_WEBHOOK_SECRET is not"):
        Settings(webhook_url="http://127.0.0.1:1/hook")
    with pytest.raises(WebhookConfigError, match="PIPELINE_WEBHOOK_URL") as info:
        Settings(webhook_url="ftp://u:canary@h/x", webhook_secret=SECRET)
    assert "canary" not in str(info.value)
    s = Settings(webhook_url="", webhook_secret=SECRET)
    assert s.webhook_url is None and SECRET not in repr(s)


async def test_a_completed_run_sends_one_signed_run_completed(
    make_runtime: Callable[..., Awaitable[Runtime]],
    workers: Any,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    from pipeline.logs import configure_logging

    # every line as the workers' process writes it, and every record as pytest captures it
    lines = io.StringIO()
    configure_logging(fmt="json", level="DEBUG", stream=lines)
    logging.getLogger().addHandler(caplog.handler)
    rt = await make_runtime(webhook_url=receiver.url, **HOOK)
    await workers()
    run_id = await start_sector_research("Technology", "user-hooks", runtime=rt)
    await wait_row(
        rt.pool, "SELECT status = 'awaiting_approval' FROM sector_analysis WHERE id=$1", run_id
    )
    sub = await rt.pool.fetchval(
        "SELECT id FROM sub_sector WHERE sector_analysis_id=$1 ORDER BY name LIMIT 1", run_id
    )
    await approve_subsector(sub, runtime=rt)
    job = await delivered(rt, run_id, "run.completed")
    assert job.state == JobState.COMPLETED and job.attempts_made == 1
    assert len(receiver.got) == 1
    headers, body = receiver.got[0]
    payload = verify(headers, body)
    assert headers["webhook-id"] == f"msg_{run_id}_run.completed"
    # unix seconds of the try: within the 5 minutes a receiver's replay check allows
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 300
    assert payload["type"] == "run.completed" and payload["timestamp"].endswith("Z")
    data = payload["data"]
    assert data["run_id"] == str(run_id) and data["status"] == "completed"
    assert data["sector"] == "Technology" and data["user_id"] == "user-hooks"
    assert data["stocks"]["by_status"].get("completed") == 5
    assert data["sub_sectors"]["by_status"]["completed"] == 1
    assert 0 < data["spent_usd"] <= data["budget_usd"] == 5.0
    # the delivery log: one try, the URL without its credentials or query
    (row,) = await list_deliveries(rt.pool, run_id=run_id)
    assert (row.event, row.attempt, row.status_code, row.delivered) == (
        "run.completed",
        1,
        200,
        True,
    )
    assert row.url.startswith("http://127.0.0.1:") and row.url.endswith("/hook")
    # no secret anywhere: logs, the delivery log, the job in Redis
    shown = lines.getvalue() + caplog.text + "".join(capsys.readouterr())
    stored = json.dumps([r.line() for r in await list_deliveries(rt.pool)]) + json.dumps(job.data)
    assert "webhook delivered" in lines.getvalue() and "HTTP Request: POST" in caplog.text
    for canary in (SECRET, SECRET[6:], KEY.decode(), "hookpass", "canary-query-value"):
        assert canary not in shown and canary not in stored


async def test_a_failing_receiver_is_retried_with_the_same_webhook_id(
    make_runtime: Callable[..., Awaitable[Runtime]], workers: Any, receiver: Receiver
) -> None:
    rt = await make_runtime(webhook_url=receiver.url, **HOOK)
    run_id = await ended_run(rt, "failed")
    receiver.script = [500, 500]
    first = await emit_run_ended(rt, run_id, "failed")
    again = await emit_run_ended(rt, run_id, "failed")  # a writer that ran twice
    assert first is not None and again is not None and first.id == again.id
    await workers(queues=[], mirror=False)
    job = await delivered(rt, run_id, "run.failed")
    assert job.state == JobState.COMPLETED and job.attempts_made == 3
    assert len(receiver.got) == 3
    ids = {h["webhook-id"] for h, _ in receiver.got}
    assert ids == {f"msg_{run_id}_run.failed"}
    bodies = {b for _, b in receiver.got}
    assert len(bodies) == 1  # the same message on every try
    for headers, body in receiver.got:
        assert verify(headers, body)["data"]["status"] == "failed"
    tries = sorted(await list_deliveries(rt.pool, run_id=run_id), key=lambda t: t.attempt)
    assert [(t.attempt, t.status_code, t.delivered) for t in tries] == [
        (1, 500, False),
        (2, 500, False),
        (3, 200, True),
    ]
    # the command line shows the log, newest first, without the URL's credentials or query
    code, out, err = await cli(cli_env(rt), "webhooks", "--run", str(run_id))
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3 and "✓ run.failed" in lines[0] and "try 3 HTTP 200" in lines[0]
    assert "try 1 HTTP 500" in lines[2] and "hookpass" not in out and "canary" not in out


async def test_a_dead_receiver_fails_after_its_attempts_and_delays_nothing(
    make_runtime: Callable[..., Awaitable[Runtime]], workers: Any
) -> None:
    rt = await make_runtime(
        webhook_url="http://127.0.0.1:9/hook", webhook_attempts=2, **HOOK
    )  # port 9 (discard): nothing listens
    run_id = await ended_run(rt, "completed")
    await emit_run_ended(rt, run_id, "completed")
    await workers(queues=[], mirror=False)
    job = await delivered(rt, run_id, "run.completed")
    assert job.state == JobState.FAILED and job.attempts_made == 2
    tries = await list_deliveries(rt.pool, run_id=run_id)
    assert len(tries) == 2 and not any(t.delivered for t in tries)
    assert all(t.status_code is None and t.error for t in tries)


async def test_a_cancelled_run_sends_run_cancelled(
    make_runtime: Callable[..., Awaitable[Runtime]], workers: Any, receiver: Receiver
) -> None:
    rt = await make_runtime(webhook_url=receiver.url, **HOOK)
    await workers(queues=["sector-research"])
    run_id = await start_sector_research("Health Care", "u", runtime=rt)
    await wait_row(
        rt.pool, "SELECT status = 'awaiting_approval' FROM sector_analysis WHERE id=$1", run_id
    )
    await cancel_run(run_id, runtime=rt)
    await cancel_run(run_id, runtime=rt)  # again: still one event
    job = await delivered(rt, run_id, "run.cancelled")
    assert job.state == JobState.COMPLETED
    assert len(receiver.got) == 1
    payload = verify(*receiver.got[0])
    assert payload["type"] == "run.cancelled" and payload["data"]["cancelled_at"]


async def test_a_budget_exceeded_run_sends_run_budget_exceeded(
    make_runtime: Callable[..., Awaitable[Runtime]], workers: Any, receiver: Receiver
) -> None:
    rt = await make_runtime(webhook_url=receiver.url, **HOOK)
    await workers(queues=["sector-research"])
    run_id = await start_sector_research("Utilities", "u", budget_usd=0.1, runtime=rt)
    job = await delivered(rt, run_id, "run.budget_exceeded")
    assert job.state == JobState.COMPLETED
    assert len(receiver.got) == 1
    data = verify(*receiver.got[0])["data"]
    assert data["status"] == "budget_exceeded" and data["budget_usd"] == 0.1
    assert "run budget exhausted" in data["error"]


async def test_no_webhook_traffic_when_the_url_is_unset(
    make_runtime: Callable[..., Awaitable[Runtime]], workers: Any, prefix: str
) -> None:
    rt = await make_runtime(webhook_url=None)
    assert rt.webhooks is None
    await workers(queues=["sector-research"])
    run_id = await start_sector_research("Utilities", "u", budget_usd=0.1, runtime=rt)
    await wait_row(
        rt.pool, "SELECT status = 'budget_exceeded' FROM sector_analysis WHERE id=$1", run_id
    )
    assert await emit_run_ended(rt, run_id, "budget_exceeded") is None
    keys = [k async for k in rt.redis.scan_iter(match=f"{prefix}*webhooks*")]
    assert keys == []
    assert await list_deliveries(rt.pool, run_id=run_id) == []


@pytest.mark.e2e
async def test_a_workers_process_delivers_from_its_environment(
    make_runtime: Callable[..., Awaitable[Runtime]], receiver: Receiver
) -> None:
    """`python -m pipeline.workers` with the two variables set delivers an event that another
    process emitted, retried once, and logs (at DEBUG, JSON) nothing secret."""
    rt = await make_runtime(webhook_url=receiver.url, **HOOK)
    env = cli_env(
        rt,
        PIPELINE_WEBHOOK_URL=receiver.url,
        PIPELINE_WEBHOOK_SECRET=SECRET,
        PIPELINE_WEBHOOK_BACKOFF="0.01",
        PIPELINE_LOG_FORMAT="json",
        PIPELINE_LOG_LEVEL="DEBUG",
    )
    receiver.script = [503]
    run_id = await ended_run(rt, "completed")
    await emit_run_ended(rt, run_id, "completed")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.workers", "--queues", "sector-research", "--no-mirror"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        job = await delivered(rt, run_id, "run.completed")
    finally:
        proc.terminate()
        out, err = await asyncio.to_thread(proc.communicate, timeout=HANG)
    assert job.state == JobState.COMPLETED and job.attempts_made == 2
    assert [verify(h, b)["type"] for h, b in receiver.got] == ["run.completed"] * 2
    logs = out.decode() + err.decode()
    assert "webhook try failed" in logs and "webhook delivered" in logs
    for canary in (SECRET, SECRET[6:], "hookpass", "canary-query-value"):
        assert canary not in logs
