"""An asyncio TCP proxy between the workers and Redis that misbehaves on request: resets every
connection, delays traffic, half-closes connections (one direction shut, the other left
open) and blackholes traffic (bytes swallowed, connections left open: a network partition).
"""

from __future__ import annotations

import asyncio
import contextlib

from servers import free_port

__all__ = ["ChaosProxy"]


class ChaosProxy:
    """Forwards 127.0.0.1:`port` to `target_port` until told to misbehave."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.delay = 0.0
        self.blackhole = False
        self._server: asyncio.Server | None = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.connections = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self.reset_all()

    def reset_all(self) -> int:
        """Abort every connection (an RST to both sides); returns how many."""
        conns, self._conns = self._conns, set()
        for a, b in conns:
            a.transport.abort()
            b.transport.abort()
        return len(conns)

    def half_close_all(self) -> int:
        """Shut the direction towards each client (it reads EOF) and leave the other open."""
        n = 0
        for client, _ in list(self._conns):
            with contextlib.suppress(OSError, RuntimeError):
                if client.can_write_eof():
                    client.write_eof()
                    n += 1
        return n

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._conns.add(pair)
        self.connections += 1

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError, RuntimeError):
                while data := await src.read(65536):
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    if self.blackhole:
                        continue  # swallowed: the sender waits for a reply that never comes
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError, RuntimeError):
                if dst.can_write_eof():
                    dst.write_eof()  # pass a half-close on

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._conns.discard(pair)
        writer.transport.abort()
        up_writer.transport.abort()
