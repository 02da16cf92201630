"""`metrics_app`: a tiny ASGI app answering `GET /metrics` with the queue-level gauges, for the
dashboard to mount (or any ASGI server to run). No framework: it awaits a fresh snapshot, then
renders the registry in the format the scraper asked for (Prometheus text or OpenMetrics)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from redis.asyncio import Redis

from ..core.connection import connect
from ._queues import QueueMetricsCollector

__all__ = ["MetricsApp", "metrics_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# mounted at /metrics, the app sees "/" (or ""); run on its own, "/metrics"
_PATHS = frozenset({"", "/", "/metrics", "/metrics/"})


class MetricsApp:
    """The ASGI app `metrics_app` returns.

    Attributes:
        collector: the queue-level collector it refreshes on every scrape.
        registry: what it renders (the collector, plus whatever else was registered in it).
    """

    def __init__(
        self, collector: QueueMetricsCollector, registry: CollectorRegistry, *, owns_client: bool
    ) -> None:
        self.collector = collector
        self.registry = registry
        self._owns_client = owns_client

    async def aclose(self) -> None:
        """Close the Redis client, when the app made it from a URL."""
        if self._owns_client:
            await self.collector.redis.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):  # servers that keep the mount point in `path`
            path = path[len(root) :]
        if path not in _PATHS:
            await _respond(send, 404, b"not found\n", "text/plain; charset=utf-8")
            return
        if scope.get("method", "GET") not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed\n", "text/plain; charset=utf-8")
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        await self.collector.refresh()
        encoder, content_type = choose_encoder(headers.get("accept", ""))
        body = encoder(self.registry)
        await _respond(send, 200, b"" if scope.get("method") == "HEAD" else body, content_type)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _respond(send: Send, status: int, body: bytes, content_type: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode("latin-1")),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def metrics_app(
    *,
    redis: str | Redis,
    prefix: str = "jq",
    registry: CollectorRegistry | None = None,
    timeout: float = 5.0,
) -> MetricsApp:
    """An ASGI app serving the queue-level gauges of every queue under `prefix` at
    `GET /metrics` (or at its mount point: `Mount("/metrics", app)`).

    Each scrape reads Redis: one `counts` script call per queue, one pipeline of the queues'
    `meta`, one read per shared limiter. Redis unreachable gives `jobqueue_redis_up 0`.

    Args:
        redis: a Redis URL, or a `redis.asyncio.Redis` client to share.
        prefix: the key prefix of the queues.
        registry: a registry to add the collector to and render (e.g. one holding metrics of
            your own); default: a new one holding only the collector.
        timeout: seconds a collection from another thread waits for Redis.
    """
    client = connect(redis) if isinstance(redis, str) else redis
    collector = QueueMetricsCollector(client, prefix=prefix, timeout=timeout)
    registry = registry or CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return MetricsApp(collector, registry, owns_client=isinstance(redis, str))
