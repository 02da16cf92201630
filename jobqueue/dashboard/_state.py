"""`Dashboard`: what a request handler of the dashboard (or of a plugin) works with: the Redis
client, the queues opened so far, the options, the throughput counters."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from starlette.requests import Request

from ..core.connection import connect, describe_client
from ..core.keys import validate_prefix
from ..core.redact import redact_url
from ..errors import ConfigError
from ..maintenance import discover_queue_keys, open_queue
from ..queue import Queue
from ._stats import Throughput
from .plugins import DashboardPlugin

__all__ = ["Dashboard", "DashboardOptions", "dashboard_of"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DashboardOptions:
    """Timings and sizes (every one configurable, so tests run in milliseconds).

    Attributes:
        page_size: jobs per page of a job list.
        sse_block: seconds per blocking read of the event streams.
        sse_counts_interval: least seconds between two count updates sent to a browser.
        sse_max_seconds: an event stream ends after this long (the browser reconnects), so
            that no connection lives forever.
        queue_cache_seconds: how long the list of queues found by SCAN is reused.
    """

    page_size: int = 25
    sse_block: float = 5.0
    sse_counts_interval: float = 1.0
    sse_max_seconds: float = 300.0
    queue_cache_seconds: float = 2.0

    def __post_init__(self) -> None:
        if isinstance(self.page_size, bool) or not isinstance(self.page_size, int):
            raise ConfigError(f"page_size must be an int, got {self.page_size!r}")
        if not 1 <= self.page_size <= 500:
            raise ConfigError(f"page_size must be within 1..500, got {self.page_size!r}")
        for name in ("sse_block", "sse_counts_interval", "sse_max_seconds", "queue_cache_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if self.sse_block <= 0:
            raise ConfigError(f"sse_block must be > 0, got {self.sse_block!r}")


class Dashboard:
    """The state of one dashboard app (`request.app.state.dashboard`, or `dashboard_of`).

    Attributes:
        prefix: the key prefix of the queues shown.
        read_only: whether actions are refused (and not shown).
        auth: whether a token is required.
        plugins: the plugins registered.
        plugin_state: the plugins' own state for this app, by plugin name.
        options: timings and sizes.
        redis_label: where the queues live, for display (no password).
    """

    def __init__(
        self,
        *,
        redis: str | Redis,
        token: str | None,
        read_only: bool,
        prefix: str,
        plugins: Sequence[DashboardPlugin],
        options: DashboardOptions,
    ) -> None:
        self._url = redis if isinstance(redis, str) else None
        self._client = None if isinstance(redis, str) else redis
        self.redis_label = (
            redact_url(redis) if isinstance(redis, str) else redact_url(describe_client(redis))
        )
        self._token = token.encode() if token is not None else None
        self.auth = token is not None
        # the key of session cookies and CSRF tokens: derived from the token, so that sessions
        # survive a restart (and work across replicas) and a new token ends them all
        self._key = (
            hashlib.sha256(b"jobqueue.dashboard\0" + self._token).digest()
            if self._token is not None
            else secrets.token_bytes(32)
        )
        self.read_only = read_only
        self.prefix = validate_prefix(prefix)
        self.plugins = tuple(plugins)
        self.options = options
        self.throughput = Throughput()
        self._queues: dict[str, Queue] = {}
        self._names: tuple[float, list[str]] | None = None
        self._lock = asyncio.Lock()
        self._started = False
        self.plugin_state: dict[str, Any] = {}
        """Plugins' own state for this app (e.g. a database pool), by plugin name."""
        self.stopping = asyncio.Event()
        """Set when the app stops: open event streams end."""

    @property
    def redis(self) -> Redis:
        """The client (made from the URL on first use, in the serving event loop)."""
        if self._client is None:
            assert self._url is not None
            self._client = connect(self._url)
        return self._client

    # -- security ------------------------------------------------------------------------

    def token_matches(self, given: str) -> bool:
        """Whether `given` is the token (constant time)."""
        if self._token is None:
            return False
        return hmac.compare_digest(given.encode(), self._token)

    def sign(self, purpose: str, value: str) -> str:
        """An HMAC of `value` for `purpose` (session proof, CSRF token)."""
        mac = hmac.new(self._key, f"{purpose}\0{value}".encode(), hashlib.sha256)
        return mac.hexdigest()

    def verify(self, purpose: str, value: str, signature: str) -> bool:
        """Whether `signature` is `sign(purpose, value)` (constant time)."""
        return hmac.compare_digest(self.sign(purpose, value).encode(), signature.encode())

    # -- queues --------------------------------------------------------------------------

    async def queue_names(self) -> list[str]:
        """The queues under the prefix, as `python -m jobqueue.inspect` finds them (SCAN),
        reused for `queue_cache_seconds`."""
        loop = asyncio.get_running_loop()
        if self._names is not None and loop.time() - self._names[0] < (
            self.options.queue_cache_seconds
        ):
            return self._names[1]
        found = await discover_queue_keys(self.redis, self.prefix)
        names = sorted({keys.queue for keys in found})
        self._names = (loop.time(), names)
        return names

    async def queue(self, name: str) -> Queue | None:
        """The queue `name` (opened as its workers published it), or None when unknown."""
        queue = self._queues.get(name)
        if queue is not None:
            return queue
        if name not in await self.queue_names():
            self._names = None  # maybe a queue made since the last scan
            if name not in await self.queue_names():
                return None
        async with self._lock:
            queue = self._queues.get(name)
            if queue is None:
                queue = await open_queue(self.redis, name, prefix=self.prefix)
                self._queues[name] = queue
        return queue

    async def queues(self) -> list[Queue]:
        """Every queue under the prefix."""
        out = []
        for name in await self.queue_names():
            queue = await self.queue(name)
            if queue is not None:
                out.append(queue)
        return out

    # -- lifespan ------------------------------------------------------------------------

    async def startup(self) -> None:
        """Run the plugins' `on_startup` (once)."""
        if self._started:
            return
        self._started = True
        for plugin in self.plugins:
            if plugin.on_startup is not None:
                await plugin.on_startup(self)

    async def aclose(self) -> None:
        """End the event streams, run the plugins' `on_shutdown`, close the queues and the
        client when the dashboard made it."""
        self.stopping.set()
        for plugin in self.plugins:
            if plugin.on_shutdown is not None:
                try:
                    await plugin.on_shutdown(self)
                except Exception:
                    log.exception("dashboard plugin %s: on_shutdown failed", plugin.name)
        queues, self._queues = list(self._queues.values()), {}
        for queue in queues:
            with contextlib.suppress(Exception):
                await queue.close()
        if self._url is not None and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


def dashboard_of(request: Request) -> Dashboard:
    """The `Dashboard` serving `request` (for a plugin's handlers)."""
    dash: Dashboard = request.app.state.dashboard
    return dash
