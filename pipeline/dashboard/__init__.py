"""The pipeline's page of the jobqueue dashboard, a `DashboardPlugin`:

    python -m jobqueue.dashboard --redis URL --token T --plugin pipeline.dashboard:plugin

(`DATABASE_URL` names the PostgreSQL database; `PIPELINE_DAILY_BUDGET_USD` and
`PIPELINE_BUDGET_ORG` the day's budget shown.) Or, in an app of your own:
`create_app(redis=..., token=..., plugins=[make_plugin(database_url=...)])`.

Pages (under `/plugins/pipeline/`): the runs with their sub-sectors, stocks, judge attempts and
spend against budget; a run's tree; the webhook delivery log (`webhook_delivery`). Read only:
the plugin runs SELECTs, nothing else. The engine knows nothing of it (`jobqueue` never
imports `pipeline`); it registers itself through the dashboard's public plugin API.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import Route

from jobqueue.dashboard import DashboardHost, DashboardPlugin

from ._pages import NAME, close_pool, run_page, runs_page, webhooks_page

__all__ = ["make_plugin", "plugin"]


def make_plugin(*, database_url: str | None = None) -> DashboardPlugin:
    """The pipeline's dashboard plugin.

    Args:
        database_url: the PostgreSQL URL; default: the pipeline's settings (`DATABASE_URL`).
    """

    async def on_startup(dash: DashboardHost) -> None:
        # setdefault: a first request may have run (and made the pool) before this hook
        dash.plugin_state.setdefault(NAME, {})["database_url"] = database_url

    async def on_shutdown(dash: DashboardHost) -> None:
        await close_pool(dash)

    return DashboardPlugin(
        name=NAME,
        title="Pipeline",
        routes=[
            Route("/", runs_page, name="runs"),
            Route("/runs/{run_id}", run_page, name="run"),
            Route("/webhooks", webhooks_page, name="webhooks"),
        ],
        templates=Path(__file__).parent / "templates",
        on_startup=on_startup,
        on_shutdown=on_shutdown,
    )


plugin = make_plugin()
"""The plugin on the database of the settings (`--plugin pipeline.dashboard:plugin`)."""
