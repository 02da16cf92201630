"""A queue's schedulers, mixed into `Queue`: upsert, list, remove."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from .._encode import encode_job
from ..config import QueueConfig
from ..core.codec import decode_envelope
from ..core.codec import text as _s
from ..core.connection import server_time
from ..core.keys import QueueKeys
from ..core.scripts import Scripts
from ..errors import InvalidJobError
from ._model import Schedule, ms_to_datetime
from ._spec import make_spec, validate_scheduler_id

__all__ = ["QueueSchedulesMixin"]

_FIELDS = ("every", "cron", "tz", "name", "env", "priority", "next", "last")


class QueueSchedulesMixin:
    """Schedulers of `Queue`: jobs added on an interval or a cron schedule, exactly one per
    tick across every worker (see `jobqueue.schedules`)."""

    # provided by Queue
    redis: Redis
    keys: QueueKeys
    config: QueueConfig
    scripts: Scripts

    async def upsert_scheduler(
        self,
        scheduler_id: str,
        *,
        every: float | None = None,
        cron: str | None = None,
        tz: str = "UTC",
        name: str,
        data: Any = None,
        attempts: int | None = None,
        priority: int = 0,
        cost: Mapping[str, float] | None = None,
    ) -> Schedule:
        """Create or change a scheduler that adds a job `name`/`data` on each tick.

        Exactly one job per tick, however many workers and processes tick the queue: every
        `Worker` of the queue runs the scheduler (`Worker(scheduler_interval=)`); a tick's job
        is added by one atomic script that checks the tick is due on the Redis clock, adds the
        job under the id `sched:<scheduler_id>:<tick ms>` and advances the next run, only if
        no other worker advanced it first. The schedule lives in Redis, so it survives
        restarts of every process.

        Missed ticks (no worker ran while one or more ticks fell due): the first missed tick
        is produced once, standing for the whole missed period, and the schedule then resumes
        at its next future run (BullMQ's and Celery beat's behaviour); no burst of catch-up
        jobs.

        Upserting again with the same `every` / `cron` + `tz` keeps the next run time (only
        the job's name, data and options change): every process may upsert its schedulers at
        start without skipping or repeating a tick. A changed schedule starts over from now.

        Args:
            scheduler_id: the scheduler's id (1-100 letters, digits, '_', '.', '-').
            every: an interval in seconds (first run one interval from now; then on that
                grid).
            cron: a cron expression (5 fields, or 6 with seconds last), parsed by `croniter`.
            tz: the IANA time zone the cron expression is read in (default UTC).
            name: the name of the job each tick adds.
            data: that job's data (any JSON value, at most `max_payload` bytes).
            attempts: that job's attempts (default: the queue's).
            priority: that job's priority.
            cost: that job's cost of the queue's shared limiter, per bucket (default: the
                queue's `QueueConfig.cost`).

        Returns:
            The scheduler as stored, with its next run time.

        Raises:
            ConfigError: a bad id, both or neither of every/cron, a bad interval, cron
                expression or time zone (nothing written).
            InvalidJobError: a bad name, data, attempts, priority or cost (nothing written).
        """
        validate_scheduler_id(scheduler_id)
        spec = make_spec(every, cron, tz)
        job = encode_job(self.config, name, data, None, 0.0, priority, attempts, cost)
        next_ms = None
        if spec.cron is not None:
            seconds, micros = await server_time(self.redis, key=self.keys.meta)
            next_ms = spec.first_run(int(seconds) * 1000 + int(micros) // 1000)
        await self.scripts.scheduler_upsert(
            scheduler_id,
            spec=spec.canonical,
            every_ms=spec.every_ms,
            cron=spec.cron or "",
            tz=spec.tz,
            name=name,
            envelope=job.envelope,
            priority=priority,
            cost=job.cost,
            next_ms=next_ms,
        )
        found = await self.get_scheduler(scheduler_id)
        if found is None:  # removed by someone else between the two calls
            raise InvalidJobError(f"scheduler {scheduler_id!r} was removed while upserting")
        return found

    async def get_scheduler(self, scheduler_id: str) -> Schedule | None:
        """One scheduler of this queue, or None."""
        raw = await self.redis.hmget(self.keys.scheduler(scheduler_id), list(_FIELDS))
        return self._schedule(scheduler_id, raw)

    async def get_schedulers(self) -> list[Schedule]:
        """Every scheduler of this queue, soonest next run first."""
        ids = [_s(x) for x in await self.redis.zrange(self.keys.schedulers, 0, -1)]
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for scheduler_id in ids:
                pipe.hmget(self.keys.scheduler(scheduler_id), list(_FIELDS))
            rows = await pipe.execute()
        found = (self._schedule(i, raw) for i, raw in zip(ids, rows, strict=True))
        return [s for s in found if s is not None]

    async def remove_scheduler(self, scheduler_id: str) -> bool:
        """Stop a scheduler (jobs it added stay); False when there was none."""
        return await self.scripts.scheduler_remove(scheduler_id)

    def _schedule(self, scheduler_id: str, raw: list[Any]) -> Schedule | None:
        values = dict(zip(_FIELDS, (None if v is None else _s(v) for v in raw), strict=True))
        if values["next"] is None or values["env"] is None:
            return None
        env = decode_envelope(values["env"])
        every = values["every"]
        return Schedule(
            id=scheduler_id,
            queue=self.config.name,
            every=int(every) / 1000 if every else None,
            cron=values["cron"] or None,
            tz=values["tz"] or "UTC",
            name=str(env["n"]),
            data=env.get("d"),
            attempts=env.get("at"),
            priority=int(values["priority"] or 0),
            next_run=ms_to_datetime(int(float(values["next"]))),
            last_run=ms_to_datetime(int(float(values["last"]))) if values["last"] else None,
        )
