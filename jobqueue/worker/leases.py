"""The worker's lease upkeep: renewing the leases of its running jobs (one call for all of
them) and the stall check that brings back the jobs of dead workers."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ..core.codec import text as _s

if TYPE_CHECKING:
    from .worker import Worker

__all__ = ["renew_loop", "renew_once", "stall_loop"]

log = logging.getLogger("jobqueue.worker")


async def renew_loop(worker: Worker) -> None:
    """Every lease/3: renew the leases of the worker's running jobs."""
    from .worker import TRANSIENT_ERRORS

    every = worker.config.lease / 3
    while True:
        await asyncio.sleep(every)
        if not worker._running:
            continue
        try:
            await renew_once(worker)
        except TRANSIENT_ERRORS as exc:
            log.debug("worker %s: lease renewal failed: %s", worker.name, exc)


async def renew_once(worker: Worker) -> None:
    """Renew all leases in one call; cancel the handlers of jobs whose lease is lost, and of
    jobs someone asked to cancel."""
    queue = worker.queue
    pairs: list[Any] = []
    for job_id, (job, _) in worker._running.items():
        pairs.extend((job_id, job.token or ""))
    args = [queue.keys.base, int(worker.config.lease * 1000), len(pairs) // 2, *pairs]
    lost, cancels = await queue.scripts.run("renew", queue._key_list, args)
    for raw in lost:
        job_id = _s(raw)
        entry = worker._running.get(job_id)
        if entry is not None:
            log.warning("job %s:%s: lease lost; cancelling its handler", queue.name, job_id)
            worker._lost.add(job_id)
            entry[1].cancel()
    for i in range(0, len(cancels), 2):
        worker._cancel_running(_s(cancels[i]), _s(cancels[i + 1]))


async def stall_loop(worker: Worker) -> None:
    """Every stall interval: move jobs with expired leases back to waiting (or to failed after
    max_stalls). The script's lock lets one worker of all run it per interval."""
    from .worker import TRANSIENT_ERRORS

    queue, cfg = worker.queue, worker.config
    every = cfg.stall_check_every
    _, _, kf, kfa = cfg.retention_ms
    args = [
        queue.keys.base,
        cfg.events_maxlen,
        cfg.max_stalls,
        max(1, int(every * 1000 * 0.9)),
        1000,
        worker.name,
        kf,
        kfa,
    ]
    while True:
        try:
            requeued, failed = (await queue.scripts.run("recover", queue._key_list, args) + [0])[:2]
            if int(requeued) > 0 or int(failed) > 0:
                log.warning(
                    "queue %s: %d stalled job(s) requeued, %d failed",
                    queue.name,
                    int(requeued),
                    int(failed),
                )
        except TRANSIENT_ERRORS as exc:
            log.debug("worker %s: stall check failed: %s", worker.name, exc)
        await asyncio.sleep(every)
