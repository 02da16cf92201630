"""What a worker's heartbeat says about it, as `Queue.get_workers` returns it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from .core.codec import text as _s

__all__ = ["WorkerInfo"]


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A live worker, as its last heartbeat described it.

    Attributes:
        name: the worker's name (`host:pid:random` by default).
        host, pid: where it runs.
        queues: the queues it works on.
        concurrency: jobs it runs at the same time at most.
        started_at: when it started (its own clock, UTC).
        completed, failed: jobs it finished so far, by outcome.
        running: jobs running at the last heartbeat.
        last_take_at: when it last took jobs (or reported outcomes); None if never.
        last_heartbeat: when it last beat.
        heartbeat_interval: seconds between its heartbeats.
        degraded: which of its loops met errors at its last heartbeat and why (e.g.
            "take/finish: QueueFullError: redis ... is out of memory"); None when all
            worked. The worker carries on meanwhile, backing off.
        degraded_since: when that began; None when not degraded.
    """

    name: str
    host: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    started_at: datetime
    completed: int
    failed: int
    running: int
    last_take_at: datetime | None
    last_heartbeat: datetime
    heartbeat_interval: float
    degraded: str | None = None
    degraded_since: datetime | None = None

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> WorkerInfo:
        """Build from the heartbeat hash (bytes or str keys and values)."""
        h = {_s(k): _s(v) for k, v in raw.items()}

        def num(key: str) -> int:
            try:
                return int(float(h.get(key) or 0))
            except ValueError:
                return 0

        try:
            queues = tuple(str(q) for q in json.loads(h.get("queues") or "[]"))
        except ValueError:
            queues = ()
        last_take = num("last_take")
        degraded_since = num("degraded_since")
        return cls(
            name=h.get("name", ""),
            host=h.get("host", ""),
            pid=num("pid"),
            queues=queues,
            concurrency=num("concurrency"),
            started_at=_dt(num("started")),
            completed=num("completed"),
            failed=num("failed"),
            running=num("running"),
            last_take_at=_dt(last_take) if last_take else None,
            last_heartbeat=_dt(num("beat")),
            heartbeat_interval=float(h.get("interval") or 0),
            degraded=h.get("degraded") or None,
            degraded_since=_dt(degraded_since) if degraded_since and h.get("degraded") else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (datetimes as ISO 8601 strings)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, datetime):
                out[key] = value.isoformat()
            elif isinstance(value, tuple):
                out[key] = list(value)
        return out
