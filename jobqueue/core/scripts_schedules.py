"""The schedulers' scripts of a queue (upsert, due, tick, remove): one method per script, as in
`jobqueue.core.scripts`. The schedule itself (what an interval or a cron expression means, the
missed-ticks policy) is `jobqueue.schedules`'; these methods only move its state atomically."""

from __future__ import annotations

from dataclasses import dataclass

from ._runner import ScriptRunner, spec
from .codec import text

__all__ = ["DueSchedulers", "ScheduleScripts", "TickCode"]

TickCode = int
"""What `tick` did: 1 added the tick's job; 2 its job existed already (the scheduler advanced);
0 the tick was produced by someone else or is not due (no job; the zset entry is set to the
stored next run); -1 no such scheduler;
-2 the following run is not after the tick (nothing changed)."""


@dataclass(frozen=True, slots=True)
class DueSchedulers:
    """Schedulers whose next run is due, on the Redis clock.

    Attributes:
        now_ms: the Redis time of the read.
        due: (scheduler id, its next run in ms) of each due scheduler.
        wait_ms: ms until the first scheduler that is not due yet (-1 = none).
    """

    now_ms: int
    due: list[tuple[str, int]]
    wait_ms: int


class ScheduleScripts(ScriptRunner):
    """The scripts that keep a queue's schedulers (see `jobqueue.schedules`)."""

    SCHEDULER_UPSERT = spec(
        "scheduler_upsert",
        keys="schedulers scheduler(id) id_counter",
        argv="id schedule every_ms cron tz name envelope priority cost next_ms",
    )

    async def scheduler_upsert(
        self,
        scheduler_id: str,
        *,
        spec: str,
        every_ms: int | None,
        cron: str,
        tz: str,
        name: str,
        envelope: str,
        priority: int,
        cost: str,
        next_ms: int | None,
    ) -> tuple[int, bool]:
        """Create or change a scheduler; returns (its next run in ms, whether it was kept
        because the spec did not change)."""
        keys = [
            self.keys.schedulers,
            self.keys.scheduler(scheduler_id),
            self.keys.id_counter,
        ]
        nxt, kept = await self._call(
            self.SCHEDULER_UPSERT,
            keys=keys,
            id=scheduler_id,
            schedule=spec,
            every_ms="" if every_ms is None else every_ms,
            cron=cron,
            tz=tz,
            name=name,
            envelope=envelope,
            priority=priority,
            cost=cost,
            next_ms="" if next_ms is None else next_ms,
        )
        return int(text(nxt)), int(kept) == 1

    SCHEDULER_REMOVE = spec("scheduler_remove", keys="schedulers scheduler(id)", argv="id")

    async def scheduler_remove(self, scheduler_id: str) -> bool:
        """Delete a scheduler; False when there was none."""
        keys = [self.keys.schedulers, self.keys.scheduler(scheduler_id)]
        return int(await self._call(self.SCHEDULER_REMOVE, keys=keys, id=scheduler_id)) == 1

    SCHEDULER_DUE = spec("scheduler_due", keys="schedulers", argv="limit")

    async def scheduler_due(self, limit: int) -> DueSchedulers:
        """Up to `limit` due schedulers, and how long until the next one is due."""
        reply = await self._call(self.SCHEDULER_DUE, limit=limit)
        pairs = reply[2:]
        due = [(text(pairs[i]), int(float(text(pairs[i + 1])))) for i in range(0, len(pairs), 2)]
        return DueSchedulers(int(reply[0]), due, int(reply[1]))

    SCHEDULER_TICK = spec(
        "scheduler_tick",
        keys="schedulers scheduler(id) wait prio priorities id_counter marker events costs jobs",
        argv="base maxlen id expected following",
        events="added",
    )

    async def scheduler_tick(
        self, scheduler_id: str, *, expected: int, following: int
    ) -> tuple[TickCode, int]:
        """Add the job of the tick at `expected` and move the scheduler's next run to
        `following`, only if its next run is still `expected` and due. Returns (code, the
        stored next run in ms); see `TickCode`."""
        k = self.keys
        keys = [
            k.schedulers,
            k.scheduler(scheduler_id),
            k.wait,
            k.prio,
            k.priorities,
            k.id_counter,
            k.marker,
            k.events,
            k.costs,
            k.jobs,
        ]
        code, nxt = await self._call(
            self.SCHEDULER_TICK,
            keys=keys,
            id=scheduler_id,
            expected=expected,
            following=following,
            **self._queue,
        )
        return int(code), int(float(text(nxt)))
