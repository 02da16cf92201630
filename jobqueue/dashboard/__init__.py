"""A web dashboard of the queues: `python -m jobqueue.dashboard --redis URL --token T`, or
`create_app(redis=..., token=..., read_only=...)` mounted in your ASGI app.

Server-rendered pages (Starlette, Jinja2; assets shipped in the package, no CDN): every queue
with its counts, last hour and limits; its jobs by state; a job with its data, result, error,
log, timeline and flow; the live workers; pages of plugins (`DashboardPlugin`). Actions
(retry, remove, cancel, promote, pause, resume, clean) ask for a confirmation and carry a
CSRF token; `read_only` refuses them. Counts and job states follow the queues' event streams
(server-sent events). `GET /metrics` serves `jobqueue.metrics.metrics_app`.

Needs the `dashboard` extra: `pip install 'jobqueue[dashboard]'`.
"""

from ._app import create_app
from ._cli import load_plugin, main
from ._render import render
from ._state import Dashboard, DashboardOptions, dashboard_of
from .plugins import DashboardHost, DashboardPlugin

__all__ = [
    "Dashboard",
    "DashboardHost",
    "DashboardOptions",
    "DashboardPlugin",
    "create_app",
    "dashboard_of",
    "load_plugin",
    "main",
    "render",
]
