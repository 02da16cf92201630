"""`python -m bench.dashboard [--redis URL] [--queues 20] [--jobs 1000] [--requests 21]`: how
long the dashboard's pages take to answer on real queues.

Fills `--queues` queues under a fresh prefix with `--jobs` jobs each (200 B of data, one in 20
failing for good, the rest completed and kept), then requests each page `--requests` times
through the ASGI app in process (no network: the time is the app's and Redis') and prints the
median and the maximum per page as a Markdown table. Everything it made is removed at the end.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

import httpx2

from jobqueue import Job, Queue, QueueConfig, Worker
from jobqueue.dashboard import create_app

from . import cli

TOKEN = "bench-dashboard-token"


async def _fill(url: str, prefix: str, n_queues: int, n_jobs: int) -> list[Queue]:
    queues = []

    async def handler(job: Job) -> None:
        if job.data["i"] % 20 == 0:
            raise ValueError("one in twenty fails")

    for i in range(n_queues):
        config = QueueConfig(f"q{i}", keep_completed=(n_jobs, 86400.0), attempts=1)
        q = Queue(config, redis=url, prefix=prefix)
        await q.connect()
        queues.append(q)
        await q.add_bulk([("work", {"i": n, "pad": "x" * 200}) for n in range(n_jobs)])
        worker = Worker(q, handler, concurrency=50, handle_signals=False)
        task = asyncio.get_running_loop().create_task(worker.run())
        while (counts := await q.get_job_counts())["waiting"] or counts["active"]:
            await asyncio.sleep(0.05)
        await worker.close()
        await task
    return queues


async def measure(url: str, n_queues: int, n_jobs: int, requests: int) -> str:
    prefix = "jqbench" + uuid.uuid4().hex[:8]
    queues = await _fill(url, prefix, n_queues, n_jobs)
    failed = (await queues[0].get_failed_jobs(1))[0]
    pages = {
        f"overview (`/`, {n_queues} queues)": "/",
        "a queue's completed jobs, first page": "/queues/q0?state=completed",
        "a queue's failed jobs": "/queues/q0?state=failed",
        "a failed job": f"/queues/q0/jobs/{failed.id}",
        "workers": "/workers",
        f"`/metrics` ({n_queues} queues)": "/metrics",
    }
    app = create_app(redis=url, token=TOKEN, prefix=prefix)
    rows = ["| page | median ms | max ms |", "|---|---|---|"]
    try:
        async with app.router.lifespan_context(app):
            transport = httpx2.ASGITransport(app=app)
            headers = {"authorization": f"Bearer {TOKEN}"}
            async with httpx2.AsyncClient(
                transport=transport, base_url="http://bench", headers=headers
            ) as client:
                for label, path in pages.items():
                    times = []
                    for _ in range(requests):
                        t0 = time.perf_counter()
                        reply = await client.get(path)
                        times.append((time.perf_counter() - t0) * 1000)
                        if reply.status_code != 200:
                            raise RuntimeError(f"{path} answered {reply.status_code}")
                    rows.append(f"| {label} | {statistics.median(times):.1f} | {max(times):.1f} |")
    finally:
        await app.state.dashboard.aclose()
        for q in queues:
            await q.obliterate(force=True)
            await q.close()
    return "\n".join(rows)


def main() -> None:
    cli.main("python -m bench.dashboard", __doc__, measure, queues=20, jobs=1000, requests=21)


if __name__ == "__main__":
    main()
