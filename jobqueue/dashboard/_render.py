"""Rendering a page: the Jinja2 environment (autoescape always on: job data is user input)
and the context every template receives."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from ..core.redact import redact
from ._security import csrf_token
from ._state import Dashboard
from .plugins import DashboardPlugin

__all__ = ["make_templates", "render"]

TEMPLATES = Path(__file__).parent / "templates"
SINCE_MARGIN = 5.0


def _when(value: Any) -> str:
    """A datetime or epoch ms as `YYYY-mm-dd HH:MM:SS.mmm` UTC; '' for none."""
    if value in (None, "", 0):
        return ""
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return str(value)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}".rstrip("0").rstrip(".") if digits else f"{value:,.0f}"


def _bars(values: Sequence[int]) -> list[tuple[int, int]]:
    """A sparkline's bars: (x, height 0..20) per value."""
    top = max(values) if values else 0
    return [(i * 3, round(v * 20 / top) if top else 0) for i, v in enumerate(values)]


def make_templates(plugins: Sequence[DashboardPlugin]) -> Jinja2Templates:
    """The environment: the dashboard's templates, and each plugin's as `<name>/<file>`."""
    plugin_loaders: dict[str, jinja2.BaseLoader] = {
        p.name: jinja2.FileSystemLoader(str(p.templates))
        for p in plugins
        if p.templates is not None
    }
    loader = jinja2.ChoiceLoader(
        [jinja2.FileSystemLoader(str(TEMPLATES)), jinja2.PrefixLoader(plugin_loaders)]
    )
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["when"] = _when
    env.filters["percent"] = _percent
    env.filters["number"] = _number
    env.filters["redact"] = lambda v: redact(str(v)) if v is not None else ""
    env.globals["bars"] = _bars
    return Jinja2Templates(env=env)


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> Response:
    """Render a page of the dashboard (or of a plugin: `"<plugin>/<file>.html"`), with what
    every page needs: the dashboard (`dash`), the CSRF token (`csrf`), the navigation
    (`plugins`) and whether actions are shown (`can_act`).

    Args:
        request: the request being answered.
        template: the template's name.
        context: the page's own values.
        status_code: the HTTP status.
    """
    dash: Dashboard = request.app.state.dashboard
    templates: Jinja2Templates = request.app.state.templates
    ctx: dict[str, Any] = {
        "dash": dash,
        "csrf": csrf_token(request),
        "plugins": dash.plugins,
        "can_act": not dash.read_only,
        "signed_in": request.scope.get("jqd_auth") == "cookie",
        "nav": "",
        "done": None,
        # where the page's event stream starts: a little before the render (the app's clock
        # may run ahead of Redis'), so that no change after the render is missed
        "since": int((time.time() - SINCE_MARGIN) * 1000),
        "path_for": lambda name, **params: str(request.url_for(name, **params).path),
        "plugin_path": lambda p: str(request.url_for(p.name, path="/").path),
    }
    ctx.update(context or {})
    return templates.TemplateResponse(request, template, ctx, status_code=status_code)
