"""The status mirror: copies every job state change from the queues' Redis streams to PostgreSQL.

The engine's scripts append each transition to `<prefix>:{<queue>}:events`. The mirror reads
the streams through a consumer group, folds a batch into `job_status` in one transaction
(`pipeline.status_fold`, which decides what each event means for a row), commits, and only
then acknowledges it. On any failure the
entries stay pending and are read again first after a capped backoff; applying one twice is
harmless (rows keep the stream id of the last event applied). Entries trimmed from a capped
stream before being applied are detected and the optional `reconcile` callback rebuilds the
queue's rows from the engine's job keys. The mirror runs as its own task: handlers never wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ResponseError
from redis.typing import KeyT, StreamIdT

from jobqueue import QueueKeys, exponential_delay

from ._mirror_stream import parse_read, s_text, unread_trimmed
from .db import Connection, create_pool, get_pool, redact
from .status_fold import (
    JobSnapshot,
    apply_changes,
    change_from_event,
    change_from_snapshot,
    parse_stream_id,
)

__all__ = ["JobSnapshot", "MirrorStats", "Reconcile", "StatusMirror"]

log = logging.getLogger(__name__)

#: `reconcile(queue)` returns snapshots of every job of that queue still in Redis.
Reconcile = Callable[[str], Awaitable[list[JobSnapshot]]]


@dataclass(slots=True)
class MirrorStats:
    """Counters of a mirror, for metrics and tests.

    Attributes:
        transactions: committed transactions that applied a batch of events.
        events: stream entries applied and acknowledged (stale ones included).
        rows: rows written.
        failures: failed steps (each followed by a backoff).
        reconciles: reconcile passes after trimming.
        trimmed: entries found trimmed before they were applied.
    """

    transactions: int = 0
    events: int = 0
    rows: int = 0
    failures: int = 0
    reconciles: int = 0
    trimmed: int = 0


_CLUSTER_BLOCK_MS = 100
"""Longest block of one slot's read on Redis Cluster (the reads of all slots run at once)."""


