"""How an idle worker waits without polling: a `BZPOPMIN` on the queue's marker, on a
connection of its own, until a new job pokes it or the due time the scripts reported."""

from __future__ import annotations

import contextlib

from redis.asyncio import Redis

from ..core.connection import REDIS_ERRORS, dedicated_client
from ..core.fastconn import FastConnection
from ..core.fastroute import ClusterFastConnection, fast_connection
from ..queue import Queue

__all__ = ["Wakeup"]


class Wakeup:
    """The wake-up connection of one worker (opened lazily by the first `block`).

    Args:
        queue: the worker's queue.
    """

    def __init__(self, queue: Queue) -> None:
        self._queue = queue
        self._client: Redis | None = None
        self._fast: FastConnection | ClusterFastConnection | None = None

    def _open(self) -> Redis:
        # a socket timeout longer than any block: a read that never settles (a half-dead
        # connection) ends in a reconnect, not a hang
        client = dedicated_client(
            self._queue.redis, socket_timeout=self._queue.config.drain_delay + 10.0
        )
        if self._queue.scripts.fast is not None:
            # the wake-up is on the latency path: a lean connection of its own for it
            self._fast = fast_connection(client)
        self._client = client
        return client

    async def block(self, hint_ms: int) -> bool:
        """Block until a job may be ready (at most `drain_delay`, or `hint_ms` when the
        scripts said something is due sooner); True when woken by the marker."""
        client = self._client or self._open()
        timeout = self._queue.config.drain_delay
        if hint_ms > 0:
            timeout = min(timeout, hint_ms / 1000)
        timeout = max(timeout, 0.001)
        marker = self._queue.keys.marker
        if self._fast is not None:
            reply = await self._fast.execute("BZPOPMIN", marker, timeout)
        else:
            reply = await client.bzpopmin(marker, timeout=timeout)
        return reply is not None

    async def pass_on(self) -> None:
        """Poke the marker again: a wake-up this worker cannot use goes to another one."""
        with contextlib.suppress(*REDIS_ERRORS):
            await self._queue.redis.zadd(self._queue.keys.marker, {"0": 0})

    async def aclose(self) -> None:
        """Close the wake-up connections."""
        if self._fast is not None:
            await self._fast.aclose()
        if self._client is not None:
            await self._client.aclose()
