"""Ticking a queue's schedulers: what every `Worker` runs beside its main loop.

Each pass reads the due schedulers (Redis clock), computes each one's following run in Python
(`croniter` for cron), and asks `scheduler_tick` to add the tick's job and advance the
scheduler, only if its next run is still the tick read (compare-and-set). Of any number of
workers racing for one tick, exactly one adds its job; the others find the next run moved and
do nothing. The loop never ends on an error: it logs, backs off and carries on.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from ..core._aio import raise_if_cancelling
from ..core.backoff import exponential_delay
from ..core.codec import text as _s
from ..core.connection import REDIS_ERRORS
from ..core.redact import redact
from ..errors import ConfigError
from ..queue import Queue
from ._spec import ScheduleSpec, make_spec

__all__ = ["check_scheduler_interval", "run_schedulers", "tick_schedulers"]

log = logging.getLogger(__name__)

_BATCH = 100


def check_scheduler_interval(interval: float | None) -> float | None:
    """`Worker(scheduler_interval=)`: seconds in (0, 3600), or None (no ticking)."""
    if interval is not None and (
        isinstance(interval, bool)
        or not isinstance(interval, int | float)
        or not 0 < interval < 3600
    ):
        raise ConfigError(
            f"scheduler_interval must be seconds in (0, 3600) or None, got {interval!r}"
        )
    return interval


async def _spec_of(queue: Queue, scheduler_id: str) -> ScheduleSpec | None:
    every, cron, tz = await queue.redis.hmget(
        queue.keys.scheduler(scheduler_id), ["every", "cron", "tz"]
    )
    if every is None and cron is None:
        return None  # removed meanwhile: the tick script drops its zset entry
    if every is not None and _s(every):
        return make_spec(int(_s(every)) / 1000, None, _s(tz or b"UTC"))
    return make_spec(None, _s(cron or b""), _s(tz or b"UTC"))


async def tick_schedulers(queue: Queue) -> tuple[int, int]:
    """Produce the job of every due tick of `queue`'s schedulers (at most one per scheduler
    per call; a later call produces the next).

    Returns:
        (jobs added by this call, ms until the next scheduler is due: -1 = none, 0 = call
        again now).
    """
    due = await queue.scripts.scheduler_due(_BATCH)
    added = 0
    progressed = False
    wait_ms = due.wait_ms
    for scheduler_id, expected in due.due:
        try:
            spec = await _spec_of(queue, scheduler_id)
            following = (
                expected + 1
                if spec is None
                else spec.following(expected, max(due.now_ms, expected))
            )
        except ValueError as exc:  # a stored spec this version cannot read: leave it be
            log.error("scheduler %s:%s: %s", queue.name, scheduler_id, redact(str(exc)))
            continue
        code, nxt = await queue.scripts.scheduler_tick(
            scheduler_id, expected=expected, following=following
        )
        if code == 1:
            added += 1
            log.debug("scheduler %s:%s: tick %d added", queue.name, scheduler_id, expected)
        elif code == 2:
            log.info(
                "scheduler %s:%s: the job of tick %d existed already", queue.name, scheduler_id,
                expected,
            )  # fmt: skip
        if code > 0:  # advanced: wake for its next run (a tick lost to a race tells nothing)
            progressed = True
            left = max(0, nxt - due.now_ms)
            wait_ms = left if wait_ms < 0 else min(wait_ms, left)
    if len(due.due) >= _BATCH and progressed:
        wait_ms = 0  # more may be due: the next batch at once
    return added, wait_ms


async def run_schedulers(
    queue: Queue,
    *,
    interval: float,
    backoff: tuple[float, float] = (0.1, 5.0),
    on_error: Callable[[BaseException], None] | None = None,
    on_ok: Callable[[], None] | None = None,
) -> None:
    """Tick `queue`'s schedulers until cancelled: whenever one is due, else every `interval`
    seconds at most (a scheduler added meanwhile is seen within `interval`).

    Never ends on an error (Redis away, a failover, a bug): logs it, backs off exponentially
    within `backoff` (first, max seconds), and carries on. `on_error` is called with each
    error, `on_ok` after each good pass; a caller that passes `on_ok` follows the loop's
    health and logs its errors itself (a worker does, rate-limited): the loop does not.
    """
    rng = random.Random()
    failures = 0
    while True:
        try:
            _, wait_ms = await tick_schedulers(queue)
            raise_if_cancelling()  # redis-py on 3.11 may have dropped our task's cancel
        except Exception as exc:
            failures += 1
            lo, hi = backoff
            delay = exponential_delay(lo, failures, cap=hi, jitter=0.25, rng=rng)
            level = logging.WARNING if isinstance(exc, REDIS_ERRORS) else logging.ERROR
            if on_ok is None:
                log.log(
                    level,
                    "scheduler of queue %s: %s; retrying in %.2fs",
                    queue.name,
                    redact(f"{type(exc).__name__}: {exc}"),
                    delay,
                    exc_info=level == logging.ERROR,
                )
            if on_error is not None:
                try:
                    on_error(exc)
                except Exception:  # a hook that raises is not the loop's problem
                    log.exception("scheduler on_error hook raised")
            raise_if_cancelling()
            await asyncio.sleep(delay)
            continue
        failures = 0
        if on_ok is not None:
            on_ok()
        sleep = interval if wait_ms < 0 else min(interval, wait_ms / 1000)
        await asyncio.sleep(sleep)
