"""Live updates over server-sent events (a real uvicorn server), mounting the app in another
app, and the plugin API."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from dash_helpers import HANG, TOKEN, serve, wait_for
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from jobqueue import ConfigError, Queue
from jobqueue.dashboard import DashboardPlugin, dashboard_of, render

MakeApp = Callable[..., Starlette]
ClientFor = Callable[..., httpx2.AsyncClient]


async def _events(response: httpx2.Response) -> AsyncIterator[tuple[str, Any]]:
    event = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event, json.loads(line[6:])


async def test_counts_and_job_states_stream_as_server_sent_events(
    make_queue: Callable[..., Queue], make_app: MakeApp
) -> None:
    queue = make_queue("live")
    await queue.add("first", {})
    async with serve(make_app()) as url, httpx2.AsyncClient(base_url=url) as client:
        headers = {"authorization": f"Bearer {TOKEN}"}
        async with client.stream("GET", "/events?queue=live", headers=headers) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = _events(response)
            kind, first = await asyncio.wait_for(anext(stream), HANG)
            assert kind == "counts" and first["live"]["counts"]["waiting"] == 1
            job = await queue.add("second", {})

            async def until_counted() -> tuple[dict[str, Any], dict[str, Any]]:
                seen: dict[str, Any] = {}
                async for kind, data in stream:
                    if kind == "job":
                        seen = data
                    elif kind == "counts" and data["live"]["counts"]["waiting"] == 2:
                        return seen, data
                raise AssertionError("stream ended")

            seen, counts = await asyncio.wait_for(until_counted(), HANG)
            assert seen == {"q": "live", "id": job.id, "ev": "added", "st": "waiting"}
            assert counts["live"]["paused"] is False
            await queue.pause()

            async def until_paused() -> None:
                async for kind, data in stream:
                    if kind == "counts" and data["live"]["paused"]:
                        return

            await asyncio.wait_for(until_paused(), HANG)


async def test_the_app_mounts_under_a_path(
    make_queue: Callable[..., Queue], make_app: MakeApp, client_for: ClientFor
) -> None:
    job = await make_queue("mounted").add("a", {})
    outer = Starlette(routes=[Mount("/ops/queues", app=make_app())])
    client = client_for(outer)
    page = await client.get("/ops/queues/")
    assert page.status_code == 200
    assert 'href="/ops/queues/queues/mounted"' in page.text
    assert 'href="/ops/queues/static/dashboard.css"' in page.text
    assert (await client.get(f"/ops/queues/queues/mounted/jobs/{job.id}")).status_code == 200
    login = await client_for(outer, auth=False).get("/ops/queues/", headers={"accept": "text/html"})
    assert login.headers["location"] == "/ops/queues/login?next=%2Fops%2Fqueues%2F"
    assert "Path=/ops/queues" in login.headers["set-cookie"]


async def test_a_plugin_adds_a_page_in_the_navigation(
    make_queue: Callable[..., Queue], make_app: MakeApp, client_for: ClientFor, tmp_path: Path
) -> None:
    await make_queue("plugged").add("a", {})
    (tmp_path / "hello.html").write_text(
        '{% extends "base.html" %}{% block content %}<h1 id="hello">Hello {{ who }}</h1>'
        "{% endblock %}"
    )
    events: list[str] = []

    async def page(request: Request) -> Response:
        dash = dashboard_of(request)
        return render(request, "demo/hello.html", {"who": dash.prefix, "nav": "demo"})

    async def started(dash: Any) -> None:
        events.append("start")

    async def stopped(dash: Any) -> None:
        events.append("stop")

    plugin = DashboardPlugin(
        name="demo",
        title="Demo <b>",
        routes=[Route("/", page)],
        templates=tmp_path,
        on_startup=started,
        on_shutdown=stopped,
    )
    app = make_app(plugins=[plugin])
    client = client_for(app)
    overview = (await client.get("/")).text
    assert 'href="/plugins/demo/"' in overview and "Demo &lt;b&gt;" in overview
    hello = await client.get("/plugins/demo/")
    assert hello.status_code == 200 and 'id="hello">Hello jqt' in hello.text
    assert (await client_for(app, auth=False).get("/plugins/demo/")).status_code == 401
    await app.state.dashboard.aclose()
    assert events == ["start", "stop"]
    with pytest.raises(ConfigError, match="plugin name"):
        DashboardPlugin(name="Bad Name", title="x")
    with pytest.raises(ConfigError, match="unique"):
        make_app(plugins=[plugin, plugin])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_command_serves_and_stops_on_sigint_with_a_stream_open(
    make_queue: Callable[..., Queue], redis_url: str, prefix: str
) -> None:
    await make_queue("cli").add("a", {})
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jobqueue.dashboard", "--redis", redis_url, "--prefix", prefix,
        "--no-auth", "--port", str(port), "--log-level", "warning",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx2.AsyncClient(base_url=base) as client:

            async def up() -> bool:
                try:
                    return (await client.get("/")).status_code == 200
                except httpx2.TransportError:
                    return False

            await wait_for(up, what="the dashboard to answer")
            page = (await client.get("/")).text
            assert 'data-count="cli|waiting">1<' in page
            async with client.stream("GET", "/events") as response:
                assert (await asyncio.wait_for(anext(_events(response)), HANG))[0] == "counts"
                proc.send_signal(signal.SIGINT)
                # uvicorn re-raises the signal it caught once it has shut down
                assert await asyncio.wait_for(proc.wait(), HANG) in (0, -signal.SIGINT)
        assert proc.stderr is not None
        err = (await proc.stderr.read()).decode()
        assert "Traceback" not in err, err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
