"""How an idle worker waits without polling: a `BZPOPMIN` on the queue's marker, on a
connection of its own, until a new job pokes it or the due time the scripts reported.

On the fast path the take rides behind the block on that connection (`Scripts.take` with
`BlockFirst`): Redis runs it the moment the block ends, so a woken worker has its jobs one
round trip sooner. The block also watches a key of the worker's own (`QueueKeys.wake`), which
`interrupt` pokes to end the block at once: when the worker stops (the take behind it then
runs, and the worker hands back what it took) or learns of a due time while blocked."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from ..core.connection import REDIS_ERRORS, dedicated_client
from ..core.fastconn import FastConnection
from ..core.fastroute import ClusterFastConnection, fast_connection
from ..core.replies import TakeLimits, TakeReply
from ..core.scripts import BlockFirst
from ..job import Job
from ..queue import Queue
from .calls import FinishCalls

__all__ = ["IdleWait", "Wakeup"]

# the worker's own wake key outlives a poke nobody popped (the block had ended) this long
_WAKE_TTL_MS = 60_000


class IdleWait:
    """One wait of an idle worker (`Wakeup.wait`).

    Attributes:
        task: the block; its result is whether the marker woke it, or with a take behind it
            what a finish/take call's is (jobs started, the wait hint in ms).
        asked: the slots the take behind it asked for (0: a block alone); they count as
            asked for (`FinishCalls.reserved`) until it ends.
    """

    def __init__(self, wakeup: Wakeup, task: asyncio.Task[Any], asked: int) -> None:
        self.task = task
        self.asked = asked
        self._wakeup = wakeup
        self._interrupted = False

    async def interrupt(self) -> None:
        """End a block with a take behind it now (once; a block alone is left to run out)."""
        if self.asked and not self._interrupted:
            self._interrupted = True
            await self._wakeup.interrupt()


class Wakeup:
    """The wake-up connection of one worker (opened lazily by the first block).

    Args:
        queue: the worker's queue.
        worker: the worker's name (its own wake key is named after it).
    """

    def __init__(self, queue: Queue, worker: str = "") -> None:
        self._queue = queue
        self._client: Redis | None = None
        self._fast: FastConnection | ClusterFastConnection | None = None
        self._own = queue.keys.wake(worker) if worker else None

    @property
    def takes_behind(self) -> bool:
        """Whether `take` can ride behind the block (the scripts run on the fast path)."""
        return self._own is not None and self._queue.scripts.fast is not None

    def _open(self) -> Redis:
        # a socket timeout longer than any block: a read that never settles (a half-dead
        # connection) ends in a reconnect, not a hang
        client = dedicated_client(
            self._queue.redis, socket_timeout=self._queue.config.drain_delay + 10.0
        )
        if self._queue.scripts.fast is not None:
            # the wake-up is on the latency path: a lean connection of its own for it
            self._fast = fast_connection(client)
        self._client = client
        return client

    def _timeout(self, hint_ms: int) -> float:
        timeout = self._queue.config.drain_delay
        if hint_ms > 0:
            timeout = min(timeout, hint_ms / 1000)
        return max(timeout, 0.001)

    def wait(
        self, free: int, hint_ms: int, calls: FinishCalls, start: Callable[[Job], None]
    ) -> IdleWait:
        """Start an idle wait: with `takes_behind`, a block with a take of up to `free` jobs
        behind it (`calls.send_behind`; `start` starts each job taken), else a block alone."""
        if self.takes_behind:
            take = functools.partial(self.take, hint_ms=hint_ms)
            asked, task = calls.send_behind(free, take, start)
            return IdleWait(self, task, asked)
        return IdleWait(self, asyncio.get_running_loop().create_task(self.block(hint_ms)), 0)

    async def block(self, hint_ms: int) -> bool:
        """Block until a job may be ready (at most `drain_delay`, or `hint_ms` when the
        scripts said something is due sooner); True when woken by the marker."""
        client = self._client or self._open()
        timeout = self._timeout(hint_ms)
        marker = self._queue.keys.marker
        if self._fast is not None:
            reply = await self._fast.execute("BZPOPMIN", marker, timeout)
        else:
            reply = await client.bzpopmin(marker, timeout=timeout)
        return reply is not None

    async def take(self, n: int, limits: TakeLimits, hint_ms: int) -> TakeReply:
        """Block as `block` does (on the marker and this worker's own wake key), then take up
        to `n` jobs as soon as the block ends, whether woken or timed out (needs
        `takes_behind`)."""
        if self._client is None:
            self._open()
        assert self._fast is not None
        assert self._own is not None
        keys = (self._queue.keys.marker, self._own)
        block = BlockFirst(self._fast, keys, self._timeout(hint_ms))
        return await self._queue.scripts.take(n, limits, behind=block)

    async def interrupt(self) -> None:
        """End this worker's block now (its take runs at once); a poke nobody pops expires."""
        if self._own is None:
            return
        with contextlib.suppress(*REDIS_ERRORS):
            async with self._queue.redis.pipeline(transaction=False) as pipe:
                pipe.zadd(self._own, {"0": 0})
                pipe.pexpire(self._own, _WAKE_TTL_MS)
                await pipe.execute()

    async def pass_on(self) -> None:
        """Poke the marker again: a wake-up this worker cannot use goes to another one."""
        with contextlib.suppress(*REDIS_ERRORS):
            await self._queue.redis.zadd(self._queue.keys.marker, {"0": 0})

    async def aclose(self) -> None:
        """Close the wake-up connections."""
        if self._fast is not None:
            await self._fast.aclose()
        if self._client is not None:
            await self._client.aclose()
