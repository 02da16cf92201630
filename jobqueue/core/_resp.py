"""The socket side of `jobqueue.core.fastconn`: an `asyncio.Protocol` that writes packed
commands, parses replies with `hiredis` as they arrive and resolves the waiting futures in
order, and the mapping of error replies to redis-py's exception classes."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any, cast

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["RespProtocol"]

_NOT_ENOUGH = object()


def _fallback_parse_error(response: str) -> Exception:
    from redis.exceptions import BusyLoadingError, NoScriptError

    if response.startswith("NOSCRIPT "):
        return NoScriptError(response[9:])
    if response.startswith("LOADING "):
        return BusyLoadingError(response[8:])
    return ResponseError(response)


def _redis_py_parse_error() -> Callable[[str], Exception]:
    """redis-py's own table from error prefixes to exception classes (a private API: fall
    back to the few prefixes the engine depends on when it moves)."""
    try:
        from redis._parsers.base import BaseParser

        parse: Callable[[str], Exception] = BaseParser.parse_error
        if isinstance(parse("NOSCRIPT x"), ResponseError):
            return parse
    except Exception:  # pragma: no cover - another redis-py layout
        pass
    return _fallback_parse_error  # pragma: no cover


_parse_error = _redis_py_parse_error()


class _ReplyError(ResponseError):
    """An error reply as parsed by hiredis (nested ones stay this, like redis-py's)."""


def _to_error(reply: _ReplyError) -> Exception:
    return _parse_error(str(reply.args[0]) if reply.args else "")


class RespProtocol(asyncio.Protocol):
    """One socket: writes commands, parses replies, resolves futures in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, reader_kwargs: Any) -> None:
        self.loop = loop
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._reader = hiredis.Reader(
            protocolError=InvalidResponse,
            replyError=_ReplyError,
            notEnoughData=_NOT_ENOUGH,
            **reader_kwargs,
        )
        # (future, deadline) per command written or buffered, in send order
        self._pending: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self._buf: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio callbacks -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport: asyncio's, or uvloop's (which derives from none of asyncio's
        # transport classes, so no isinstance check)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        pending = self._pending
        while True:
            try:
                reply = reader.gets()
            except InvalidResponse as exc:
                self._abort(RedisConnectionError(f"protocol error from redis: {exc}"))
                return
            if reply is _NOT_ENOUGH:
                return
            if not pending:
                self._abort(RedisConnectionError("redis sent a reply nobody asked for"))
                return
            fut = pending.popleft()[0]
            if fut.done():  # its caller was cancelled; the reply is dropped, order is kept
                continue
            if type(reply) is _ReplyError:
                fut.set_exception(_to_error(reply))
            else:
                fut.set_result(reply)

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        reason = f": {exc}" if exc else ""
        self._fail_all(RedisConnectionError(f"connection to redis lost{reason}"))

    # -- sending ---------------------------------------------------------------------------

    def send(self, data: bytes) -> asyncio.Future[Any]:
        """Queue one packed command; its reply resolves the returned future."""
        self._write(data)
        # one future, inline: every command of the hot path comes through here
        fut = self.loop.create_future()
        deadline = self.loop.time() + self.timeout
        self._pending.append((fut, deadline))
        if self._timer is None:
            self._timer = self.loop.call_at(deadline, self._on_timer)
        return fut

    def send_many(self, packed: list[bytes]) -> list[asyncio.Future[Any]]:
        """Queue packed commands in one write (a `BZPOPMIN` and the script behind it reach
        Redis together); one future per command, in order."""
        self._write(b"".join(packed))
        deadline = self.loop.time() + self.timeout
        futures = [self.loop.create_future() for _ in packed]
        self._pending.extend((fut, deadline) for fut in futures)
        if self._timer is None:
            self._timer = self.loop.call_at(deadline, self._on_timer)
        return futures

    def _write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise RedisConnectionError("connection to redis is closed")
        if self._buf:
            self._buf.append(data)
        elif not self._pending:
            # idle connection: write now, the lowest latency for a lone command
            self.transport.write(data)
        else:
            # commands in flight: more may follow in this loop iteration, send them together
            self._buf.append(data)
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        if self._buf and self.transport is not None and not self.closed:
            data = b"".join(self._buf) if len(self._buf) > 1 else self._buf[0]
            self._buf.clear()
            self.transport.write(data)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._pending or self.closed:
            return
        deadline = self._pending[0][1]
        if self.loop.time() >= deadline:
            self._abort(RedisTimeoutError(f"no reply from redis within {self.timeout:g}s"))
        else:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    # -- closing ---------------------------------------------------------------------------

    def _fail_all(self, exc: Exception) -> None:
        self._buf.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, collections.deque()
        if self.loop.is_closed():
            return  # nobody can await these any more (and their callbacks cannot run)
        for fut, _ in pending:
            if not fut.done():
                fut.set_exception(exc)

    def _abort(self, exc: Exception) -> None:
        self.closed = True
        self._fail_all(exc)
        if self.transport is not None:
            try:
                self.transport.abort()
            except RuntimeError:  # its loop is closed already
                pass

    def close(self) -> None:
        """Close the socket; commands in flight fail with ConnectionError."""
        self._abort(RedisConnectionError("connection closed by the client"))
