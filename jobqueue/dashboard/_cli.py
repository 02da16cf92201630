"""`python -m jobqueue.dashboard --redis URL [--host 127.0.0.1] [--port 8700] [--token T]
[--read-only] [--no-auth] [--prefix jq] [--plugin module:attribute ...]`.

The token comes from `--token`, else `JOBQUEUE_DASHBOARD_TOKEN` (kept out of `ps`); without
one, `--no-auth` is required, and it is only allowed bound to 127.0.0.1. The Redis URL comes
from `--redis`, else `REDIS_URL`, else redis://127.0.0.1:6379/0; its password is never
printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import socket
import sys
from collections.abc import Sequence
from types import FrameType

import uvicorn

from ..core.redact import redact_url
from ..errors import ConfigError
from ._app import create_app
from ._state import Dashboard
from .plugins import DashboardPlugin

__all__ = ["TOKEN_ENV", "load_plugin", "main"]

TOKEN_ENV = "JOBQUEUE_DASHBOARD_TOKEN"
DEFAULT_URL = "redis://127.0.0.1:6379/0"
LOCALHOST = "127.0.0.1"

log = logging.getLogger(__name__)


def load_plugin(spec: str) -> DashboardPlugin:
    """The plugin named `module:attribute` (an attribute that is a `DashboardPlugin`, or a
    function returning one).

    Raises:
        ConfigError: no such module or attribute, or not a plugin.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"--plugin {spec!r}: use module:attribute")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--plugin {spec!r}: cannot import {module_name}: {exc}") from None
    found = getattr(module, attr, None)
    if callable(found) and not isinstance(found, DashboardPlugin):
        found = found()
    if not isinstance(found, DashboardPlugin):
        raise ConfigError(f"--plugin {spec!r} is not a DashboardPlugin")
    return found


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jobqueue.dashboard", description="A web dashboard of the queues."
    )
    p.add_argument("--redis", help="Redis URL (default: $REDIS_URL or redis://127.0.0.1:6379/0)")
    p.add_argument("--host", default=LOCALHOST, help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8700, help="port (default 8700)")
    p.add_argument("--token", help=f"the sign-in token (default: ${TOKEN_ENV})")
    p.add_argument("--no-auth", action="store_true", help="no token: only on 127.0.0.1")
    p.add_argument("--read-only", action="store_true", help="refuse and hide every action")
    p.add_argument("--prefix", default="jq", help="key prefix of the queues (default jq)")
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="a DashboardPlugin to add (repeatable), e.g. pipeline.dashboard_plugin:plugin",
    )
    p.add_argument("--log-level", default="info", help="uvicorn's log level (default info)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the dashboard until interrupted. Exit codes: 0 stopped, 2 a bad option."""
    args = _parser().parse_args(argv)
    token = args.token or os.environ.get(TOKEN_ENV) or None
    url = args.redis or os.environ.get("REDIS_URL") or DEFAULT_URL
    try:
        if args.no_auth and args.host != LOCALHOST:
            raise ConfigError(
                f"--no-auth is only allowed bound to {LOCALHOST} (got --host {args.host}): "
                f"give a --token (or {TOKEN_ENV}) to serve on another address"
            )
        if token is None and not args.no_auth:
            raise ConfigError(f"give --token (or set {TOKEN_ENV}), or --no-auth on {LOCALHOST}")
        if token is not None and args.no_auth:
            raise ConfigError("give --token or --no-auth, not both")
        if not 0 < args.port < 65536:
            raise ConfigError(f"--port must be within 1..65535, got {args.port}")
        plugins = [load_plugin(spec) for spec in args.plugin]
        app = create_app(
            redis=url,
            token=token,
            read_only=args.read_only,
            no_auth=args.no_auth,
            prefix=args.prefix,
            plugins=plugins,
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    log.info(
        "dashboard of %s (prefix %s) on http://%s:%d/%s%s",
        redact_url(url), args.prefix, args.host, args.port,
        " read-only" if args.read_only else "", " without auth" if args.no_auth else "",
    )  # fmt: skip
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=3,
        proxy_headers=False,
    )
    # uvicorn re-raises the signal that stopped it once it has shut down (as uvicorn.run does)
    with contextlib.suppress(KeyboardInterrupt):
        _Server(config, app.state.dashboard).run()
    return 0


class _Server(uvicorn.Server):
    """uvicorn's server, which also tells the dashboard when a signal stops it: open event
    streams then end at once (uvicorn waits for open responses before the app's shutdown)."""

    def __init__(self, config: uvicorn.Config, dash: Dashboard) -> None:
        super().__init__(config)
        self._dash = dash
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._dash.stopping.set)
        super().handle_exit(sig, frame)
