"""Throughput and failure rate of a queue over the last hour, counted from its event stream.

Nothing in the engine keeps per-minute counters, and none is needed: every end of a job is an
entry of the queue's stream (`completed`, `failed`, `retrying`), and stream ids are times, so
`XRANGE <one hour ago> +` reads exactly the last hour. The first read of a queue reads the
hour; later reads only what came after the last entry seen (counts kept per minute, minutes
older than an hour dropped), so a refresh costs the entries added since the previous one.

A stream is capped (`QueueConfig.events_maxlen`): when a busy queue's stream holds less than
an hour, `QueueRate.window` says how many seconds it does cover.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from ..core.codec import text

__all__ = ["QueueRate", "Throughput"]

HOUR_MS = 3_600_000
_PAGE = 1000
_MAX_PAGES = 50  # at most 50,000 entries per refresh (a stream's default cap is 10,000)


@dataclass(frozen=True, slots=True)
class QueueRate:
    """A queue's last hour.

    Attributes:
        completed: jobs completed.
        failed: jobs failed for good.
        retried: attempts that failed and were retried.
        window: seconds covered (3600, or less when the stream was trimmed).
        per_minute: completed + failed per minute, oldest first (60 values).
    """

    completed: int
    failed: int
    retried: int
    window: float
    per_minute: tuple[int, ...]

    @property
    def failure_rate(self) -> float | None:
        """Failed / (completed + failed), None when nothing ended."""
        ended = self.completed + self.failed
        return self.failed / ended if ended else None

    @property
    def per_hour(self) -> float:
        """Jobs ended per hour (scaled up when the window is shorter)."""
        if self.window <= 0:
            return 0.0
        return (self.completed + self.failed) * 3600.0 / self.window


@dataclass
class _Counts:
    last_id: str = ""
    minutes: deque[list[int]] = field(default_factory=deque)  # [minute, completed, failed, retried]
    oldest_ms: int = 0


class Throughput:
    """Per-queue counters of the last hour, refreshed incrementally from the streams."""

    def __init__(self) -> None:
        self._by_stream: dict[str, _Counts] = {}

    async def read(self, redis: Redis, stream: str, now_ms: int) -> QueueRate:
        """Refresh the counters of `stream` up to now and return its last hour."""
        counts = self._by_stream.setdefault(stream, _Counts())
        since = now_ms - HOUR_MS
        start = f"({counts.last_id}" if counts.last_id else str(since)
        for _ in range(_MAX_PAGES):
            entries: Any = await redis.xrange(stream, min=start, max="+", count=_PAGE)
            for entry_id, raw in entries:
                eid = text(entry_id)
                minute = int(eid.split("-", 1)[0]) // 60_000
                ev = text(raw.get(b"ev", raw.get("ev", b"")))
                idx = {"completed": 1, "failed": 2, "retrying": 3}.get(ev)
                if idx is not None:
                    if not counts.minutes or counts.minutes[-1][0] != minute:
                        counts.minutes.append([minute, 0, 0, 0])
                    counts.minutes[-1][idx] += 1
                counts.last_id = eid
            if len(entries) < _PAGE:
                break
            start = f"({counts.last_id}"
        first_minute = since // 60_000
        while counts.minutes and counts.minutes[0][0] < first_minute:
            counts.minutes.popleft()
        window = 3600.0
        info = await _stream_info(redis, stream)
        if info is not None and info[0] > info[1]:  # entries were trimmed away
            first: Any = await redis.xrange(stream, min="-", max="+", count=1)
            if first:
                oldest = int(text(first[0][0]).split("-", 1)[0])
                if oldest > since:
                    window = max(1.0, (now_ms - oldest) / 1000)
        by_minute = {m[0]: m[1] + m[2] for m in counts.minutes}
        now_minute = now_ms // 60_000
        return QueueRate(
            completed=sum(m[1] for m in counts.minutes),
            failed=sum(m[2] for m in counts.minutes),
            retried=sum(m[3] for m in counts.minutes),
            window=window,
            per_minute=tuple(by_minute.get(now_minute - 59 + i, 0) for i in range(60)),
        )


async def _stream_info(redis: Redis, stream: str) -> tuple[int, int] | None:
    """(entries ever added, length) of a stream, None when it does not exist or the server
    does not report `entries-added` (before Redis 7)."""
    try:
        info: Any = await redis.xinfo_stream(stream)
    except Exception:  # no such key (ResponseError)
        return None
    added = info.get("entries-added", info.get(b"entries-added"))
    length = info.get("length", info.get(b"length"))
    if added is None or length is None:
        return None
    return int(added), int(length)
