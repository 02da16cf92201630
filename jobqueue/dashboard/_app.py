"""`create_app`: the dashboard as an ASGI app (Starlette), to serve alone
(`python -m jobqueue.dashboard`) or to mount in an application."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import ConfigError
from ..metrics import metrics_app
from ._actions import job_action, queue_action
from ._pages import (
    http_error,
    job,
    login,
    login_form,
    logout,
    lookup,
    overview,
    queue_page,
    workers,
)
from ._render import make_templates
from ._security import SecurityMiddleware
from ._sse import events
from ._state import Dashboard, DashboardOptions
from .plugins import DashboardPlugin

__all__ = ["create_app"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


def _check_token(token: str | None, no_auth: bool) -> None:
    if token is None:
        if not no_auth:
            raise ConfigError(
                "token is None: give the dashboard a token, or pass no_auth=True when something "
                "else (your app, a proxy) authenticates its users"
            )
        return
    if no_auth:
        raise ConfigError("give a token or no_auth=True, not both")
    if not isinstance(token, str) or len(token) < 8 or not token.isprintable() or " " in token:
        raise ConfigError(
            "token is invalid: use at least 8 printable characters without spaces "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )


def create_app(
    *,
    redis: str | Redis,
    token: str | None,
    read_only: bool = False,
    no_auth: bool = False,
    prefix: str = "jq",
    plugins: Sequence[DashboardPlugin] = (),
    options: DashboardOptions | None = None,
) -> Starlette:
    """The dashboard as an ASGI app: mount it (`Mount("/queues", create_app(...))`) or serve it.

    Args:
        redis: a Redis URL (its password is never shown), or a `redis.asyncio.Redis` client.
        token: the token users sign in with (or send as `Authorization: Bearer <token>`);
            at least 8 characters. None needs `no_auth=True`.
        read_only: refuse every action (403) and show none.
        no_auth: serve without a token: only behind your own authentication, or on 127.0.0.1
            (the CLI refuses `--no-auth` on any other address).
        prefix: the key prefix of the queues shown.
        plugins: pages of the application (see `DashboardPlugin`).
        options: timings and sizes (`DashboardOptions`).

    Raises:
        ConfigError: a bad token, prefix, plugin or option; two plugins with one name.
    """
    _check_token(token, no_auth)
    names = [p.name for p in plugins]
    if len(set(names)) != len(names):
        raise ConfigError(f"plugin names must be unique, got {names!r}")
    dash = Dashboard(
        redis=redis,
        token=token,
        read_only=bool(read_only),
        prefix=prefix,
        plugins=plugins,
        options=options or DashboardOptions(),
    )
    metrics = metrics_app(redis=dash.redis, prefix=dash.prefix)
    routes: list[BaseRoute] = [
        Route("/", overview, name="overview"),
        Route("/workers", workers, name="workers"),
        Route("/jobs", lookup, name="lookup"),
        Route("/events", events, name="events"),
        Route("/login", login_form, name="login", methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, name="logout", methods=["POST"]),
        Route("/queues/{queue}", queue_page, name="queue"),
        Route(
            "/queues/{queue}/action/{action}",
            queue_action,
            name="queue_action",
            methods=["POST"],
        ),
        Route("/queues/{queue}/jobs/{job_id}", job, name="job"),
        Route(
            "/queues/{queue}/jobs/{job_id}/{action}",
            job_action,
            name="job_action",
            methods=["POST"],
        ),
        Route("/metrics", metrics, name="metrics"),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    for plugin in plugins:
        routes.append(
            Mount(f"/plugins/{plugin.name}", routes=list(plugin.routes), name=plugin.name)
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await dash.startup()
        try:
            yield
        finally:
            await dash.aclose()

    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityMiddleware)],
        exception_handlers={HTTPException: http_error, 500: http_error},
        lifespan=lifespan,
    )
    app.state.dashboard = dash
    app.state.templates = make_templates(plugins)
    return app
