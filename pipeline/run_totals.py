"""The totals of one `python -m pipeline run` command over its runs: spend, cached share of the
prompt tokens, 429s received, circuit-breaker openings and wall time.

The 429s are read from the queues' event streams (each 429 a job receives is one `retrying`
event with error type RATE_LIMIT, or a `failed` one when its deferrals ran out); the breaker
openings are the difference of each shared limiter's `openings` counter between the start and
the end of the command (`take_baseline` before the runs, `command_totals` after).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from redis.exceptions import ResponseError

from jobqueue import ErrorType, Event, Queue
from pipeline.runtime import Runtime
from pipeline.status import get_jobs_by_related_id
from pipeline.usage_report import CacheShare, cache_share

__all__ = [
    "Baseline",
    "CommandTotals",
    "RateLimited",
    "breaker_openings",
    "command_totals",
    "count_rate_limited",
    "take_baseline",
]

#: stream entries read per XRANGE round trip
_PAGE = 1000

_USAGE = """
SELECT count(*) AS calls, coalesce(sum(cost_usd), 0) AS cost
FROM llm_usage WHERE related_id = ANY($1::text[])
"""
_RUNS = """
SELECT count(*) FILTER (WHERE status = 'completed') AS completed,
       coalesce(sum(spent_usd), 0) AS spent
