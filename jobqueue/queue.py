"""The producer side of a queue: add jobs, read them, count them, pause and resume."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from . import _tracing
from ._encode import MAX_DELAY as MAX_DELAY
from ._encode import encode_job, name_json
from .config import QueueConfig
from .core._inputs import cut, job_ref, shown
from .core.codec import decode_envelope, dumps
from .core.connection import check_server, connect, describe_client
from .core.keys import QueueKeys, validate_prefix
from .core.redact import redact_url
from .core.replies import NewJob
from .core.scripts import Scripts
from .core.states import JobState
from .dedup import Dedup
from .errors import ConfigError, InvalidJobError
from .flows._queue import QueueFlowsMixin
from .job import Job
from .queue_limits import QueueLimitsMixin
from .queue_ops import QueueOpsMixin
from .schedules._mixin import QueueSchedulesMixin
from .tasks import Task, TaskDecorator, TaskRegistry

__all__ = ["JobSpec", "Queue"]

log = logging.getLogger(__name__)

_SPEC_KEYS = frozenset(
    {"name", "data", "job_id", "delay", "priority", "attempts", "cost", "group",
     "group_concurrency", "dedup"}
)  # fmt: skip
_checked_servers: set[str] = set()
_NUMBERS = (int, float)
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _json_copy(data: Any, data_json: str) -> Any:
    """`data` as its JSON `data_json` gives it back, a copy: an immutable scalar is its own,
    a flat dict of scalars a shallow copy (the same keys, values and types as the JSON's),
    anything else parsed from the JSON."""
    if type(data) in _SCALARS:
        return data
    if type(data) is dict:
        for key, value in data.items():
            if type(key) is not str or type(value) not in _SCALARS:
                return json.loads(data_json)
        return data.copy()
    return json.loads(data_json)


JobSpec = Mapping[str, Any]
"""One job for `Queue.add_bulk`: keys `name`, `data`, and optionally `job_id`, `delay`,
`priority`, `attempts`, `cost`, `group`, `group_concurrency`, `dedup` (the keyword arguments
of `Queue.add`)."""


class Queue(QueueOpsMixin, QueueLimitsMixin, QueueFlowsMixin, QueueSchedulesMixin):
    """A named queue in Redis.

    Args:
        config_or_name: a `QueueConfig`, or just the queue name (default settings).
        redis: a Redis URL (`redis://`, `rediss://`, `unix://`, `redis+cluster://`,
            `redis+sentinel://`: see `jobqueue.core.connection.connect`), or a
            `redis.asyncio.Redis` or `redis.asyncio.cluster.RedisCluster` client (bytes
            replies) to share.
        prefix: first part of every key (`<prefix>:{<queue>}:...`).
        allow_eviction: accept a server whose maxmemory-policy may evict jobs.
    """

    def __init__(
        self,
        config_or_name: QueueConfig | str,
        *,
        redis: str | Redis | RedisCluster = "redis://127.0.0.1:6379/0",
        prefix: str = "jq",
        allow_eviction: bool = False,
    ) -> None:
        self.config = (
            config_or_name
            if isinstance(config_or_name, QueueConfig)
            else QueueConfig(config_or_name)
        )
        self.prefix = validate_prefix(prefix)
        limiter = self.config.limiter
        # a queue on a shared limiter lives in the limiter's hash slot, or the one it names
        # (one script may then check the queue and the limiter together on Redis Cluster)
        self.keys = QueueKeys(
            self.prefix,
            self.config.name,
            self.config.hash_slot,
            limiter.name if limiter else None,
        )
        if isinstance(redis, str):
            try:
                self.redis = connect(redis)
            except ValueError as exc:  # redis-py's own for a bad URL: one typed error here
                raise ConfigError(
                    f"redis URL {shown(redact_url(redis))} is invalid: {cut(str(exc))}"
                ) from None
            self._owns_client = True
        elif isinstance(redis, Redis | RedisCluster):
            # a cluster client is typed as Redis: it answers the same commands, routed by key
            self.redis = redis if isinstance(redis, Redis) else cast(Redis, redis)
            self._owns_client = False
        else:
            raise ConfigError(
                "redis must be a URL, a redis.asyncio.Redis or a redis.asyncio.cluster."
                f"RedisCluster, got {redis!r}"
            )
        self.scripts = Scripts(
            self.redis,
            self.keys,
            events_maxlen=self.config.events_maxlen,
            durable=self.config.durable,
        )
        """The queue's scripts, one typed method each (the engine's layer under `Queue`)."""
        self._allow_eviction = allow_eviction
        self.tasks: TaskRegistry[Job] = TaskRegistry(self)

    @property
    def name(self) -> str:
        """The queue name."""
        return self.config.name

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} prefix={self.prefix!r} redis={describe_client(self.redis)}>"

    async def connect(self) -> None:
        """Check the server once per process (replica, eviction policy, persistence)."""
        where = describe_client(self.redis)
        if where not in _checked_servers:
            await check_server(self.redis, allow_eviction=self._allow_eviction)
            _checked_servers.add(where)

    async def close(self) -> None:
        """Close this queue's script connection, and the pool if this queue made it."""
        await self.scripts.aclose()
        if self._owns_client:
            await self.redis.aclose()

    async def __aenter__(self) -> Queue:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- adding ---------------------------------------------------------------------------

    async def add(
        self,
        name: str,
        data: Any = None,
        *,
        job_id: str | None = None,
        delay: float = 0.0,
        priority: int = 0,
        attempts: int | None = None,
        cost: Mapping[str, float] | None = None,
        group: str | None = None,
        group_concurrency: int | None = None,
        dedup: Dedup | None = None,
    ) -> Job:
        """Add one job. Adding an existing `job_id` enqueues nothing and returns that job.

        Args:
            name: what the job is (handlers may dispatch on it).
            data: any JSON value (validated, at most `max_payload` bytes).
            job_id: your own id, for deduplication; default: the queue's counter.
            delay: seconds before the job may start.
            priority: higher is taken first; equal priorities keep FIFO.
            attempts: total attempts for this job (default: the queue's).
            cost: what the job costs of the queue's shared limiter, per bucket (an estimate;
                the handler settles the real usage with `job.settle`); default: the queue's
                `QueueConfig.cost`.
            group: the group (e.g. a user or tenant id) the job belongs to: within one
                priority level workers take from the groups with jobs waiting in turn, so a
                group with many jobs waiting delays another group's job by at most one job
                per worker slot. Ungrouped jobs take their turn each like a group of one.
            group_concurrency: at most this many jobs of the group run at once, across all
                workers (default `QueueConfig.group_concurrency`; the group's cap is the
                one of its latest job queued).
            dedup: a `Dedup` key: a duplicate of a waiting job (or one within its window) is
                dropped, or replaces it; the job returned is then that job, with
                `job.deduplicated` set to "dropped" or "replaced".

        Raises:
            InvalidJobError: a bad name, id, data, delay, priority, attempts, cost, group or
                dedup (nothing written).
        """
        if (
            job_id is None
            and attempts is None
            and cost is None
            and group is None
            and group_concurrency is None
            and dedup is None
            and type(delay) in _NUMBERS
            and delay == 0
            and type(priority) is int
            and priority == 0
            and not _tracing.enabled()
        ):
            # most adds: nothing else to check or encode, and the job returned is built from
            # what was given (here, not in a method of its own: one coroutine less a call)
            encoded_name = name_json(name)  # first, as `encode_job` checks it: same error first
            data_json = dumps(data, limit=self.config.max_payload, what="job data")
            env = '{"n":' + encoded_name + ',"d":' + data_json + "}"
            reply = self.scripts.add_plain(name, env)  # sent: the Job is made while Redis runs
            job = Job(self, "", {"n": name, "d": _json_copy(data, data_json)})
            job.id, code = await reply
            if code != "created":  # a counter id is never taken: only a hand-made key could be
                return (await self._jobs_for([NewJob("", name, env, 0, 0)], [(job.id, code)]))[0]
            return job
        new = encode_job(
            self.config, name, data, job_id, delay, priority, attempts, cost, group,
            group_concurrency, dedup,
        )  # fmt: skip
        return (await self._add_many([new]))[0]

    async def add_bulk(self, jobs: Iterable[JobSpec | tuple[str, Any]]) -> list[Job]:
        """Add many jobs in one round trip (one atomic script call).

        Each item is a mapping with the keyword arguments of `add` (`name`, `data`, `job_id`,
        `delay`, `priority`, `attempts`, `cost`, `group`, `group_concurrency`, `dedup`) or a
        `(name, data)` pair. All are validated before anything is written.
        """
        encoded = []
        if isinstance(jobs, str | bytes | Mapping) or not isinstance(jobs, Iterable):
            raise InvalidJobError(f"jobs must be an iterable of job specs, got {shown(jobs)}")
        for spec in jobs:
            if isinstance(spec, tuple):
                if len(spec) != 2:
                    raise InvalidJobError(f"a job pair must be (name, data), got {shown(spec)}")
                name, data = spec
                encoded.append(encode_job(self.config, name, data, None, 0.0, 0, None))
            else:
                if not isinstance(spec, Mapping):
                    raise InvalidJobError(
                        f"a job spec must be a mapping or a (name, data) pair, got {shown(spec)}"
                    )
                unknown = set(spec) - _SPEC_KEYS
                if unknown or "name" not in spec:
                    raise InvalidJobError(
                        f"bad job spec {shown(dict(spec))}: unknown keys "
                        f"{shown(sorted(map(str, unknown)))}, or no name"
                    )
                encoded.append(
                    encode_job(
                        self.config,
                        spec["name"],
                        spec.get("data"),
                        spec.get("job_id"),
                        spec.get("delay", 0.0),
                        spec.get("priority", 0),
                        spec.get("attempts"),
                        spec.get("cost"),
                        spec.get("group"),
                        spec.get("group_concurrency"),
                        spec.get("dedup"),
                    )
                )
        if not encoded:
            return []
        return await self._add_many(encoded)

    async def _add_many(self, encoded: Sequence[NewJob]) -> list[Job]:
        if _tracing.enabled():  # a `send` span, its context carried in the envelopes
            return await _tracing.send(
                self.name,
                encoded,
                self._add_encoded,
                lambda jobs: jobs[0].id if len(jobs) == 1 else None,
            )
        return await self._add_encoded(encoded)

    async def _add_encoded(self, encoded: Sequence[NewJob]) -> list[Job]:
        return await self._jobs_for(encoded, await self.scripts.add(encoded))

    async def _jobs_for(
        self, encoded: Sequence[NewJob], added: Sequence[tuple[str, str]]
    ) -> list[Job]:
        """The jobs `add` returns for what the script did with each one."""
        jobs: list[Job] = []
        for new, (job_id, code) in zip(encoded, added, strict=True):
            if code == "created":
                state = JobState.DELAYED if new.delay_ms > 0 else JobState.WAITING
                jobs.append(Job(self, job_id, decode_envelope(new.envelope), state=state))
            else:
                existing = await self.get_job(job_id)
                if existing is None:  # removed between the two calls: report it as given
                    existing = Job(self, job_id, decode_envelope(new.envelope))
                if code in ("dropped", "replaced"):
                    existing.deduplicated = code
                jobs.append(existing)
        return jobs

    # -- reading --------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        record = await self.scripts.get_job(job_ref(job_id))
        return None if record is None else Job.from_record(self, job_id, record)

    async def get_job_state(self, job_id: str) -> JobState | None:
        """The current state of a job, or None when it does not exist."""
        record = await self.scripts.get_job(job_ref(job_id))
        return None if record is None else JobState(record.state)

    async def get_job_counts(self) -> dict[str, int]:
        """Jobs per state: waiting, active, delayed, completed, failed, paused,
        waiting-children.

        `paused` counts the jobs held back because the queue is paused (they are not in
        `waiting`); `waiting-children` the flow parents waiting for their children.
        """
        c = await self.scripts.counts()
        return {
            "waiting": c.waiting,
            "active": c.active,
            "delayed": c.delayed,
            "completed": c.completed,
            "failed": c.failed,
            "paused": c.paused,
            "waiting-children": c.waiting_children,
        }

    async def get_job_ids(self, state: JobState | str, *, limit: int = 100) -> list[str]:
        """Ids of up to `limit` jobs in a state (oldest first for finished ones)."""
        try:
            st = JobState(state)
        except ValueError:
            raise ConfigError(
                f"state must be one of {[s.value for s in JobState]}, got {shown(state)}"
            ) from None
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"limit must be an int >= 1, got {shown(limit)}")
        k = self.keys
        raw: list[Any]
        if st in (JobState.WAITING, JobState.PAUSED):
            raw = []
            members = list(await self.redis.zrange(k.prio, 0, limit - 1))
            members += await self.redis.lrange(k.wait, 0, max(0, limit - len(members)) - 1)
            for member in members:
                name = member.decode() if isinstance(member, bytes) else str(member)
                if name.startswith("!"):  # a group's token: its jobs wait in the group
                    raw += await self.redis.zrange(k.group_wait(name[1:]), 0, limit - 1)
                else:
                    raw.append(name)
            if len(raw) < limit:  # groups at their concurrency cap have their token parked
                async for field, where in self.redis.hscan_iter(k.groups, match="q:*"):
                    if where in (b"p", "p"):
                        group = (field.decode() if isinstance(field, bytes) else field)[2:]
                        raw += await self.redis.zrange(k.group_wait(group), 0, limit - 1)
        else:
            key = {
                JobState.DELAYED: k.delayed,
                JobState.ACTIVE: k.active,
                JobState.COMPLETED: k.completed,
                JobState.FAILED: k.failed,
                JobState.WAITING_CHILDREN: k.waiting_children,
            }[st]
            raw = list(await self.redis.zrange(key, 0, limit - 1))
        return [x.decode() if isinstance(x, bytes) else str(x) for x in raw[:limit]]

    # -- control --------------------------------------------------------------------------

    async def pause(self) -> bool:
        """Stop every worker from starting jobs (running ones finish). True if it changed."""
        return await self.scripts.pause(True)

    async def resume(self) -> bool:
        """Let workers start jobs again. True if it changed."""
        return await self.scripts.pause(False)

    async def is_paused(self) -> bool:
        """Whether the queue is paused."""
        return bool(await self.redis.hexists(self.keys.meta, "paused"))

    # -- tasks (RQ style, see jobqueue.tasks) ----------------------------------------------

    @property
    def task(self) -> TaskDecorator[Job]:
        """`@queue.task` or `@queue.task(name=..., attempts=..., priority=...)`: register a
        function as a task of this queue (see `TaskRegistry.task`); run them with
        `Worker(queue, queue.tasks)`."""
        return self.tasks.task

    async def enqueue(
        self,
        task: Task[..., Any, Job] | str | Callable[..., Any],
        /,
        *args: Any,
        job_id: str | None = None,
        delay: float | None = None,
        priority: int | None = None,
        attempts: int | None = None,
        **kwargs: Any,
    ) -> Job:
        """Add a job that calls a task of this queue: `queue.enqueue(count_words, url)`.

        Args:
            task: the `Task`, its name, or the function registered as a task.
            *args: the function's positional arguments (JSON values).
            job_id: your own id, for deduplication.
            delay: seconds before the job may start.
            priority: higher is taken first (default: the task's).
            attempts: total attempts (default: the task's, else the queue's).
            **kwargs: the function's keyword arguments (JSON values).

        Raises:
            InvalidJobError: no such task on this queue, or as `Task.enqueue` (nothing written).
        """
        return await self.tasks.enqueue(
            task, *args, job_id=job_id, delay=delay, priority=priority, attempts=attempts, **kwargs
        )
