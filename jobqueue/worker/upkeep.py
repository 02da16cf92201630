"""Starting a worker's upkeep: the loops that run beside its main loop (lease renewal, the
stall check, the heartbeat, the cancel listener, the scheduler ticks), each reporting its
errors to the worker's `WorkerHealth` and never ending on one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from ..queue import Queue
from ..schedules._loop import run_schedulers
from .cancels import cancel_listener
from .health import WorkerHealth
from .heartbeat import heartbeat_loop
from .leases import renew_loop, stall_loop
from .running import RunningJobs, WorkerStats

__all__ = ["start_upkeep"]


def start_upkeep(
    queue: Queue,
    *,
    running: RunningJobs,
    stats: WorkerStats,
    health: WorkerHealth,
    backoff: tuple[float, float],
    scheduler_interval: float | None,
    on_stalled: Callable[[str, str], None] | None,
    on_error: Callable[[BaseException], None],
) -> list[asyncio.Task[None]]:
    """Start the upkeep loops of the worker `stats.name` on the running loop; the caller
    cancels the returned tasks when the worker stops.

    Args:
        queue: the worker's queue.
        running: its running jobs.
        stats: its counters (what the heartbeat publishes).
        health: where every loop reports its errors and recoveries.
        backoff: (first, max) seconds between attempts of the loops that back off.
        scheduler_interval: seconds between looks for due scheduler ticks; None: no ticks.
        on_stalled: called with (job id, new state) per stalled job recovered.
        on_error: called with every error of the scheduler loop (the worker's hook).
    """
    scripts, config = queue.scripts, queue.config
    coros: dict[str, Coroutine[Any, Any, None]] = {
        "renew": renew_loop(scripts, running, config, health),
        "stall": stall_loop(
            scripts, config, owner=stats.name, on_stalled=on_stalled, health=health
        ),
        "beat": heartbeat_loop(queue, stats, running, health),
        "cancel": cancel_listener(queue.redis, queue.keys, running, backoff=backoff, health=health),
    }
    if scheduler_interval is not None:

        def on_sched_error(exc: BaseException) -> None:
            health.failed("scheduler", exc)
            on_error(exc)

        coros["sched"] = run_schedulers(
            queue, interval=scheduler_interval, backoff=backoff,
            on_error=on_sched_error, on_ok=lambda: health.ok("scheduler"),
        )  # fmt: skip
    loop = asyncio.get_running_loop()
    return [loop.create_task(c, name=f"jq-{k}-{stats.name}") for k, c in coros.items()]
