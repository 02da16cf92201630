"""The frames between a worker and its isolated child processes: JSON only, never pickle.

A frame is one kind byte, a 4-byte big-endian length and that many bytes of UTF-8 JSON:

    parent -> child   H hello {sys_path, initializer, memory_limit, max_payload}
                      J job {id, name, data, attempt, ..., handler}
                      A answer to a request {rid, value} or {rid, error: {type, message}}
    child -> parent   K ready {pid}
                      Q request {rid, op, args}: the handler called job.update_progress...
                      R result: the body is the result's JSON itself
                      E error {type, module, message, error_type, retryable, ...}

The parent closes the child's stdin to ask it to exit; it kills a child whose job was
cancelled, timed out or lost its lease. A child's stdout is the frames' channel, so the child
points file descriptor 1 at stderr before a handler can print.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
from typing import Any, Final

__all__ = [
    "ANSWER",
    "ERROR",
    "HELLO",
    "JOB",
    "READY",
    "REQUEST",
    "RESULT",
    "frame",
    "read_frame",
    "write_all",
]

HELLO: Final = b"H"
JOB: Final = b"J"
ANSWER: Final = b"A"
READY: Final = b"K"
REQUEST: Final = b"Q"
RESULT: Final = b"R"
ERROR: Final = b"E"

_HEAD: Final = struct.Struct(">cI")


def frame(kind: bytes, body: Any) -> bytes:
    """One frame: `body` is JSON-encoded, unless it is already the JSON text (`str`)."""
    text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
    data = text.encode()
    return _HEAD.pack(kind, len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The next frame as (kind, raw JSON body).

    Raises:
        asyncio.IncompleteReadError: the other side closed the channel.
    """
    kind, size = _HEAD.unpack(await reader.readexactly(_HEAD.size))
    return kind, await reader.readexactly(size)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte to a blocking file descriptor (the child's side: it writes from its
    event loop's thread only, and the parent always reads)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
