"""A minimal, multiplexed asyncio Redis connection for the engine's hot paths.

redis-py spends ~40-55 µs of client CPU per round trip (connection pool checkout, command
packing in Python, a stream reader, one socket per concurrent command). The engine's hot
paths are all `EVALSHA` calls, so `Scripts.run` sends them through this connection instead:

- one `asyncio.Protocol` (`_resp.RespProtocol`) with a `hiredis.Reader`: replies are parsed
  in C as bytes arrive and handed to the waiting futures in FIFO order;
- multiplexed: any number of commands in flight on one socket (the server answers in order);
- writes coalesced: a command goes out at once when the connection is idle, else it joins a
  buffer flushed once per event-loop iteration (one `send` for many commands);
- reconnects on demand (the next command after a drop connects again), on the running loop;
- fails, never hangs: a dropped connection fails every in-flight command with
  `redis.exceptions.ConnectionError`, and a command without a reply after `command_timeout`
  fails every in-flight command with `redis.exceptions.TimeoutError` and drops the connection
  (replies are matched by order, so one lost reply spoils the connection);
- raises redis-py's exception classes (`ResponseError`, `NoScriptError`, `BusyLoadingError`,
  `AuthenticationError`, ...), mapped by redis-py's own table, so callers handle errors the
  same way whichever path ran.

It speaks RESP2 over TCP or a unix socket, with AUTH (password, or username and password),
SELECT and CLIENT SETNAME at connect. It does not do TLS, credential providers or redis-py's
automatic command retries: `FastConnection.from_client` returns None for such clients and the
caller stays on redis-py. Cluster and Sentinel clients get one from
`jobqueue.core.fastroute.fast_connection` (one of these per master, routed by hash slot; or one
that asks the sentinels for the master). A blocking command holds up every command behind
it: only a connection of its own may block (the worker's wake-up, whose take waits behind it).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Mapping
from typing import Any

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._resp import RespProtocol
from ._tls import tls_context
from .connection import CancelSafeConnection

__all__ = ["DEFAULT_COMMAND_TIMEOUT", "DEFAULT_CONNECT_TIMEOUT", "FastConnection"]

DEFAULT_COMMAND_TIMEOUT = 30.0
"""Seconds a command may wait for its reply when the client sets no `socket_timeout`."""

DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds to connect (and authenticate) when the client sets no connect timeout."""


