"""Live updates: `GET /events`, server-sent events read from the queues' event streams.

One blocking XREAD over every queue's stream (on a connection of its own) feeds the browser:

- `job`: `{"q": queue, "id": job id, "ev": event, "st": new state}` per job event;
- `counts`: `{queue: {"counts": {state: n}, "paused": bool}}`, after events (at most every
  `sse_counts_interval` seconds) and after each idle read, so counts stay right even for
  changes the browser missed.

The stream ends after `sse_max_seconds` (the browser's EventSource reconnects), when the
browser goes away (the response is cancelled) or when the app stops. `Last-Event-ID` is not
replayed: a reconnect starts with fresh counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..core.codec import text
from ..core.connection import dedicated_client
from ..events import Event, last_event_id
from ..queue import Queue
from ._state import Dashboard

__all__ = ["JOB_STATE_OF_EVENT", "events"]

JOB_STATE_OF_EVENT = {
    "added": "waiting",
    "active": "active",
    "completed": "completed",
    "failed": "failed",
    "retrying": "waiting",
    "removed": "removed",
    "waiting": "waiting",
    "stalled": "waiting",
    "returned": "waiting",
}
"""A job's state after an event without an `st` field."""

SINCE_MAX_AGE = 60.0
"""Seconds back a subscription may start (see `_since`)."""
_MAX_JOB_EVENTS = 200  # per read: a busy queue's browser gets the counts, not every event


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _counts(queues: list[Queue]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for queue in queues:
        out[queue.name] = {
            "counts": await queue.get_job_counts(),
            "paused": await queue.is_paused(),
        }
    return out


def _job_message(queue: str, event: Event) -> dict[str, str] | None:
    if event.job_id is None:
        return None
    state = event.fields.get("st") or JOB_STATE_OF_EVENT.get(event.event)
    if state is None:
        return None
    return {"q": queue, "id": event.job_id, "ev": event.event, "st": state}


async def _stream(dash: Dashboard, queues: list[Queue], since: int) -> AsyncIterator[bytes]:
    opts = dash.options
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + opts.sse_max_seconds
    by_stream = {queue.keys.events: queue for queue in queues}
    positions: dict[Any, Any] = {}
    for key in by_stream:
        positions[key] = f"{since}-0" if since else await last_event_id(dash.redis, key)
    client = dedicated_client(dash.redis, socket_timeout=opts.sse_block + 10.0)
    try:
        yield b"retry: 2000\n\n"
        yield _sse("counts", await _counts(queues))
        last_counts = loop.time()
        dirty = False
        while loop.time() < ends_at and not dash.stopping.is_set():
            block = opts.sse_block
            if dirty:  # counts are owed: wait no longer than until they are due
                block = max(0.001, min(block, last_counts + opts.sse_counts_interval - loop.time()))
            reply: Any = None
            read: asyncio.Future[Any] = asyncio.ensure_future(
                client.xread(positions, block=max(1, int(block * 1000)), count=500)
                if positions
                else asyncio.sleep(block)
            )
            stop = asyncio.ensure_future(dash.stopping.wait())
            try:
                # the app stopping ends the stream at once, not after the read's block
                await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                if not read.done():
                    read.cancel()
            if not read.done() or read.cancelled():
                return
            reply = read.result()
            sent = 0
            for stream, entries in reply or []:
                key = text(stream)
                queue = by_stream[key]
                for entry_id, raw in entries:
                    positions[key] = text(entry_id)
                    dirty = True
                    message = _job_message(queue.name, Event.from_entry(entry_id, raw))
                    if message is not None and sent < _MAX_JOB_EVENTS:
                        sent += 1
                        yield _sse("job", message)
            due = loop.time() - last_counts >= opts.sse_counts_interval
            if (dirty and due) or not reply:
                yield _sse("counts", await _counts(queues))
                last_counts = loop.time()
                dirty = False
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


def _since(request: Request) -> int:
    """`?since=<ms>`: the page was rendered then; events after it are sent, so none that
    happened between the render and the subscription is missed (a replayed one is harmless:
    states are set, not toggled). Older than `SINCE_MAX_AGE` (a reconnect much later) or
    unreadable: from now on."""
    try:
        since = int(request.query_params.get("since", "0"))
    except ValueError:
        return 0
    if since <= 0 or time.time() * 1000 - since > SINCE_MAX_AGE * 1000:
        return 0
    return since


async def events(request: Request) -> Response:
    """`GET /events[?queue=a&queue=b][&since=ms]`: the event stream of the given queues
    (default: all)."""
    dash: Dashboard = request.app.state.dashboard
    wanted = request.query_params.getlist("queue")
    queues = []
    for name in wanted or await dash.queue_names():
        queue = await dash.queue(name)
        if queue is not None:
            queues.append(queue)
    return StreamingResponse(
        _stream(dash, queues, _since(request)),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )
