"""A worker's lease upkeep: renewing the leases of its running jobs (one call for all of them),
and the stall check that brings back the jobs of dead workers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

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
        try:
            await renew_once(scripts, running, lease_ms=lease_ms)
        except Exception as exc:
            # never ends on one: the next renewal may still make it in time
            if health is not None:
                health.failed("lease renewal", exc, retry_in=every)
            else:
                log.debug("queue %s: lease renewal failed: %r", scripts.keys.queue, exc)
        else:
            if health is not None:
                health.ok("lease renewal")
        # a client not made by `connect` (given by the caller, fakeredis) may have dropped a
        # cancel that came during the call: the close of the worker waits for this task
        raise_if_cancelling()


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
        try:
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
        except Exception as exc:
            if health is not None:
                health.failed("stall check", exc, retry_in=every)
            else:
                log.debug("queue %s: stall check failed: %r", scripts.keys.queue, exc)
        else:
            if health is not None:
                health.ok("stall check")
        raise_if_cancelling()  # as in renew_loop
        await asyncio.sleep(every)
