"""Reading the queue's event stream, and waiting for a job to finish without polling.

Every state change is appended to the stream `<prefix>:{<queue>}:events` by the script that
makes it (field `ev` names it: added, active, progress, completed, failed, retrying, stalled,
returned, removed, cancelling, paused, resumed, obliterating). A reader keeps the id of the
last event it saw; reading again from that id (after a reconnect, or in a new process) misses
nothing still in the stream (its length is capped by `QueueConfig.events_maxlen`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    DataError,
    NoPermissionError,
)

from .core._aio import raise_if_cancelling
from .core.backoff import exponential_delay
from .core.codec import text as _s
from .core.connection import REDIS_ERRORS, dedicated_client
from .core.keys import QueueKeys
from .core.redact import redact
from .core.replies import JobRecord
from .core.scripts import Scripts
from .core.states import JobState
from .errors import JobFailedError, JobNotFoundError

__all__ = [
    "DEFAULT_BLOCK",
    "Event",
    "EventSource",
    "JobSource",
    "QueueEvents",
    "last_event_id",
    "wait_for_job",
]

log = logging.getLogger(__name__)

DEFAULT_BLOCK = 5.0
"""Seconds per blocking read of the event stream, by default (readers loop on as long as
they wait)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a queue's event stream.

    Attributes:
        id: the stream entry id (`<ms>-<seq>`); read again from it to resume.
        event: what happened (`added`, `active`, `completed`, `failed`, `removed`...).
        job_id: the job concerned, None for queue-level events (`paused`, `resumed`).
        fields: every field of the entry (`a` attempt, `et`/`em` error type and message,
            `st` new state, `p` progress, `reason`...).
        ts: when it happened, ms since the epoch on the Redis clock.
    """

    id: str
    event: str
    job_id: str | None
    fields: dict[str, str] = field(hash=False)
    ts: int

    @classmethod
    def from_entry(cls, entry_id: bytes | str, raw: Mapping[Any, Any]) -> Event:
        """Build an event from an XREAD/XRANGE entry."""
        fields = {_s(k): _s(v) for k, v in raw.items()}
        eid = _s(entry_id)
        try:
            ts = int(fields.get("ts") or eid.split("-", 1)[0])
        except ValueError:
            ts = 0
        return cls(eid, fields.get("ev", ""), fields.get("id"), fields, ts)


class EventSource(Protocol):
    """What `QueueEvents` needs of a queue."""

    @property
    def redis(self) -> Redis: ...

    @property
    def keys(self) -> QueueKeys: ...


class JobSource(EventSource, Protocol):
    """What `wait_for_job` needs of a queue."""

    @property
    def name(self) -> str: ...

    @property
    def scripts(self) -> Scripts: ...


async def last_event_id(redis: Redis, stream: str) -> str:
    """The id of the newest entry of `stream`, or `0-0` when it is empty or missing."""
    last = await redis.xrevrange(stream, "+", "-", count=1)
    return _s(last[0][0]) if last else "0-0"


# retrying these would only repeat them: the user must change a setting
_CONFIGURATION_ERRORS = (AuthenticationError, AuthorizationError, NoPermissionError, DataError)


class QueueEvents:
    """Async iterator over a queue's events, from a given stream id on.

        async with queue.events() as events:
            async for event in events:
                print(event.event, event.job_id)

    Reads with XREAD BLOCK on a connection of its own. Redis errors (a lost connection, a
    restart, `LOADING`, `BUSY`, a cluster's `CLUSTERDOWN` or `TRYAGAIN` at a failover) are
    logged and retried with backoff from the last id seen, so nothing still in the stream is
    missed; errors of configuration (a wrong password, a user without the rights) are raised.

    Args:
        queue: the queue (anything with `redis` and `keys`).
        last_id: read entries after this id; "$" = after the newest entry when iteration
            starts, "0" = from the oldest entry kept.
        block: seconds per blocking read (the iterator waits as long as needed).
        count: most entries read per call.
    """

    def __init__(
        self,
        queue: EventSource,
        *,
        last_id: str = "$",
        block: float = DEFAULT_BLOCK,
        count: int = 100,
    ) -> None:
        self._redis = queue.redis
        self._stream = queue.keys.events
        self._last_id = last_id
        self._block = block
        self._count = count
        self._client: Redis | None = None
        self._pending: asyncio.Future[Any] | None = None
        self._closed = False

    @property
    def last_id(self) -> str:
        """Id of the last event yielded (pass it as `last_id` to resume after it)."""
        return self._last_id

    async def __aenter__(self) -> QueueEvents:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop iterating (a pending read is interrupted) and close the connection."""
        self._closed = True
        pending = self._pending
        if pending is not None:
            pending.cancel()
            # let it take its cancellation: a task cancelled before its first step and never
            # run again leaves its read's coroutine "never awaited" when the loop ends
            await asyncio.wait({pending})
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def read(self) -> list[Event]:
        """Read the next batch of events (blocking up to `block` seconds; [] if none)."""
        if self._closed:
            return []
        if self._client is None:
            self._client = dedicated_client(self._redis, socket_timeout=self._block + 10.0)
        if self._last_id == "$":
            self._last_id = await last_event_id(self._client, self._stream)
        self._pending = asyncio.ensure_future(
            self._client.xread(
                {self._stream: self._last_id}, block=int(self._block * 1000), count=self._count
            )
        )
        try:
            reply = await self._pending
        finally:
            self._pending = None
        events: list[Event] = []
        for _stream, entries in reply or []:
            for entry_id, raw in entries:
                events.append(Event.from_entry(entry_id, raw))
        return events

    async def __aiter__(self) -> AsyncIterator[Event]:
        failures = 0
        while not self._closed:
            try:
                batch = await self.read()
                raise_if_cancelling()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._closed and (task is None or not task.cancelling()):
                    return  # close() interrupted the read
                raise
            except _CONFIGURATION_ERRORS:
                raise
            except REDIS_ERRORS as exc:
                if self._closed:
                    return
                failures += 1
                delay = exponential_delay(0.1, failures, cap=5.0, jitter=0.25)
                log.warning(
                    "events of %s: read failed (%s: %s); retrying in %.1fs",
                    self._stream,
                    type(exc).__name__,
                    redact(str(exc))[:200],
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            failures = 0
            for event in batch:
                self._last_id = event.id
                yield event


_FINAL_EVENTS = frozenset({"completed", "failed", "removed"})


def _finished(job_id: str, record: JobRecord | None, seen: Event | None) -> tuple[bool, Any]:
    """(True, result) once the job completed; raises once it failed or is gone."""
    if record is not None:
        rs = record.run_state
        if record.state == JobState.COMPLETED:
            raw = rs.get("r")
            return True, json.loads(raw) if raw not in (None, b"", "") else None
        if record.state == JobState.FAILED:
            et = rs.get("et")
            raise JobFailedError(job_id, _s(rs.get("em", b"")), _s(et) if et is not None else None)
        return False, None
    if seen is not None and seen.event in ("failed", "stalled"):
        f = seen.fields
        raise JobFailedError(job_id, f.get("em", ""), f.get("et"))
    if seen is not None and seen.event == "completed":
        raise JobNotFoundError(
            f"job {job_id} completed, but was removed (keep_completed) before its result could "
            "be read"
        )
    raise JobNotFoundError(f"job {job_id} not found")


async def wait_for_job(
    queue: JobSource, job_id: str, timeout: float | None = None, *, block: float = DEFAULT_BLOCK
) -> Any:
    """Wait until a job ends; return its result or raise. See `Job.wait_until_finished`."""
    async with asyncio.timeout(timeout):
        client = dedicated_client(queue.redis, socket_timeout=block + 10.0)
        try:
            return await _wait(queue, client, job_id, block)
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()


async def _wait(queue: JobSource, client: Redis, job_id: str, block: float) -> Any:
    stream = queue.keys.events
    # the stream position first, then the state: an end after the read is in the stream
    # (the dedicated client only connects if we come to block)
    last_id = await last_event_id(queue.redis, stream)
    record = await queue.scripts.get_job(job_id)
    seen: Event | None = None
    while True:
        try:
            done, result = _finished(job_id, record, seen)
        except JobNotFoundError as exc:
            raise JobNotFoundError(f"{exc} in queue {queue.name}") from None
        if done:
            return result
        reply: Any = await client.xread({stream: last_id}, block=int(block * 1000), count=500)
        raise_if_cancelling()  # e.g. the caller's timeout, should redis-py have dropped it
        # an idle block re-reads the state too: a safety net should the stream be trimmed
        # past our id or events be off (events_maxlen=0)
        recheck = not reply
        for _stream, entries in reply or []:
            for entry_id, raw in entries:
                last_id = _s(entry_id)
                if _s(raw.get(b"id", raw.get("id", b""))) != job_id:
                    continue
                ev = Event.from_entry(entry_id, raw)
                if ev.event in _FINAL_EVENTS or (
                    ev.event == "stalled" and ev.fields.get("st") == "failed"
                ):
                    seen = ev
                    recheck = True
        if recheck:
            record = await queue.scripts.get_job(job_id)
            raise_if_cancelling()
