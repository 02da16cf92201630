"""A `prometheus_client` collector over data read with asyncio.

`prometheus_client` calls collectors synchronously; Redis is read with asyncio. A
`BridgedCollector` serves the last snapshot its `refresh()` read, and refreshes it itself when
collected from another thread than its event loop's (`prometheus_client`'s own HTTP server
runs in a thread): it hands the read to the loop and waits for it, up to `timeout`, serving
the previous snapshot after that. An ASGI handler awaits `refresh()` and then renders.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from abc import abstractmethod
from collections.abc import Iterator
from typing import Generic, TypeVar

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from ..core.redact import redact

__all__ = ["BridgedCollector"]

log = logging.getLogger("jobqueue.metrics")

S = TypeVar("S")


class BridgedCollector(Collector, Generic[S]):
    """A collector of a snapshot read by `read()` on an event loop.

    Args:
        timeout: seconds a collection from another thread waits for the read.
    """

    def __init__(self, *, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.snapshot: S | None = None
        """The last snapshot read (None before the first read, or when it failed)."""
        self.up = False
        """Whether the last read succeeded."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None

    @abstractmethod
    async def read(self) -> S:
        """Read a new snapshot."""

    @abstractmethod
    def families(self, snapshot: S) -> Iterator[Metric]:
        """The metric families of a snapshot."""

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Refresh on `loop` whenever collected from another thread."""
        self._loop = loop

    async def refresh(self) -> S | None:
        """Read a new snapshot (concurrent calls share one read); None when the read failed
        (`up` is then False, and no stale values are served)."""
        self._loop = asyncio.get_running_loop()
        if self._lock is None:
            self._lock = asyncio.Lock()
        if self._lock.locked():
            async with self._lock:  # a read is under way: its result is fresh enough
                return self.snapshot
        async with self._lock:
            try:
                self.snapshot, self.up = await self.read(), True
            except Exception as exc:
                log.warning("metrics: %s could not read: %s", type(self).__name__, redact(str(exc)))
                self.snapshot, self.up = None, False
            return self.snapshot

    def _refresh_from_thread(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return
        try:
            asyncio.get_running_loop()
            return  # collected inside an event loop (after an awaited refresh): serve it
        except RuntimeError:
            pass
        future = asyncio.run_coroutine_threadsafe(self.refresh(), loop)
        try:
            future.result(self.timeout)
        except (concurrent.futures.TimeoutError, TimeoutError):
            future.cancel()
            log.warning("metrics: %s took over %.1fs to read", type(self).__name__, self.timeout)

    def collect(self) -> Iterator[Metric]:
        """The metric families of the snapshot (refreshed first when called from a thread)."""
        self._refresh_from_thread()
        snapshot = self.snapshot
        if snapshot is not None:
            yield from self.families(snapshot)
