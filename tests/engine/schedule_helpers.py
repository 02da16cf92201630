"""Helpers of the schedule tests: the ticks a scheduler produced, read back from Redis, and the
check that they follow the stated policy (one job per tick; a tick produced late stands for the
ticks it missed, and the next one is the first run after it was produced)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import pairwise

from jobqueue import JobState, Queue


@dataclass(frozen=True)
class Tick:
    job_id: str
    tick_ms: int
    created_ms: int


async def ticks_of(queue: Queue, scheduler_id: str) -> list[Tick]:
    """Every job the scheduler added (whatever its state), by tick time."""
    head = f"sched:{scheduler_id}:"
    ids: set[str] = set()
    for state in (JobState.WAITING, JobState.ACTIVE, JobState.COMPLETED, JobState.FAILED):
        ids |= {i for i in await queue.get_job_ids(state, limit=10_000) if i.startswith(head)}
    out = []
    for job_id in ids:
        raw = await queue.redis.hget(queue.keys.jobs, job_id)
        if raw is not None:
            out.append(Tick(job_id, int(job_id[len(head) :]), int(json.loads(raw)["ts"])))
    return sorted(out, key=lambda t: t.tick_ms)


def check_interval_ticks(ticks: list[Tick], every_ms: int) -> None:
    """One job per tick, on the grid, none skipped but those a late tick stood for (see
    `ScheduleSpec.following`)."""
    assert len({t.tick_ms for t in ticks}) == len(ticks)
    for a, b in pairwise(ticks):
        assert (b.tick_ms - a.tick_ms) % every_ms == 0, (a, b)
        assert a.created_ms >= a.tick_ms, a  # never produced before it was due
        # nothing skipped but ticks already past when this one was produced (coalesced): the
        # next one is at the latest the first run after this one's production (earlier when
        # the producing worker read the clock a while before its script ran: that tick was
        # then due, and produced too)
        missed = (a.created_ms - a.tick_ms) // every_ms
        assert b.tick_ms <= a.tick_ms + (missed + 1) * every_ms, (a, b, missed)
