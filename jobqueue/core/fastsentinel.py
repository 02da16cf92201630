"""The fast path behind Redis Sentinel: a `FastConnection` to the master the sentinels name.

Its address is asked of the sentinels (`SENTINEL GET-MASTER-ADDR-BY-NAME`, through redis-py's
`Sentinel`) at each connect. A failover is noticed three ways, the first that comes: a
`+switch-master` message from a sentinel (a background subscription, one sentinel after
another), a poll of the sentinels at most once per `check_interval` while commands flow (before
the command), and a `READONLY` reply (the command, refused before it ran, is sent once more to
the master the sentinels name now). Each drops the connection; the next command connects to the
new master. A demoted master keeps accepting writes until the sentinels reconfigure it, and
loses them then: waiting for READONLY alone would not do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError

from .fastconn import FastConnection

__all__ = ["SentinelFastConnection"]

log = logging.getLogger(__name__)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SentinelFastConnection(FastConnection):
    """A `FastConnection` to the master that the sentinels name, asked at each connect.

    Args:
        sentinel: redis-py's `redis.asyncio.sentinel.Sentinel` (its sentinels and settings).
        service: the monitored master's name.
        check_interval: seconds between two questions to the sentinels while commands flow:
            when they name another master (a failover), the connection is dropped and the
            next command goes to the new one. A demoted master keeps accepting writes until
            the sentinels reconfigure it (writes it then loses), so waiting for its READONLY
            alone is not enough.
        options: `FastConnection` keyword arguments (credentials, db, timeouts, decoding).
    """

    def __init__(
        self, sentinel: Any, service: str, *, check_interval: float = 1.0, **options: Any
    ) -> None:
        super().__init__("localhost", 0, **options)
        self.sentinel = sentinel
        self.service = service
        self.check_interval = check_interval
        self._next_check = 0.0
        self._watcher: asyncio.Task[None] | None = None
        self.switches = 0
        """Failovers seen (`+switch-master` messages, or a poll, naming another master)."""

    def __repr__(self) -> str:
        return f"<SentinelFastConnection {self.service} at {self.host}:{self.port} db={self.db}>"

    async def _open(self) -> Any:
        try:
            host, port = await self.sentinel.discover_master(self.service)
        except RedisError as exc:
            raise RedisConnectionError(
                f"sentinels name no master for {self.service}: {exc}"
            ) from exc
        self.host, self.port = str(host), int(port)
        loop = asyncio.get_running_loop()
        self._next_check = loop.time() + self.check_interval
        watcher = self._watcher
        if watcher is None or watcher.done() or watcher.get_loop() is not loop:
            self._watcher = loop.create_task(self._watch())
        return await super()._open()

    def _moved(self, host: str, port: int) -> None:
        if (host, port) != (self.host, self.port) and self.connected:
            self.switches += 1
            log.warning(
                "sentinels moved %s from %s:%s to %s:%s: reconnecting",
                self.service, self.host, self.port, host, port,
            )  # fmt: skip
            self.close()

    async def _watch(self) -> None:
        """Listen for `+switch-master` on one sentinel after another: a failover drops the
        connection as soon as the sentinels announce it (the poll of `_maybe_check` stays as
        the fallback when no sentinel can be heard)."""
        failures = 0
        while True:
            for sentinel in list(self.sentinel.sentinels):
                pubsub = sentinel.pubsub()
                try:
                    await pubsub.subscribe("+switch-master")
                    failures = 0
                    while True:
                        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if msg is None or msg.get("type") != "message":
                            continue
                        # "<name> <old ip> <old port> <new ip> <new port>"
                        parts = _text(msg["data"]).split()
                        if len(parts) == 5 and parts[0] == self.service:
                            self._moved(parts[3], int(parts[4]))
                except (RedisError, OSError) as exc:
                    failures += 1
                    log.debug("sentinel watch of %s lost: %s", self.service, exc)
                finally:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))

    async def _maybe_check(self) -> None:
        """Ask the sentinels again when `check_interval` passed (the first caller after it
        asks; the others go on): when they name another master, drop the connection."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_check or not self.connected:
            return
        self._next_check = loop.time() + self.check_interval
        try:
            host, port = await self.sentinel.discover_master(self.service)
        except (RedisError, OSError) as exc:
            log.debug("sentinels did not answer for %s: %s", self.service, exc)
            return  # keep the master we have; a lost connection asks again
        self._moved(str(host), int(port))

    async def execute(self, *args: Any) -> Any:
        """As `FastConnection.execute`; a READONLY reply makes it ask the sentinels again and
        send the command once more (a refused write did not run)."""
        await self._maybe_check()
        try:
            return await super().execute(*args)
        except ReadOnlyError:
            self.close()
            return await super().execute(*args)

    async def execute_many(self, *commands: tuple[Any, ...]) -> list[Any]:
        """As `FastConnection.execute_many`, with the READONLY handling of `execute`."""
        await self._maybe_check()
        replies = await super().execute_many(*commands)
        if replies and isinstance(replies[0], ReadOnlyError):
            self.close()
            replies = await super().execute_many(*commands)
        return replies

    async def aclose(self) -> None:
        """Close the connection and stop listening to the sentinels."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None and not watcher.done():
            watcher.cancel()
            if watcher.get_loop() is asyncio.get_running_loop():
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        self.close()