class FastConnection:
    """One lazily opened, multiplexed connection to a Redis server.

    Args:
        host, port: TCP address (ignored when `path` is given).
        path: a unix socket path.
        db: the database to SELECT.
        username, password: AUTH credentials (username needs Redis 6 ACLs).
        client_name: sent with CLIENT SETNAME.
        command_timeout: seconds a command may wait for its reply.
        connect_timeout: seconds to connect and authenticate.
        decode_responses, encoding, encoding_errors: as in redis-py (bytes replies by
            default; commands are always sent as UTF-8).
        socket_keepalive: set SO_KEEPALIVE on the socket.

    Like `redis.asyncio.Redis`, it belongs to one thread; it follows that thread from one
    event loop to the next (a connection made on a loop that stopped is replaced).
    """

    def __init__(
        self,
        host: str = "localhost",
        port: int = 6379,
        *,
        path: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        client_name: str | None = None,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        decode_responses: bool = False,
        encoding: str = "utf-8",
        encoding_errors: str = "strict",
        socket_keepalive: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if command_timeout <= 0 or connect_timeout <= 0:
            raise ValueError("command_timeout and connect_timeout must be > 0")
        self.host = host
        self.port = int(port)
        self.path = path
        self.db = int(db)
        self.username = username
        self.password = password
        self.client_name = client_name
        self.command_timeout = float(command_timeout)
        self.connect_timeout = float(connect_timeout)
        self.socket_keepalive = socket_keepalive
        self.tls = tls
        self._reader_kwargs: dict[str, str] = (
            {"encoding": encoding, "errors": encoding_errors} if decode_responses else {}
        )
        self._proto: RespProtocol | None = None
        self._connecting: asyncio.Task[RespProtocol] | None = None

    def __repr__(self) -> str:
        where = f"unix://{self.path}" if self.path else f"{self.host}:{self.port}"
        tls = " tls" if self.tls is not None else ""
        return f"<FastConnection {where} db={self.db}{tls}>"

    @classmethod
    def from_client(cls, client: Any) -> FastConnection | None:
        """Settings of a `redis.asyncio.Redis` client, or None when it needs redis-py.

        The connection kwargs of the client's pool give host, port or unix path, db,
        username, password, client name, timeouts and response decoding. Only pools of
        redis-py's own `Connection` and `UnixDomainSocketConnection`, and of the engine's
        `CancelSafeConnection`, qualify: TLS, Sentinel, Cluster, credential providers and any
        other connection class (a subclass may not talk to a socket at all: fakeredis's
        connection subclasses `Connection` and keeps its server in memory) get None, and the
        caller keeps using the client itself.
        """
        return cls._from_pool(getattr(client, "connection_pool", None))

    @classmethod
    def _from_pool(cls, pool: Any) -> FastConnection | None:
        from redis.asyncio.connection import (
            BlockingConnectionPool,
            Connection,
            ConnectionPool,
            SSLConnection,
            UnixDomainSocketConnection,
        )

        # exactly these pools: a Sentinel pool (a subclass) finds its server at connect time
        if type(pool) not in (ConnectionPool, BlockingConnectionPool):
            return None
        # exactly these classes, never "any subclass": the settings of a class we do not know
        # need not describe a real server (a fake one's `host` is a name, and a socket opened to
        # it could reach whatever listens on localhost:6379)
        conn_class = pool.connection_class
        if conn_class not in (
            Connection, CancelSafeConnection, UnixDomainSocketConnection, SSLConnection
        ):  # fmt: skip
            return None
        kwargs = pool.connection_kwargs
        if conn_class is SSLConnection:
            kwargs = {**kwargs, "ssl": True}
        return cls.from_kwargs(kwargs, unix=conn_class is UnixDomainSocketConnection)

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any], *, unix: bool = False) -> FastConnection | None:
        """Build from redis-py connection kwargs (None when they ask for what is missing);
        `ssl` (a `rediss://` client) speaks TLS with the context redis-py would use."""
        if kwargs.get("credential_provider") is not None:
            return None
        tls = tls_context(kwargs) if kwargs.get("ssl") else None
        if kwargs.get("ssl") and tls is None:
            return None
        if kwargs.get("encoding", "utf-8").lower().replace("_", "-") not in ("utf-8", "utf8"):
            return None  # commands are packed as UTF-8 by hiredis
        timeout = kwargs.get("socket_timeout") or DEFAULT_COMMAND_TIMEOUT
        connect_timeout = kwargs.get("socket_connect_timeout") or kwargs.get("socket_timeout")
        path = kwargs.get("path") if unix else None
        if unix and not path:
            return None
        return cls(
            host=str(kwargs.get("host") or "localhost"),
            port=int(kwargs.get("port") or 6379),
            path=path,
            db=int(kwargs.get("db") or 0),
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            client_name=kwargs.get("client_name"),
            command_timeout=float(timeout),
            connect_timeout=float(connect_timeout or DEFAULT_CONNECT_TIMEOUT),
            decode_responses=bool(kwargs.get("decode_responses", False)),
            encoding=str(kwargs.get("encoding", "utf-8")),
            encoding_errors=str(kwargs.get("encoding_errors", "strict")),
            socket_keepalive=bool(kwargs.get("socket_keepalive", False)),
            tls=tls,
        )

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> FastConnection | None:
        """From a `redis://`, `rediss://` or `unix://` URL as `redis.asyncio.Redis.from_url`
        reads it."""
        from redis.asyncio.connection import ConnectionPool

        return cls._from_pool(ConnectionPool.from_url(url, **kwargs))

    @property
    def connected(self) -> bool:
        """Whether a socket is open now (commands reconnect on demand either way)."""
        return self._proto is not None and not self._proto.closed

    async def execute(self, *args: Any) -> Any:
        """Send one command and return its reply (errors raised as redis-py exceptions)."""
        try:
            data = hiredis.pack_command(args)
        except TypeError as exc:
            raise DataError(f"invalid command argument: {exc}") from None
        return await self.send_packed(data)

    def send_packed(self, data: bytes) -> Awaitable[Any]:
        """Send one command already packed as RESP; its reply is the awaitable's. For a caller
        that packs the part of a command that never changes once (`ScriptRunner._send_tail`).
        On an open socket the command is written now and the awaitable is its reply's future
        (no coroutine between: the hot path of `Queue.add`); else it connects first."""
        proto = self._proto
        # `loop.is_running()` instead of comparing with `asyncio.get_running_loop()`, which
        # makes a getpid() system call: a connection made on a loop that has stopped (closed,
        # or another `asyncio.run`) is replaced
        if proto is None or proto.closed or not proto.loop.is_running():
            return self._send_packed_later(data)
        return proto.send(data)

    async def _send_packed_later(self, data: bytes) -> Any:
        proto = await self._reconnect()
        return await proto.send(data)

    async def connect(self) -> None:
        """Open the socket now unless it is open (raises as a command would)."""
        proto = self._proto
        if proto is None or proto.closed or not proto.loop.is_running():
            await self._reconnect()

    async def execute_on(self, key: Any, *args: Any) -> Any:
        """Send a command without keys (`INFO`) to the server that holds `key`: here, the one
        server (a cluster's connection picks the master of the key's slot)."""
        del key
        return await self.execute(*args)

    async def execute_many(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send commands back to back on the socket (no other caller's command between
        them: what `ASKING` and `WAIT` need) and return each reply or error, in order."""
        try:
            packed = [hiredis.pack_command(args) for args in commands]
        except TypeError as exc:
            raise DataError(f"invalid command argument: {exc}") from None
        proto = self._proto
        if proto is None or proto.closed or not proto.loop.is_running():
            proto = await self._reconnect()
        futures = proto.send_many(packed)
        # awaited in order, not gathered: the replies come in order, and a task awaiting a
        # future is woken one loop turn sooner than through a gather (a take behind a block
        # is on the latency path)
        replies: list[Any] = []
        try:
            for fut in futures:
                try:
                    replies.append(await fut)
                except Exception as exc:  # each reply or its error, in order
                    replies.append(exc)
        except BaseException:  # cancelled: the replies still to come are dropped
            for fut in futures:
                if not fut.cancel() and not fut.cancelled():
                    fut.exception()  # retrieved: an error nobody reads is not logged
            raise
        return replies

    async def _reconnect(self) -> RespProtocol:
        loop = asyncio.get_running_loop()
        old = self._proto
        if old is not None and not old.closed and old.loop is not loop:
            old.close()  # made on another (likely closed) event loop
        task = self._connecting
        if task is None or task.get_loop() is not loop:
            task = self._connecting = loop.create_task(self._open())
            task.add_done_callback(self._connected)
        # shielded: a cancelled caller does not cancel the connect the others wait for
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if task.cancelled() and (me is None or me.cancelling() == 0):
                # not this caller's cancellation: `close()` stopped the connect
                raise RedisConnectionError("connection closed while connecting") from None
            raise

    def _connected(self, task: asyncio.Task[RespProtocol]) -> None:
        if self._connecting is task:
            self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._proto = task.result()

    async def _open(self) -> RespProtocol:
        loop = asyncio.get_running_loop()
        where = f"unix socket {self.path}" if self.path else f"{self.host}:{self.port}"

        def factory() -> RespProtocol:
            return RespProtocol(loop, self.command_timeout, self._reader_kwargs)

        try:
            async with asyncio.timeout(self.connect_timeout):
                if self.path:
                    _, proto = await loop.create_unix_connection(factory, self.path)
                else:
                    _, proto = await loop.create_connection(
                        factory, self.host, self.port, ssl=self.tls,
                        server_hostname=self.host if self.tls is not None else None,
                    )  # fmt: skip
                if self.socket_keepalive and proto.transport is not None:
                    sock = proto.transport.get_extra_info("socket")
                    if sock is not None:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                try:
                    await self._handshake(proto)
                except BaseException:
                    proto.close()
                    raise
        except TimeoutError as exc:  # the builtin one, from asyncio.timeout
            raise RedisTimeoutError(f"timed out connecting to redis at {where}") from exc
        except OSError as exc:
            raise RedisConnectionError(f"error connecting to redis at {where}: {exc}") from exc
        return proto

    async def _handshake(self, proto: RespProtocol) -> None:
        commands: list[tuple[Any, ...]] = []
        if self.password is not None:
            if self.username:
                commands.append(("AUTH", self.username, self.password))
            else:
                commands.append(("AUTH", self.password))
        if self.db:
            commands.append(("SELECT", self.db))
        if self.client_name:
            commands.append(("CLIENT", "SETNAME", self.client_name))
        futures = [proto.send(hiredis.pack_command(cmd)) for cmd in commands]
        # pipelined: one round trip; every reply is read, the first error is raised
        for result in await asyncio.gather(*futures, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result

    async def aclose(self) -> None:
        """Close the connection (a later command opens a new one)."""
        self.close()

    def close(self) -> None:
        """Close the connection now; commands in flight fail with ConnectionError."""
        task, self._connecting = self._connecting, None
        if task is not None and not task.done():
            task.cancel()
        proto, self._proto = self._proto, None
        if proto is not None:
            proto.close()