class StatusMirror:
    """Applies the job events of some queues to `job_status`.

    Args:
        redis: the client to read with; its socket timeout must exceed `block_ms`.
        queues: names of the queues to follow.
        prefix: the engine's key prefix.
        keys: the keys of queues that do not live under their own name (a queue on a shared
            limiter lives in the limiter's slot): pass `Queue.keys`; others use `prefix`.
        database_url: PostgreSQL URL for a pool of the mirror's own (closed by `close`).
        pool: a pool to use instead (not closed by `close`). With neither, the process-wide
            pool of `pipeline.db.get_pool` is used.
        group: consumer group name.
        consumer: consumer name; defaults to `mirror-<hostname>` so a restart resumes the
            same pending entries.
        batch_size: entries read per stream and round trip.
        block_ms: how long a read waits for new entries.
        retry_backoff_base: first backoff after a failure, in seconds.
        retry_backoff_max: cap of the exponential backoff, in seconds.
        reconcile: rebuilds a queue's rows after entries were trimmed unapplied.
        trim_check_interval: seconds between checks for trimmed entries.
        claim_idle_ms: pending entries of other consumers idle this long are taken over (a
            mirror that died under another name).
        log_interval: at most one failure log line per this many seconds.
        writers: transactions that apply one batch at once, each on its own share of the
            jobs (split by job id, so a job's events still commit in stream order); each
            acknowledges its share after its commit.
        prefetch: in `run`, read the next batch while the current one is applied (a
            pipelined read); `run_once` never reads ahead.
        on_commit: called after each commit with the stream ids it applied (before they are
            acknowledged), e.g. to measure the lag from an event to its commit.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        queues: Sequence[str],
        *,
        prefix: str = "jq",
        keys: Mapping[str, QueueKeys] | None = None,
        database_url: str | None = None,
        pool: asyncpg.Pool | None = None,
        group: str = "status-mirror",
        consumer: str | None = None,
        batch_size: int = 500,
        block_ms: int = 1000,
        retry_backoff_base: float = 0.1,
        retry_backoff_max: float = 5.0,
        reconcile: Reconcile | None = None,
        trim_check_interval: float = 30.0,
        claim_idle_ms: int = 60_000,
        log_interval: float = 30.0,
        writers: int = 1,
        prefetch: bool = True,
        on_commit: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        if not queues:
            raise ValueError("queues is empty: give at least one queue to mirror")
        if writers < 1:
            raise ValueError(f"writers must be >= 1, got {writers!r}")
        if batch_size < 1 or block_ms < 0 or retry_backoff_base <= 0 or retry_backoff_max <= 0:
            raise ValueError("batch_size must be >= 1, block_ms >= 0 and backoffs > 0")
        self.redis = redis
        self.queues = list(dict.fromkeys(queues))
        self.group = group
        self.consumer = consumer or f"mirror-{socket.gethostname()}"
        self.batch_size, self.block_ms = batch_size, block_ms
        self.stats = MirrorStats()
        given = dict(keys or {})
        self._keys = {q: (given.get(q) or QueueKeys(prefix, q)).events for q in self.queues}
        self._queue_of = {k: q for q, k in self._keys.items()}
        self._database_url, self._pool, self._owns_pool = database_url, pool, False
        self._backoff = (retry_backoff_base, retry_backoff_max)
        self._reconcile, self._log_interval = reconcile, log_interval
        self._on_commit = on_commit
        self._trim_interval, self._claim_idle_ms = trim_check_interval, claim_idle_ms
        self._groups_ready, self._next_trim_check = False, 0.0
        self._pending: set[str] = set(self.queues)  # queues whose pending entries come first
        self._to_reconcile: set[str] = set()
        self._lost: dict[str, set[str]] = {}  # trimmed pending ids to ack after reconciling
        self._setid: dict[str, tuple[str, int]] = {}  # counters to repair after reconciling
        self._stop, self._done = asyncio.Event(), asyncio.Event()
        self._running, self._last_log, self._suppressed = False, float("-inf"), 0
        self._prefetch_on, self._looping = prefetch, False
        self._prefetch: asyncio.Task[list[tuple[str, str, Mapping[str, str]]]] | None = None
        self._writers = writers

    async def run(self) -> None:
        """Mirror until `close()` is called, retrying with backoff through any failure."""
        if self._running:
            raise RuntimeError("this StatusMirror is already running")
        self._running, failures = True, 0
        self._done.clear()
        self._looping = True
        try:
            while not self._stop.is_set():
                try:
                    await self.run_once()
                except Exception as exc:
                    failures += 1
                    self._log_failure(exc, failures)
                    delay = exponential_delay(self._backoff[0], failures, cap=self._backoff[1])
                    # Jitter spreads the retries of several mirrors after a shared outage.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay * random.uniform(0.5, 1))
                    continue
                if failures:
                    log.info("status mirror recovered after %d failed attempts", failures)
                    failures, self._last_log = 0, float("-inf")
            await self._drop_prefetch()  # what it read stays pending for the next run
        finally:
            self._looping = False
            if self._prefetch is not None:  # cancelled: what it read stays pending
                self._prefetch.cancel()
                self._prefetch = None
                self._pending.update(self.queues)
            self._running = False
            self._done.set()

    async def close(self) -> None:
        """Stop `run()` (after its current step) and close the pool the mirror created."""
        self._stop.set()
        if self._running:
            await self._done.wait()
        if self._owns_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def run_once(self) -> int:
        """Read one batch, apply it in one transaction, commit, then acknowledge it.

        Returns:
            The number of stream entries applied and acknowledged.

        Raises:
            Exception: whatever Redis or PostgreSQL raised; unacknowledged entries stay
                pending and are read again by the next call.
        """
        try:
            return await self._step()
        except Exception as exc:
            await self._drop_prefetch()
            # Entries may have been delivered (or a batch left unapplied): read pending first.
            self._pending.update(self.queues)
            if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                self._groups_ready = False  # the stream was deleted; recreate the group
            raise

    async def apply(
        self, events: Sequence[tuple[str, str, Mapping[str, str]]], conn: Connection
    ) -> int:
        """Apply stream entries to `job_status` on `conn` (in a transaction or savepoint).

        Args:
            events: `(queue, stream id, fields)` triples, fields decoded to str.
            conn: the connection to write with.

        Returns:
            The number of rows written.
        """
        # A job's `completed` (with its attempt) sets every field an earlier event of its
        # stream could have set, but the name an `added` carries: those earlier events are
        # skipped unbuilt (most of a drain's `active` events, when the batch has both).
        done: dict[tuple[str, str], tuple[int, int]] = {}
        for queue, stream_id, fields in events:
            if fields.get("ev") == "completed" and fields.get("a", "").isdigit():
                key, version = (queue, fields.get("id", "")), parse_stream_id(stream_id)
                done[key] = max(version, done.get(key, version))
        changes = []
        for queue, stream_id, fields in events:
            last = done.get((queue, fields.get("id", ""))) if done else None
            if (
                last is not None
                and fields.get("ev") != "added"
                and parse_stream_id(stream_id) < last
            ):
                continue
            change = change_from_event(queue, stream_id, fields)
            if change is not None:
                changes.append(change)
            elif not fields.get("ev"):
                log.warning("status mirror skips malformed entry %s of queue %s", stream_id, queue)
            # else a queue-level event (paused, resumed, obliterating): no row to change
        return await apply_changes(conn, changes)

    async def _drop_prefetch(self) -> None:
        """Wait for the read ahead (bounded by `block_ms`); its entries stay pending."""
        task, self._prefetch = self._prefetch, None
        if task is not None:
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # retrieved: the next step meets the same failure anyway
            self._pending.update(self.queues)

    async def _step(self) -> int:
        if self._pool is None:
            if self._database_url is not None:
                # min_size=0: no background reconnect loop of asyncpg's own during an outage;
                # the next step's acquire reconnects.
                size = max(2, self._writers)
                self._pool = await create_pool(self._database_url, min_size=0, max_size=size)
                self._owns_pool = True
            else:
                self._pool = await get_pool()
        if not self._groups_ready:
            for key in self._keys.values():
                try:
                    await self.redis.xgroup_create(key, self.group, id="0", mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
            self._groups_ready = True
        if time.monotonic() >= self._next_trim_check:
            await self._check_trimmed()
            self._next_trim_check = time.monotonic() + self._trim_interval
        if self._to_reconcile:
            await self._reconcile_queues()  # before reading moves the group's position
        batch = await self._read()
        if self._to_reconcile:
            await self._reconcile_queues()  # pending entries found trimmed
        if not batch:
            return 0
        if self._prefetch_on and self._looping and not self._pending and not self._to_reconcile:
            # Read the next batch while this one is applied; it stays pending until its own
            # commit, and a failure of this one makes the next step read both again.
            self._prefetch = asyncio.get_running_loop().create_task(self._read_new())
        parts = self._split(batch)
        if len(parts) == 1:
            await self._commit(batch)
        else:
            done = await asyncio.gather(*map(self._commit, parts), return_exceptions=True)
            for result in done:
                if isinstance(result, BaseException):
                    raise result  # the shares committed are acknowledged; this one stays pending
        return len(batch)

    def _split(
        self, batch: list[tuple[str, str, Mapping[str, str]]]
    ) -> list[list[tuple[str, str, Mapping[str, str]]]]:
        """The batch in `writers` shares by job id (queue-level events go to the first)."""
        if self._writers == 1:
            return [batch]
        shares: list[list[tuple[str, str, Mapping[str, str]]]] = [[] for _ in range(self._writers)]
        for entry in batch:
            shares[hash(entry[2].get("id", "")) % self._writers].append(entry)
        return [share for share in shares if share]

    async def _commit(self, batch: list[tuple[str, str, Mapping[str, str]]]) -> None:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await self.apply(batch, conn)
        self.stats.transactions += 1
        self.stats.rows += rows
        if self._on_commit is not None:
            self._on_commit([entry_id for _, entry_id, _ in batch])
        # Acknowledge only after the commit: a crash in between means a harmless re-apply.
        by_key: dict[str, list[str]] = {}
        for queue, entry_id, _ in batch:
            by_key.setdefault(self._keys[queue], []).append(entry_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, ids in by_key.items():
                pipe.xack(key, self.group, *ids)
            await pipe.execute()
        self.stats.events += len(batch)

    async def _read(self) -> list[tuple[str, str, Mapping[str, str]]]:
        """Own pending entries first (left by a failure or a restart), then new ones."""
        if self._prefetch is not None:
            task, self._prefetch = self._prefetch, None
            return await task
        batch: list[tuple[str, str, Mapping[str, str]]] = []
        if self._pending:
            streams: dict[KeyT, StreamIdT] = {
                self._keys[q]: "0" for q in self.queues if q in self._pending
            }
            resp = await self._xreadgroup(streams, block_ms=None)
            seen: set[str] = set()
            for key, entry_id, fields in parse_read(resp):
                queue = self._queue_of[key]
                seen.add(queue)
                if fields is None:
                    self._lost.setdefault(queue, set()).add(entry_id)
                    self._to_reconcile.add(queue)
                    self.stats.trimmed += 1
                else:
                    batch.append((queue, entry_id, fields))
            self._pending &= seen  # a queue with nothing pending reads new entries from now on
            if batch or self._to_reconcile:
                return batch
        return await self._read_new()

    async def _read_new(self) -> list[tuple[str, str, Mapping[str, str]]]:
        new: dict[KeyT, StreamIdT] = {self._keys[q]: ">" for q in self.queues}
        resp = await self._xreadgroup(new, block_ms=self.block_ms or None)
        return [(self._queue_of[k], i, f) for k, i, f in parse_read(resp) if f is not None]

    async def _xreadgroup(self, streams: dict[KeyT, StreamIdT], *, block_ms: int | None) -> Any:
        """XREADGROUP of `streams`; on Redis Cluster one read per hash slot (a command's keys
        must share a slot), all at once, each blocking at most `_CLUSTER_BLOCK_MS` so that an
        event on one slot is not held up by the others' blocks."""
        if not isinstance(self.redis, RedisCluster):
            return await self.redis.xreadgroup(
                self.group, self.consumer, streams, count=self.batch_size, block=block_ms
            )
        by_slot: dict[int, dict[KeyT, StreamIdT]] = {}
        for key, last in streams.items():
            raw = key if isinstance(key, bytes) else str(key).encode()
            by_slot.setdefault(key_slot(raw), {})[key] = last
        block = min(block_ms, _CLUSTER_BLOCK_MS) if block_ms else None
        replies = await asyncio.gather(
            *(
                self.redis.xreadgroup(
                    self.group, self.consumer, group, count=self.batch_size, block=block
                )
                for group in by_slot.values()
            )
        )
        merged: list[Any] = []
        for reply in replies:
            if reply:
                merged.extend(reply.items() if isinstance(reply, dict) else reply)
        return merged

    async def _check_trimmed(self) -> None:
        for queue, key in self._keys.items():
            try:
                stream = await self.redis.xinfo_stream(key)
                groups = await self.redis.xinfo_groups(key)
            except ResponseError as exc:
                if "no such key" not in str(exc):
                    raise
                stream, groups = {}, []  # the stream was deleted: recreate it with the group
            group = next((g for g in groups if s_text(g["name"]) == self.group), None)
            if group is None:
                self._groups_ready = False
                continue
            unread = unread_trimmed(stream, group)
            if unread:
                self.stats.trimmed += unread
                self._to_reconcile.add(queue)
                removed = int(stream["entries-added"]) - int(stream["length"])
                self._setid[queue] = (s_text(group["last-delivered-id"]), removed)
            # Take over what a dead consumer of the group left pending. Redis drops claimed
            # entries whose data was trimmed and returns their ids: those changes are lost.
            reply = await self.redis.xautoclaim(
                key, self.group, self.consumer, self._claim_idle_ms, "0-0", count=self.batch_size
            )
            claimed, deleted = reply[1], reply[2] if len(reply) > 2 else []
            if claimed:
                self._pending.add(queue)
            if deleted:
                self.stats.trimmed += len(deleted)
                self._to_reconcile.add(queue)

    async def _reconcile_queues(self) -> None:
        assert self._pool is not None
        for queue in sorted(self._to_reconcile):
            key = self._keys[queue]
            if self._reconcile is None:
                log.error(
                    "status mirror: changes of queue %s were trimmed from the stream before they "
                    "reached PostgreSQL and no reconcile callback is set; rows may be stale",
                    queue,
                    extra={"queue": queue},
                )
            else:
                # Snapshots read after this id reflect every event up to it.
                last = parse_stream_id((await self.redis.xinfo_stream(key))["last-generated-id"])
                snapshots = await self._reconcile(queue)
                changes = []
                for snap in snapshots:
                    change = change_from_snapshot(queue, snap, last)
                    if change is None:
                        log.warning(
                            "status mirror ignores job %s in unknown state %r",
                            snap.job_id, snap.state,
                        )  # fmt: skip
                    else:
                        changes.append(change)
                async with self._pool.acquire() as conn:
                    rows = await apply_changes(conn, changes)
                self.stats.reconciles += 1
                self.stats.rows += rows
                log.warning(
                    "status mirror reconciled queue %s after trimming: %d jobs, %d rows written",
                    queue, len(snapshots), rows, extra={"queue": queue},
                )  # fmt: skip
            lost = self._lost.pop(queue, set())
            if lost:
                await self.redis.xack(key, self.group, *lost)
            setid = self._setid.pop(queue, None)
            if setid is not None:
                # Redis keeps counting trimmed entries as unread; reset the counter so the
                # same loss is not detected again.
                await self.redis.xgroup_setid(key, self.group, setid[0], entries_read=setid[1])
            self._to_reconcile.discard(queue)

    def _log_failure(self, exc: Exception, failures: int) -> None:
        self.stats.failures += 1
        self._suppressed += 1
        now = time.monotonic()
        if now - self._last_log < self._log_interval:
            return  # bounded rate: one line per interval however fast the retries
        log.warning(
            "status mirror step failed (%s: %s); %d failures in a row, %d since the last "
            "report; entries stay pending and will be retried",
            type(exc).__name__, redact(str(exc)), failures, self._suppressed,
            extra={"failures": failures},
        )  # fmt: skip
        self._last_log, self._suppressed = now, 0