FROM sector_analysis WHERE id = ANY($1::uuid[])
"""


@dataclass(frozen=True)
class Baseline:
    """What the counters were when the command started.

    Attributes:
        since_ms: The Redis clock then (stream ids are milliseconds of that clock).
        openings: Breaker openings so far per shared limiter with a breaker (by name).
    """

    since_ms: int
    openings: dict[str, int]


@dataclass(frozen=True)
class RateLimited:
    """The 429s the jobs received.

    Attributes:
        count: RATE_LIMIT `retrying`/`failed` events found.
        jobs: How many jobs they were counted among (None: every job of the window).
        complete: False when a stream lost entries of the window to its length cap (the count
            is then a lower bound).
    """

    count: int
    jobs: int | None
    complete: bool = True


@dataclass(frozen=True)
class CommandTotals:
    """What a command's runs cost and met, for the end of its summary.

    Attributes:
        runs: Runs started.
        completed: Runs whose status is `completed`.
        calls: Model calls recorded in `llm_usage`.
        cost_usd: Their cost (`llm_usage.cost_usd`; zero for the offline model).
        budget_spent_usd: What the runs' budgets counted (the offline model's calls priced as
            the configured models).
        cache: The runs' prompt tokens by how they were billed.
        rate_limited: The 429s received.
        openings: Breaker openings during the command per limiter; None when no queue has a
            shared limiter with a breaker.
        seconds: Wall time of the command.
    """

    runs: int
    completed: int
    calls: int
    cost_usd: float
    budget_spent_usd: float
    cache: CacheShare
    rate_limited: RateLimited
    openings: dict[str, int] | None
    seconds: float

    def lines(self, *, cached: bool = True) -> list[str]:
        """The totals as lines for people (`cached=False` leaves out the cached-input line,
        for a summary that printed it already)."""
        spend = f"spend: ${self.cost_usd:.4f} in {self.calls} model calls (llm_usage)"
        if self.budget_spent_usd > 0 and not self.cost_usd:
            # the offline model costs nothing; its calls are priced for the budgets all the same
            spend += (
                f"; budgets counted ${self.budget_spent_usd:.2f} "
                "(offline: priced as the configured models)"
            )
        rl = self.rate_limited
        among = (
            "of any job, in the command's time window"
            if rl.jobs is None
            else f"among the {rl.jobs} jobs of these runs"
        )
        count = str(rl.count) if rl.complete else f"at least {rl.count}"
        trimmed = "" if rl.complete else "; events trimmed from a capped stream"
        if self.openings is None:
            breaker = "breaker openings: 0 (no breaker configured)"
        else:
            each = ", ".join(f"{name} {n}" for name, n in sorted(self.openings.items()))
            breaker = f"breaker openings: {sum(self.openings.values())} ({each})"
        lines = [
            f"runs: {self.completed} of {self.runs} completed",
            spend,
            self.cache.line(),
            f"429s received: {count} (RATE_LIMIT events {among}{trimmed})",
            breaker,
            f"wall time: {self.seconds:.1f}s",
        ]
        return lines if cached else [line for line in lines if line != self.cache.line()]


def _limiter_queues(rt: Runtime) -> list[Queue]:
    """One queue per distinct shared limiter (queues on one limiter share its breaker key)."""
    seen: dict[str, Queue] = {}
    for queue in rt.queues.values():
        if queue.config.limiter is not None:
            seen.setdefault(queue.keys.breaker, queue)
    return list(seen.values())


async def breaker_openings(rt: Runtime) -> dict[str, int]:
    """Openings so far of each shared limiter's breaker, by limiter name (limiters without a
    breaker are left out; empty when no queue has a shared limiter)."""
    openings: dict[str, int] = {}
    for queue in _limiter_queues(rt):
        state = await queue.get_limiter_state()
        if state.breaker is not None:
            openings[state.name] = state.breaker.openings
    return openings


async def _redis_ms(rt: Runtime) -> int:
    sec, usec = await rt.redis.time()
    return int(sec) * 1000 + int(usec) // 1000


async def take_baseline(rt: Runtime) -> Baseline:
    """Read the counters the totals are the difference of: call before starting the runs."""
    return Baseline(since_ms=await _redis_ms(rt), openings=await breaker_openings(rt))


def _is_429(event: Event) -> bool:
    return event.event in ("retrying", "failed") and event.fields.get("et") == ErrorType.RATE_LIMIT


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _trimmed_since(queue: Queue, since_ms: int) -> bool:
    """Whether the stream's length cap may have removed entries newer than `since_ms`: some
    were removed, and the oldest one left is newer (what was removed is older than it)."""
    try:
        info = await queue.redis.xinfo_stream(queue.keys.events)
    except ResponseError:  # no stream: no event was ever written, none was lost
        return False
    removed = int(info.get("entries-added") or 0) - int(info.get("length") or 0)
    first = info.get("first-entry")
    if removed <= 0 or not first:
        return removed > 0
    return int(_text(first[0]).split("-", 1)[0]) >= since_ms


async def count_rate_limited(
    queues: Iterable[Queue], since_ms: int, jobs: Iterable[tuple[str, str]] | None = None
) -> RateLimited:
    """Count the 429s jobs received since `since_ms` (Redis clock), from the event streams.

    Args:
        queues: The queues whose streams to read (each stream once, whatever the repeats).
        since_ms: Where to start reading (a stream id is `<ms>-<seq>`).
        jobs: Count the events of these jobs only, as (queue name, job id): a job id is unique
            in its queue only. None counts those of every job.

    Returns:
        The count, among how many jobs, and whether every event of the window was still there.
    """
    wanted = None if jobs is None else set(jobs)
    streams = {q.keys.events: q for q in queues}
    count, complete = 0, True
    for key, queue in streams.items():
        start = f"{since_ms}-0"
        while True:
            raw = await queue.redis.xrange(key, min=start, max="+", count=_PAGE)
            entries: list[Any] = list(raw or ())
            for entry_id, fields in entries:
                event = Event.from_entry(entry_id, fields)
                mine = wanted is None or (queue.name, event.job_id or "") in wanted
                if mine and _is_429(event):
                    count += 1
            if len(entries) < _PAGE:
                break
            start = "(" + _text(entries[-1][0])  # exclusive: the next page
        if await _trimmed_since(queue, since_ms):
            complete = False
    return RateLimited(count, None if wanted is None else len(wanted), complete)


async def command_totals(
    rt: Runtime, run_ids: Sequence[UUID], baseline: Baseline, seconds: float
) -> CommandTotals:
    """Read the totals of a command's runs.

    Args:
        rt: The runtime the runs ran on.
        run_ids: The runs (`sector_analysis.id`).
        baseline: What `take_baseline` read before the runs started.
        seconds: Wall time of the command.

    Returns:
        The totals.
    """
    ids = [str(r) for r in run_ids]
    usage = await rt.pool.fetchrow(_USAGE, ids)
    runs = await rt.pool.fetchrow(_RUNS, list(run_ids))
    shares = [await cache_share(rt.pool, r) for r in ids]
    cache = CacheShare(
        sum(s.calls for s in shares),
        sum(s.input_tokens for s in shares),
        sum(s.cache_read_tokens for s in shares),
        sum(s.cache_write_tokens for s in shares),
    )
    # the runs' jobs by their status rows (every stage's job of a run has the run as related id)
    jobs: set[tuple[str, str]] = set()
    async with rt.pool.acquire() as conn:
        for run in ids:
            for row in await get_jobs_by_related_id(run, conn=conn):
                # a row the mirror has not completed yet may lack its queue: its job type it is
                jobs.add((row.queue or row.job_type, row.job_id))
    rate_limited = await count_rate_limited(rt.queues.values(), baseline.since_ms, jobs)
    now = await breaker_openings(rt)
    openings = (
        {name: n - baseline.openings.get(name, 0) for name, n in now.items()} if now else None
    )
    return CommandTotals(
        runs=len(ids),
        completed=int(runs["completed"]),
        calls=int(usage["calls"]),
        cost_usd=float(usage["cost"]),
        budget_spent_usd=float(runs["spent"]),
        cache=cache,
        rate_limited=rate_limited,
        openings=openings,
        seconds=seconds,
    )
