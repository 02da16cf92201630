"""Screenshots of the dashboard's main pages for the docs (docs/dashboard/*.png).

    python docs/dashboard/screenshots.py --redis redis://127.0.0.1:6379/0 \\
        --postgres postgresql://postgres@127.0.0.1:5432/postgres

Seeds demo queues under a prefix of its own (deleted afterwards), and, with `--postgres`, a
demo run in a temporary database (created, migrated, dropped); runs a real worker; serves the
dashboard with uvicorn on a free port; drives the system chromium with Playwright. Not run by
the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

import uvicorn
from playwright.async_api import async_playwright

from jobqueue import Child, Job, Queue, QueueConfig, Worker
from jobqueue.dashboard import create_app, load_plugin

OUT = Path(__file__).parent
TOKEN = "screenshot-token-123"


async def seed_queues(url: str, prefix: str) -> tuple[list[Queue], list[Worker], asyncio.Event]:
    emails = Queue(QueueConfig("emails", attempts=2, backoff=0.05), redis=url, prefix=prefix)
    reports = Queue(QueueConfig("reports", concurrency=4), redis=url, prefix=prefix)
    gate = asyncio.Event()

    async def handler(job: Job) -> Any:
        await job.log(f"{job.name}: attempt {job.attempt}")
        await job.update_progress(60)
        if job.data.get("fail"):
            raise ConnectionError("SMTP server refused the connection (password=hunter2)")
        if job.name == "render":
            await gate.wait()
        return {"sent": True, "id": job.id}

    for i in range(14):
        await emails.add("welcome", {"to": f"user{i}@example.com", "html": "<b>Hi</b>"})
    for i in range(3):
        await emails.add("welcome", {"to": f"bounce{i}@example.com", "fail": True})
    await emails.add("digest", {"to": "all"}, delay=3600)
    await reports.add_flow(
        "monthly-report",
        {"month": "2026-11"},
        children=[
            Child(queue=reports, name="collect", data={"part": p}, job_id=f"collect-{p}")
            for p in ("sales", "costs")
        ],
        job_id="report-2026-11",
    )
    workers = [
        Worker(emails, handler, name="mail-1", handle_signals=False),
        Worker(reports, handler, name="reports-1", concurrency=2, handle_signals=False),
    ]
    for worker in workers:
        asyncio.get_running_loop().create_task(worker.run())
    await reports.add("render", {"pages": 40})
    return [emails, reports], workers, gate


async def seed_run(admin_url: str) -> tuple[str, str, uuid.UUID]:
    import asyncpg

    from pipeline.db import migrate

    name = f"jq_screens_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    await migrate(url)
    conn = await asyncpg.connect(url)
    run_id = await conn.fetchval(
        "INSERT INTO sector_analysis (user_id, sector_name, status, budget_usd, spent_usd, "
        "user_tier) VALUES ('ana', 'Semiconductors', 'in_progress', 2.5, 1.12, 'pro') "
        "RETURNING id"
    )
    for n, sub_name in enumerate(("Foundries", "EDA software")):
        sub = await conn.fetchval(
            "INSERT INTO sub_sector (sector_analysis_id, name, status, thesis) "
            "VALUES ($1, $2, 'analyzing', $3) RETURNING id",
            run_id, sub_name, "Capacity is sold out through 2027.",
        )  # fmt: skip
        for rank, ticker in enumerate(("TSMX", "GFX", "UMCX")[: 3 - n], start=1):
            stock = await conn.fetchval(
                "INSERT INTO stock (sub_sector_id, ticker, name, rank, status, rejections) "
                "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                sub, ticker, f"{ticker} Holdings", rank,
                "completed" if rank == 1 else "judging", 1 if rank == 2 else 0,
            )  # fmt: skip
            for attempt in range(1, 2 + (rank == 2)):
                approved = attempt > 1 or rank != 2
                await conn.execute(
                    "INSERT INTO stock_analysis (stock_id, attempt, status, approved, verdict, "
                    "input_tokens, output_tokens, cost_usd) VALUES ($1, $2, $3, $4, $5, 5200, "
                    "900, 0.041)",
                    stock, attempt, "approved" if approved else "rejected", approved,
                    '{"feedback": "%s"}' % ("solid" if approved else "needs sources"),
                )  # fmt: skip
    await conn.execute(
        "INSERT INTO webhook_delivery (msg_id, event, run_id, url, attempt, status_code, "
        "duration_ms, delivered) VALUES ('msg_2Qx', 'run.completed', $1, "
        "'https://hooks.example.com/in', 1, 503, 41.0, false), ('msg_2Qx', 'run.completed', $1, "
        "'https://hooks.example.com/in', 2, 204, 12.0, true)",
        run_id,
    )
    await conn.close()
    return name, url, run_id


async def main(args: argparse.Namespace) -> None:
    prefix = f"jqshots{uuid.uuid4().hex[:6]}"
    queues, workers, gate = await seed_queues(args.redis, prefix)
    plugins, db = [], None
    if args.postgres:
        db = await seed_run(args.postgres)
        from pipeline.dashboard import make_plugin

        plugins.append(make_plugin(database_url=db[1]))
    plugins += [load_plugin(spec) for spec in args.plugin]
    app = create_app(redis=args.redis, token=TOKEN, prefix=prefix, plugins=plugins)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
    serving = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        while (await queues[0].get_job_counts())["failed"] < 3:
            await asyncio.sleep(0.05)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=args.chromium, args=["--no-sandbox", "--disable-gpu"]
            )
            page = await browser.new_page(viewport={"width": 1360, "height": 820})
            await page.goto(base + "/login")
            await page.fill("input[name=token]", TOKEN)
            await page.click("main form button[type=submit]")
            await page.wait_for_url(base + "/")
            shots = [("overview", "/"), ("queue", "/queues/emails?state=failed")]
            failed = await queues[0].get_job_ids("failed", limit=1)
            shots += [("job", f"/queues/emails/jobs/{failed[0]}")]
            shots += [("flow", "/queues/reports/jobs/collect-sales"), ("workers", "/workers")]
            if db is not None:
                shots += [("pipeline", f"/plugins/pipeline/runs/{db[2]}")]
            for name, path in shots:
                await page.goto(base + path)
                await page.wait_for_selector("body[data-live=on]", timeout=5000)
                await page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
                print(f"docs/dashboard/{name}.png")
            await browser.close()
    finally:
        gate.set()
        server.should_exit = True
        await serving
        for worker in workers:
            await worker.close(force=True)
        for queue in queues:
            await queue.obliterate(force=True)
            await queue.close()
        if db is not None:
            import asyncpg

            with contextlib.suppress(Exception):
                admin = await asyncpg.connect(args.postgres)
                await admin.execute(f'DROP DATABASE IF EXISTS "{db[0]}" WITH (FORCE)')
                await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--postgres", help="an admin URL: a temporary database is made there")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--plugin", action="append", default=[])
    sys.exit(asyncio.run(main(parser.parse_args())))
