"""The dashboard's plugin API: an application adds pages of its own (the pipeline's runs page
is one) without the dashboard knowing anything of it.

    from starlette.routing import Route
    from jobqueue.dashboard import DashboardPlugin, render

    async def runs(request):
        return render(request, "myapp/runs.html", {"runs": await load_runs()})

    plugin = DashboardPlugin(
        name="myapp", title="My app", routes=[Route("/", runs)], templates="path/to/templates"
    )
    app = create_app(redis=url, token=token, plugins=[plugin])
    # or: python -m jobqueue.dashboard --plugin mypackage.module:plugin

A plugin's routes are mounted at `/plugins/<name>/` and reached from the navigation bar by its
`title`; its templates are found as `<name>/<file>` and may extend the dashboard's
`base.html`. `on_startup` / `on_shutdown` run with the dashboard's lifespan (open and close a
database pool there, or lazily on the first request when the app is mounted in another app
whose lifespan does not reach it).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from redis.asyncio import Redis
from starlette.routing import BaseRoute

from ..errors import ConfigError

__all__ = ["DashboardHost", "DashboardPlugin"]


class DashboardHost(Protocol):
    """What a plugin's `on_startup` / `on_shutdown` receive of the dashboard (the `Dashboard`
    of the app; a request handler gets it with `dashboard_of(request)`)."""

    @property
    def redis(self) -> Redis: ...

    prefix: str
    read_only: bool
    plugin_state: dict[str, Any]


_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


@dataclass(frozen=True)
class DashboardPlugin:
    """Pages an application adds to the dashboard.

    Attributes:
        name: the plugin's slug (its URL segment and template folder): lowercase letters,
            digits, '-' and '_', at most 40.
        title: the navigation bar's link text.
        routes: Starlette routes, relative to `/plugins/<name>`; the first one's path is
            what the navigation bar links to (`/` by default).
        templates: a directory of Jinja2 templates, found as `<name>/<file>`, or None.
        on_startup: awaited with the dashboard (`DashboardHost`) when the app starts, or None.
        on_shutdown: awaited with the dashboard when the app stops, or None.
    """

    name: str
    title: str
    routes: Sequence[BaseRoute] = field(default_factory=tuple)
    templates: str | Path | None = None
    on_startup: Callable[[DashboardHost], Awaitable[None]] | None = None
    on_shutdown: Callable[[DashboardHost], Awaitable[None]] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ConfigError(
                f"plugin name {self.name!r} is invalid: 1-40 lowercase letters, digits, '-', "
                "'_', starting with a letter"
            )
        if not isinstance(self.title, str) or not 0 < len(self.title) <= 40:
            raise ConfigError(f"plugin title {self.title!r} is invalid: 1-40 characters")
        if self.templates is not None and not Path(self.templates).is_dir():
            raise ConfigError(f"plugin templates {str(self.templates)!r} is not a directory")
        for route in self.routes:
            if not isinstance(route, BaseRoute):
                raise ConfigError(f"plugin route {route!r} is not a Starlette route")
