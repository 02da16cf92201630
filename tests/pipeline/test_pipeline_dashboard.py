"""The pipeline's dashboard plugin against a real PostgreSQL: runs with sub-sectors, stocks,
judge attempts, spend against budget, and the webhook delivery log."""

from __future__ import annotations

import html
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx2
import pytest

from jobqueue.dashboard import create_app
from pipeline.dashboard import make_plugin
from pipeline.runtime import Runtime

TOKEN = "pipeline-dash-token"


@pytest.fixture
async def client(
    runtime: Runtime, database_url: str, redis_url: str
) -> AsyncIterator[httpx2.AsyncClient]:
    app = create_app(
        redis=redis_url,
        token=TOKEN,
        prefix=runtime.settings.prefix,
        plugins=[make_plugin(database_url=database_url)],
    )
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"authorization": f"Bearer {TOKEN}"},
    ) as c:
        yield c
    await app.state.dashboard.aclose()


async def _seed(pool: asyncpg.Pool) -> uuid.UUID:
    run_id = await pool.fetchval(
        "INSERT INTO sector_analysis (user_id, sector_name, status, budget_usd, spent_usd) "
        "VALUES ('u-dash', $1, 'in_progress', 2.0, 0.5) RETURNING id",
        f"Semis <script>{uuid.uuid4().hex[:6]}",
    )
    sub = await pool.fetchval(
        "INSERT INTO sub_sector (sector_analysis_id, name, status) "
        "VALUES ($1, 'Foundries', 'analyzing') RETURNING id",
        run_id,
    )
    stock = await pool.fetchval(
        "INSERT INTO stock (sub_sector_id, ticker, name, rank, status, rejections) "
        "VALUES ($1, 'TSMX', 'Taiwan Semi X', 1, 'judging', 1) RETURNING id",
        sub,
    )
    for attempt, approved in ((1, False), (2, True)):
        await pool.execute(
            "INSERT INTO stock_analysis (stock_id, attempt, status, approved, verdict, cost_usd) "
            "VALUES ($1, $2, $3, $4, $5::jsonb, 0.01)",
            stock,
            attempt,
            "approved" if approved else "rejected",
            approved,
            {"feedback": f"verdict {attempt}", "api_key": "sk-secret-abcdefgh"},
        )
    await pool.execute(
        "INSERT INTO webhook_delivery (msg_id, event, run_id, url, attempt, status_code, error, "
        "duration_ms, delivered) VALUES ('msg_dash1', 'run.completed', $1, "
        "'https://hooks.example/in', 1, 500, NULL, 12.5, false), ('msg_dash1', 'run.completed', "
        "$1, 'https://hooks.example/in', 2, 204, NULL, 8.0, true)",
        run_id,
    )
    return run_id


async def test_runs_page_and_run_page_show_the_pipeline(
    client: httpx2.AsyncClient, pool: asyncpg.Pool
) -> None:
    run_id = await _seed(pool)
    overview = await client.get("/")
    assert 'href="/plugins/pipeline/"' in overview.text and ">Pipeline<" in overview.text

    runs = await client.get("/plugins/pipeline/")
    assert runs.status_code == 200
    assert f'href="/plugins/pipeline/runs/{run_id}"' in runs.text
    row = runs.text[runs.text.index(f"runs/{run_id}") :].split("</tr>")[0]
    assert "&lt;script&gt;" in row and "<script>" not in row  # escaped sector name
    assert "$0.5000 / $2.00" in row  # spend against budget
    assert "msg_dash1" in runs.text  # the latest deliveries

    run = await client.get(f"/plugins/pipeline/runs/{run_id}")
    text = html.unescape(run.text)
    assert run.status_code == 200
    assert "Foundries" in text and "TSMX" in text and "Taiwan Semi X" in text
    assert "#1" in text and "rejected" in text and "#2" in text and "verdict 2" in text
    assert "sk-secret" not in text  # redacted verdict
    assert "25.0%" in text  # 0.5 of 2.0
    deliveries = text[text.index('id="deliveries"') :]
    assert "HTTP 500" in deliveries and "HTTP 204" in deliveries

    hooks = await client.get("/plugins/pipeline/webhooks")
    assert hooks.status_code == 200 and "run.completed" in hooks.text
    assert (await client.get(f"/plugins/pipeline/runs/{uuid.uuid4()}")).status_code == 404
    assert (await client.get("/plugins/pipeline/runs/not-a-uuid")).status_code == 404
