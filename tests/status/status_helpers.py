"""Helpers of the status tests: unique ids, polling, an event writer and a TCP proxy."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from servers import free_port

from jobqueue import QueueKeys

#: Seconds a wait may last before the test fails: a bound on a hang, never a speed requirement.
HANG = 120.0


def uid(prefix: str = "job") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout: float = HANG, what: str = "condition"
) -> None:
    """Poll `predicate` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)  # paces the polling; decides nothing


class Stream:
    """Writes engine-format events to one queue's stream."""

    def __init__(self, redis: aioredis.Redis, prefix: str, queue: str) -> None:
        self.redis, self.queue = redis, queue
        self.key = QueueKeys(prefix, queue).events

    async def emit(self, ev: str, job_id: str, **fields: Any) -> str:
        data = {"ev": ev, "id": job_id, "ts": str(int(time.time() * 1000))}
        data.update({k: str(v) for k, v in fields.items()})
        entry_id = await self.redis.xadd(self.key, data)
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def pending(self, group: str = "status-mirror") -> int:
        info = await self.redis.xpending(self.key, group)
        return int(info["pending"])


class TcpProxy:
    """A TCP forwarder we can cut (every connection dropped, new ones refused) and restore.

    It forwards to the server of `url`: host:port, or a PostgreSQL Unix socket given as
    `?host=/dir` (the embedded PostgreSQL's URLs).
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        socket_dir = parse_qs(parts.query).get("host", [""])[0]
        default_port = 6379 if parts.scheme.startswith("redis") else 5432
        self.port_of_target = parts.port or default_port
        self.unix_path = (
            f"{socket_dir}/.s.PGSQL.{self.port_of_target}" if socket_dir.startswith("/") else None
        )
        self.host = parts.hostname or "127.0.0.1"
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()

    def url_for(self, url: str) -> str:
        """`url` pointed at the proxy instead of the server."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@" if userinfo else ""
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "host"])
        return urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{self.port}", query=query))

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for transport in list(self._transports):
            transport.abort()  # like a network cut: no goodbye to either side
        self._transports.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.unix_path:
                up_reader, up_writer = await asyncio.open_unix_connection(self.unix_path)
            else:
                up_reader, up_writer = await asyncio.open_connection(self.host, self.port_of_target)
        except OSError:
            writer.transport.abort()
            return
        self._transports |= {writer.transport, up_writer.transport}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError, RuntimeError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._transports -= {writer.transport, up_writer.transport}
