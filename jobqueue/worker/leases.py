"""A worker's lease upkeep: renewing the leases of its running jobs (one call for all of them),
and the stall check that brings back the jobs of dead workers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..config import QueueConfig
from ..core._aio import raise_if_cancelling
from ..core.replies import Retention
from ..core.scripts import Scripts
from .health import WorkerHealth
from .running import RunningJobs

__all__ = ["renew_loop", "renew_once", "stall_loop"]

log = logging.getLogger("jobqueue.worker")


async def renew_once(scripts: Scripts, running: RunningJobs, *, lease_ms: int) -> None:
    """Renew the leases of every running job in one call; stop the handlers of jobs whose
    lease is lost, and of jobs someone asked to cancel."""
    leases = running.leases()
    reply = await scripts.renew(leases, lease_ms=lease_ms)
    sent = dict(leases)
    for job_id in reply.lost:
        # only the lease that was sent: the job may have been taken again meanwhile (its
        # lease expired while Redis was away, the stall check requeued it, and this worker's
        # next take got it back under a new token)
        if running.lose(job_id, sent.get(job_id)):
            log.warning("job %s:%s: lease lost; cancelling its handler", scripts.keys.queue, job_id)
    for job_id, reason in reply.cancels.items():
        running.cancel(job_id, reason)


async def renew_loop(
    scripts: Scripts,
    running: RunningJobs,
    config: QueueConfig,
    health: WorkerHealth | None = None,
) -> None:
    """Every lease/3: renew the leases of the running jobs (runs until cancelled; an error
    is reported to `health` and the next round tries again)."""
    every = config.lease / 3
    lease_ms = int(config.lease * 1000)
    while True:
        await asyncio.sleep(every)
        if not len(running):
            continue
        # a failed renewal never ends the loop: the next one may still make it in time
        await _round(
            "lease renewal",
            renew_once(scripts, running, lease_ms=lease_ms),
            queue=scripts.keys.queue,
            health=health,
            retry_in=every,
        )


async def stall_loop(
    scripts: Scripts,
    config: QueueConfig,
    *,
    owner: str,
    on_stalled: Callable[[str, str], None] | None = None,
    health: WorkerHealth | None = None,
) -> None:
    """Every stall interval: move jobs with expired leases back to waiting (or to failed after
    `max_stalls`). The script's lock lets one worker of all run it per interval.

    Args:
        scripts: the queue's scripts.
        config: the queue's settings (interval, max stalls, retention).
        owner: the worker taking the lock.
        on_stalled: called with (job id, new state: "waiting" or "failed") per job recovered.
        health: where a failed round is reported (it never ends the loop).
    """
    every = config.stall_check_every
    _, _, kf, kfa = config.retention_ms
    retention = Retention(failed=kf, failed_ms=kfa)
    lock_ms = max(1, int(every * 1000 * 0.9))
    while True:
        await _round(
            "stall check",
            _recover_once(scripts, config, owner, lock_ms, retention, on_stalled),
            queue=scripts.keys.queue,
            health=health,
            retry_in=every,
        )
        await asyncio.sleep(every)


async def _recover_once(
    scripts: Scripts,
    config: QueueConfig,
    owner: str,
    lock_ms: int,
    retention: Retention,
    on_stalled: Callable[[str, str], None] | None,
) -> None:
    """One round of the stall check (see `stall_loop`)."""
    reply = await scripts.recover(
        owner=owner,
        max_stalls=config.max_stalls,
        lock_ms=lock_ms,
        batch=1000,
        retention=retention,
    )
    if reply is not None and (reply.requeued or reply.failed):
        log.warning(
            "queue %s: %d stalled job(s) requeued, %d failed",
            scripts.keys.queue,
            len(reply.requeued),
            len(reply.failed),
        )
        if on_stalled is not None:
            for job_id in reply.requeued:
                on_stalled(job_id, "waiting")
            for job_id in reply.failed:
                on_stalled(job_id, "failed")


async def _round(
    what: str,
    work: Awaitable[None],
    *,
    queue: str,
    health: WorkerHealth | None,
    retry_in: float,
) -> None:
    """Await one round of a worker's loop (`what`: "lease renewal", "stall check") and report
    its outcome to `health` (without one, a failure is logged at debug level); an error never
    ends the loop, the next round tries again."""
    try:
        await work
    except Exception as exc:
        if health is not None:
            health.failed(what, exc, retry_in=retry_in)
        else:
            log.debug("queue %s: %s failed: %r", queue, what, exc)
    else:
        if health is not None:
            health.ok(what)
    # a client not made by `connect` (given by the caller, fakeredis) may have dropped a
    # cancel that came during the call: the close of the worker waits for this task
    raise_if_cancelling()
