"""Enqueue from a web API and follow a run's status (aiohttp; any framework works alike).

    REDIS_URL=redis://127.0.0.1:6379/0 DATABASE_URL=postgresql://postgres@127.0.0.1/postgres \
        python examples/web_enqueue.py
    curl -XPOST localhost:8080/runs -d '{"sector": "Technology", "user_id": "u1"}'
    curl localhost:8080/runs/<run_id>
    curl -XPOST localhost:8080/sub-sectors/<id>/approve

Workers run elsewhere: `python -m pipeline.workers`. PORT (default 8080) picks another port.
"""

from __future__ import annotations

import os

from aiohttp import web

from pipeline import (
    PayloadError,
    approve_subsector,
    get_jobs_by_related_id,
    start_sector_research,
)
from pipeline.runtime import close_runtime, get_runtime


async def create_run(request: web.Request) -> web.Response:
    body = await request.json()
    try:
        run_id = await start_sector_research(body.get("sector", ""), body.get("user_id", ""))
    except PayloadError as exc:  # nothing was written: tell the client what is wrong
        return web.json_response({"error": str(exc)}, status=422)
    return web.json_response({"run_id": str(run_id)}, status=202)


async def run_status(request: web.Request) -> web.Response:
    rows = await get_jobs_by_related_id(request.match_info["run_id"])
    rt = await get_runtime()
    subs = await rt.pool.fetch(
        "SELECT id, name, status FROM sub_sector WHERE sector_analysis_id::text = $1",
        request.match_info["run_id"],
    )
    return web.json_response(
        {
            "jobs": [r.model_dump(mode="json") for r in rows],
            "sub_sectors": [{**dict(s), "id": str(s["id"])} for s in subs],
        }
    )


async def approve(request: web.Request) -> web.Response:
    try:
        job = await approve_subsector(request.match_info["sub_sector_id"])
    except (PayloadError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=422)
    return web.json_response({"job_id": job.id}, status=202)


async def on_cleanup(app: web.Application) -> None:
    await close_runtime()


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/runs", create_run)
    app.router.add_get("/runs/{run_id}", run_status)
    app.router.add_post("/sub-sectors/{sub_sector_id}/approve", approve)
    app.on_cleanup.append(on_cleanup)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))
