"""The cancel listener: stops a cancelled job's handler at once, in whichever process it runs.

One pub/sub subscription per worker on `<base>cancel-ch`, where `lua/cancel.lua` publishes
`{"id": ..., "reason": ...}` for active jobs. After every (re)subscription the `cancels` hash
is read again for the running jobs, so a request published while the subscription was down is
not lost (the lease renewal reports it too, later).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from redis.asyncio import Redis

from ..core._aio import raise_if_cancelling
from ..core.backoff import exponential_delay
from ..core.codec import text as _s
from ..core.connection import REDIS_ERRORS, cluster_of, dedicated_client
from ..core.keys import QueueKeys
from .health import WorkerHealth
from .running import RunningJobs

__all__ = ["cancel_listener"]

log = logging.getLogger(__name__)


async def _recheck(redis: Redis, keys: QueueKeys, running: RunningJobs) -> None:
    ids = running.ids()
    if not ids:
        return
    reasons = await redis.hmget(keys.cancels, ids)
    for job_id, reason in zip(ids, reasons, strict=True):
        if reason is not None:
            running.cancel(job_id, _s(reason))


def _dispatch(running: RunningJobs, data: Any) -> None:
    try:
        msg = json.loads(data)
        job_id, reason = str(msg["id"]), str(msg.get("reason") or "cancelled")
    except (ValueError, KeyError, TypeError):
        log.debug("ignored a malformed cancel message")
        return
    running.cancel(job_id, reason)


async def cancel_listener(
    redis: Redis,
    keys: QueueKeys,
    running: RunningJobs,
    *,
    backoff: tuple[float, float],
    health: WorkerHealth | None = None,
) -> None:
    """Subscribe to the queue's cancel channel and cancel the running jobs named on it.

    Runs until cancelled; resubscribes after an error, waiting per `backoff` (first, max
    seconds), and reports it to `health`.
    """
    first, most = backoff
    failures = 0
    while True:
        # no silent retries: a lost connection surfaces here, so that we resubscribe and
        # re-read the cancels hash ourselves
        client = dedicated_client(redis, retries=False)
        pubsub: Any = None
        try:
            cluster = cluster_of(client)
            if cluster is not None:
                # a cluster client's pub/sub looks the channel's slot up in its slot map,
                # which a new client reads only at its first command
                await cluster.initialize()
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(keys.cancel_channel)
            await _recheck(redis, keys, running)
            raise_if_cancelling()
            if failures and health is None:
                log.info("queue %s: cancel channel subscribed again", keys.queue)
            failures = 0
            if health is not None:
                health.ok("cancel listener")
            while True:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                raise_if_cancelling()
                if msg is not None and msg.get("type") == "message":
                    _dispatch(running, msg["data"])
        except Exception as exc:
            failures += 1
            delay = exponential_delay(first, failures, cap=most, jitter=0.25)
            if health is not None:
                health.failed("cancel listener", exc, retry_in=delay)
            elif isinstance(exc, REDIS_ERRORS):
                log.warning(
                    "queue %s: cancel channel lost (%s); subscribing again in %.2fs",
                    keys.queue,
                    type(exc).__name__,
                    delay,
                )
            else:
                log.exception("queue %s: cancel listener failed", keys.queue)
            raise_if_cancelling()
            await asyncio.sleep(delay)
        finally:
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            with contextlib.suppress(Exception):
                await client.aclose()
