"""The typed script layer: one method per Lua script under `lua/`.

Each method owns its script's call: the keys it touches (by `QueueKeys` name, in the order of
the script's header), its ARGV (by name), the decoding of its reply into the types of
`jobqueue.core.replies`, and the mapping of its return codes to errors (one table,
`replies.CODE_ERRORS`). Callers and tests use only these methods; `tests/unit` keeps each
method's declared names equal to its script's header.

Scripts run by EVALSHA and are loaded again when the server answers NOSCRIPT (after a restart
or SCRIPT FLUSH). EVALSHA goes through a `FastConnection` (one multiplexed hiredis socket, see
`jobqueue.core.fastconn`) made from the redis-py client's connection settings: a fraction of
redis-py's client CPU per round trip. Opt out with `Scripts(..., fastconn=False)` or
`JOBQUEUE_FASTCONN=0`; clients the fast path cannot copy (TLS, Sentinel, Cluster, credential
providers, fakeredis) stay on redis-py.

On a fakeredis client (`connection.is_fakeredis`) the scripts are loaded without their `#!lua`
shebang line, which fakeredis's Lua cannot parse (`_loader.load_script(name, shebang=False)`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from ..errors import ConfigError
from ._loader import load_script, script_names
from .codec import text
from .connection import is_fakeredis
from .fastconn import FastConnection
from .keys import QueueKeys
from .replies import (
    AddedJob,
    CancelOutcome,
    Counts,
    FinishReply,
    JobRecord,
    NewJob,
    Outcome,
    RecoverReply,
    RenewReply,
    Retention,
    TakeLimits,
    TakenJob,
    TakeReply,
    raise_for_code,
)

__all__ = ["FASTCONN_ENV", "SPECS", "ScriptSpec", "Scripts", "fastconn_enabled"]

FASTCONN_ENV = "JOBQUEUE_FASTCONN"
"""Environment variable: `0` (or `false`, `no`, `off`) runs every script through redis-py."""


def fastconn_enabled() -> bool:
    """Whether the environment allows the fast connection (default: yes)."""
    return os.environ.get(FASTCONN_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class ScriptSpec:
    """What a method declares of its script: the names its header must list.

    Attributes:
        name: the script (`lua/<name>.lua`).
        keys: `QueueKeys` names (`name(id)` for a key of one job), in KEYS order.
        argv: the fixed ARGV names, in order.
        group: the names of the ARGV group repeated per item, in order.
        events: the events the script may emit.
    """

    name: str
    keys: tuple[str, ...]
    argv: tuple[str, ...]
    group: tuple[str, ...]
    events: frozenset[str]
    _argset: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_argset", frozenset(self.argv))

    def index(self, arg: str) -> int:
        """The position of a fixed ARGV name."""
        return self.argv.index(arg)

    def pack(self, values: Mapping[str, Any]) -> list[Any]:
        """The fixed ARGV in header order, from values by name (every name exactly once)."""
        if values.keys() != self._argset:
            raise TypeError(f"{self.name}.lua takes ARGV {list(self.argv)}, got {sorted(values)}")
        return [values[a] for a in self.argv]


def _spec(name: str, *, keys: str, argv: str = "", group: str = "", events: str = "") -> ScriptSpec:
    return ScriptSpec(
        name, tuple(keys.split()), tuple(argv.split()), tuple(group.split()),
        frozenset(events.split()),
    )  # fmt: skip


_TAKE_KEYS = (
    "wait prio priorities delayed active meta limiter limited marker events id_counter failed"
)
_SHARED_KEYS = " shared_limiter shared_hold breaker breaker_fails costs"
_TAKE_ARGV = (
    "base maxlen take worker lease_ms concurrency rate_max rate_per_ms limiter buckets cost breaker"
)
_JOB_KEYS = "wait prio priorities delayed active completed failed cancels events costs"

_CANCEL_OUTCOMES: dict[int, CancelOutcome] = {
    0: "not_found",
    1: "removed",
    2: "signalled",
    3: "finished",
}
_CLEAN_STATES = frozenset({"completed", "failed", "waiting", "delayed"})


_new = tuple.__new__


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _decode_take(reply: Sequence[Any]) -> TakeReply:
    # tuple.__new__ directly: a NamedTuple's own __new__ is a Python call more per job
    jobs = [
        _new(
            TakenJob,
            (
                i.decode() if isinstance(i, bytes) else str(i),
                env,
                t.decode() if isinstance(t, bytes) else str(t),
                int(a),
            ),
        )
        for i, env, t, a in zip(*[iter(reply[1:])] * 4, strict=True)
    ]
    return TakeReply(jobs, int(reply[0]))


class Scripts:
    """The scripts of one queue, run on one Redis client.

    Args:
        redis: the redis-py client; its connection settings (host, port or unix path, db,
            username, password, timeouts) are copied for the fast connection.
        keys: the queue's key names.
        events_maxlen: cap of the queue's event stream (0 = no events).
        fastconn: send EVALSHA over a `FastConnection` (default: on, unless the environment
            sets `JOBQUEUE_FASTCONN=0`); False keeps everything on `redis`.
    """

    def __init__(
        self,
        redis: Redis,
        keys: QueueKeys,
        *,
        events_maxlen: int = 10_000,
        fastconn: bool | None = None,
    ) -> None:
        self._redis = redis
        self.keys = keys
        self.events_maxlen = events_maxlen
        use_fast = fastconn_enabled() if fastconn is None else fastconn
        self._fast = FastConnection.from_client(redis) if use_fast else None
        self._shebang = not is_fakeredis(redis)
        self._finish_head: tuple[TakeLimits, Retention, list[Any]] | None = None
        # KEYS of each script, resolved once (keys of one job are resolved per call)
        self._keys = {
            spec.name: [getattr(keys, k) for k in spec.keys]
            for spec in SPECS.values()
            if not any("(" in k for k in spec.keys)
        }

    @property
    def fast(self) -> FastConnection | None:
        """The fast connection in use, or None when scripts run through redis-py."""
        return self._fast

    # -- running ---------------------------------------------------------------------------

    async def _eval(self, name: str, keys: list[str], args: Sequence[Any]) -> Any:
        script = load_script(name, shebang=self._shebang)
        fast = self._fast
        if fast is not None:
            try:
                return await fast.execute("EVALSHA", script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await fast.execute("SCRIPT", "LOAD", script.source)
                return await fast.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return await self._redis.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self._redis.script_load(script.source)
            return await self._redis.evalsha(script.sha, len(keys), *keys, *args)

    async def _call(
        self,
        spec: ScriptSpec,
        groups: Iterable[Sequence[Any]] = (),
        *,
        keys: list[str] | None = None,
        **argv: Any,
    ) -> Any:
        """Run `spec`'s script: its KEYS, its fixed ARGV by name, then each group in order."""
        args = spec.pack(argv)
        for group in groups:
            args.extend(group)
        return await self._eval(spec.name, self._keys[spec.name] if keys is None else keys, args)

    async def load_all(self) -> None:
        """Load every script up front (saves the first NOSCRIPT round trip)."""
        for name in script_names():
            source = load_script(name, shebang=self._shebang).source
            if self._fast is not None:
                await self._fast.execute("SCRIPT", "LOAD", source)
            else:
                await self._redis.script_load(source)

    async def aclose(self) -> None:
        """Close the fast connection (the redis-py client is its owner's to close)."""
        if self._fast is not None:
            await self._fast.aclose()

    @property
    def _queue(self) -> dict[str, Any]:
        return {"base": self.keys.base, "maxlen": self.events_maxlen}

    # -- adding and running jobs -----------------------------------------------------------

    ADD = _spec(
        "add",
        keys="id_counter wait prio delayed priorities marker events costs",
        argv="base maxlen n",
        group="id name envelope delay_ms priority cost",
        events="added",
    )

    async def add(self, jobs: Sequence[NewJob]) -> list[AddedJob]:
        """Store new jobs, ready or delayed; a job whose id exists already is left as it is."""
        reply = await self._call(self.ADD, jobs, n=len(jobs), **self._queue)
        return [AddedJob(text(reply[i]), int(reply[i + 1]) == 1) for i in range(0, len(reply), 2)]

    TAKE = _spec(
        "take", keys=_TAKE_KEYS + _SHARED_KEYS, argv=_TAKE_ARGV, events="active failed breaker"
    )

    @staticmethod
    def _limits(limits: TakeLimits) -> dict[str, Any]:
        return {
            "worker": limits.worker,
            "lease_ms": limits.lease_ms,
            "concurrency": limits.concurrency,
            "rate_max": limits.rate_max,
            "rate_per_ms": limits.rate_per_ms,
            "limiter": limits.limiter,
            "buckets": limits.buckets,
            "cost": limits.cost,
            "breaker": limits.breaker,
        }

    async def take(self, n: int, limits: TakeLimits) -> TakeReply:
        """Lease up to `n` ready jobs to `limits.worker`."""
        reply = await self._call(self.TAKE, take=n, **self._limits(limits), **self._queue)
        return _decode_take(reply)

    FINISH = _spec(
        "finish",
        keys=_TAKE_KEYS + " completed cancels" + _SHARED_KEYS,
        argv=_TAKE_ARGV + " keep_completed keep_completed_ms keep_failed keep_failed_ms m",
        group="id token kind payload error_type delay_ms limit",
        events="completed failed retrying returned active breaker",
    )

    async def finish(
        self,
        outcomes: Sequence[Outcome],
        *,
        take: int,
        limits: TakeLimits,
        retention: Retention,
    ) -> FinishReply:
        """Record attempt outcomes (fenced by their tokens), then take up to `take` jobs, in one
        call. An outcome whose lease was lost gets the code `LEASE_LOST`, nothing written."""
        head = self._finish_head
        if head is None or head[0] is not limits or head[1] is not retention:
            # packed by name once per worker settings: this is the worker's hot path
            argv = self.FINISH.pack(
                {
                    "take": 0,
                    "m": 0,
                    "keep_completed": retention.completed,
                    "keep_completed_ms": retention.completed_ms,
                    "keep_failed": retention.failed,
                    "keep_failed_ms": retention.failed_ms,
                    **self._limits(limits),
                    **self._queue,
                }
            )
            head = self._finish_head = (limits, retention, argv)
        args = list(head[2])
        args[_FINISH_TAKE] = take
        args[_FINISH_M] = len(outcomes)
        for outcome in outcomes:
            args.extend(outcome)
        codes, reply = await self._eval("finish", self._keys["finish"], args)
        return FinishReply([int(c) for c in codes], _decode_take(reply))

    RENEW = _spec("renew", keys="active cancels", argv="base lease_ms m", group="id token")

    async def renew(self, leases: Sequence[tuple[str, str]], *, lease_ms: int) -> RenewReply:
        """Extend the leases `(job id, token)` by `lease_ms` from now; report the lost ones and
        the cancel requests of the held ones."""
        lost, cancels = await self._call(
            self.RENEW, leases, base=self.keys.base, lease_ms=lease_ms, m=len(leases)
        )
        pairs = [text(x) for x in cancels]
        return RenewReply([text(x) for x in lost], dict(zip(pairs[::2], pairs[1::2], strict=True)))

    RECOVER = _spec(
        "recover",
        keys="stall_lock active wait prio priorities id_counter failed cancels marker events",
        argv="base maxlen max_stalls lock_ms batch owner keep_failed keep_failed_ms",
        events="stalled",
    )

    async def recover(
        self,
        *,
        owner: str,
        max_stalls: int,
        lock_ms: int,
        batch: int,
        retention: Retention,
    ) -> RecoverReply | None:
        """The stall check: jobs whose lease expired go back to the front of the queue, or fail
        after `max_stalls`. None when another worker holds the stall lock."""
        reply = await self._call(
            self.RECOVER,
            owner=owner,
            max_stalls=max_stalls,
            lock_ms=lock_ms,
            batch=batch,
            keep_failed=retention.failed,
            keep_failed_ms=retention.failed_ms,
            **self._queue,
        )
        if int(reply[0]) == 0:
            return None
        return RecoverReply([text(x) for x in reply[1]], [text(x) for x in reply[2]])

    PROGRESS = _spec(
        "progress", keys="active events", argv="base maxlen id token progress", events="progress"
    )

    async def progress(self, job_id: str, token: str, progress: int) -> None:
        """Record a running job's progress.

        Raises:
            LeaseLostError: the token no longer holds the job (nothing written).
        """
        code = await self._call(
            self.PROGRESS, id=job_id, token=token, progress=progress, **self._queue
        )
        raise_for_code(int(code), f"job {job_id}: progress not recorded")

    SETTLE = _spec("settle", keys="active shared_limiter", argv="base id token usage buckets")

    async def settle(self, job_id: str, token: str, usage: str, *, buckets: str) -> None:
        """Charge a running job's real usage (`bucket=n,...`) to the shared limiter, refunding
        what its take reserved at the first settle of the attempt.

        Raises:
            LeaseLostError: the token no longer holds the job (nothing written).
        """
        code = await self._call(
            self.SETTLE, base=self.keys.base, id=job_id, token=token, usage=usage, buckets=buckets
        )
        raise_for_code(int(code), f"job {job_id}: usage not settled")

    LEARN = _spec("learn", keys="shared_limiter", argv="bucket limit remaining buckets")

    async def learn(
        self, bucket: str, *, limit: float | None, remaining: float | None, buckets: str
    ) -> tuple[float | None, float | None]:
        """Set a shared-limiter bucket's capacity to `limit` and lower its tokens to
        `remaining` (each when given). Returns the bucket's (capacity, tokens) after it."""
        capacity, tokens = await self._call(
            self.LEARN,
            bucket=bucket,
            limit="" if limit is None else _num(limit),
            remaining="" if remaining is None else _num(remaining),
            buckets=buckets,
        )
        c, t = text(capacity), text(tokens)
        return (float(c) if c else None), (float(t) if t else None)

    # -- reading ---------------------------------------------------------------------------

    GETJOB = _spec("getjob", keys="delayed meta", argv="base id")

    async def get_job(self, job_id: str) -> JobRecord | None:
        """One job read atomically, or None."""
        reply = await self._call(self.GETJOB, base=self.keys.base, id=job_id)
        if not reply:
            return None
        env, state, flat = reply
        run_state = {text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
        return JobRecord(env, text(state), run_state)

    COUNTS = _spec("counts", keys="wait prio active delayed completed failed meta limited")

    async def counts(self) -> Counts:
        """Jobs per state, in one snapshot."""
        return Counts(*(int(x) for x in await self._call(self.COUNTS)))

    # -- operations ------------------------------------------------------------------------

    PAUSE = _spec("pause", keys="meta marker events", argv="maxlen pause", events="paused resumed")

    async def pause(self, paused: bool) -> bool:
        """Pause or resume job starts; True when the state changed."""
        changed = await self._call(
            self.PAUSE, maxlen=self.events_maxlen, pause="1" if paused else "0"
        )
        return bool(changed)

    CANCEL = _spec(
        "cancel",
        keys=_JOB_KEYS,
        argv="base maxlen id reason channel",
        events="removed cancelling",
    )

    async def cancel(self, job_id: str, reason: str) -> CancelOutcome:
        """Remove a waiting or delayed job, or signal a running one's worker."""
        code = int(
            await self._call(
                self.CANCEL,
                id=job_id,
                reason=reason,
                channel=self.keys.cancel_channel,
                **self._queue,
            )
        )
        raise_for_code(code, f"job {job_id}")
        return _CANCEL_OUTCOMES[code]

    REMOVE = _spec("remove", keys=_JOB_KEYS, argv="base maxlen id", events="removed")

    async def remove(self, job_id: str) -> bool:
        """Delete a job that is not running; False when there is none.

        Raises:
            QueueStateError: the job is active.
        """
        code = int(await self._call(self.REMOVE, id=job_id, **self._queue))
        raise_for_code(code, f"job {job_id} of queue {self.keys.queue}")
        return code == 1

    RETRY = _spec(
        "retry",
        keys="failed wait prio priorities id_counter marker events",
        argv="base maxlen batch upto_ms m",
        group="id",
        events="retrying",
    )

    async def retry_job(self, job_id: str) -> None:
        """Move one failed job back to waiting, attempts reset.

        Raises:
            JobNotFoundError: no such job.
            QueueStateError: the job has not failed.
        """
        reply = await self._call(self.RETRY, [(job_id,)], batch=0, upto_ms=-1, m=1, **self._queue)
        raise_for_code(int(reply[1]), f"job {job_id} of queue {self.keys.queue}")

    async def retry_failed(self, *, batch: int, upto_ms: int) -> tuple[int, int]:
        """Move up to `batch` of the oldest jobs failed at or before `upto_ms` (-1 = any) back
        to waiting. Returns (retried, examined): examined < batch means none is left."""
        reply = await self._call(self.RETRY, batch=batch, upto_ms=upto_ms, m=0, **self._queue)
        return int(reply[0]), int(reply[1])

    DRAIN = _spec(
        "drain",
        keys="wait prio priorities delayed cancels events costs",
        argv="base maxlen batch",
        events="removed",
    )

    async def drain(self, batch: int) -> tuple[int, int]:
        """Remove up to `batch` waiting and delayed jobs. Returns (removed, left)."""
        removed, left = await self._call(self.DRAIN, batch=batch, **self._queue)
        return int(removed), int(left)

    CLEAN = _spec(
        "clean",
        keys="wait prio priorities delayed completed failed cancels events costs",
        argv="base maxlen state grace_ms limit scan_cap",
        events="removed",
    )

    async def clean(self, state: str, *, grace_ms: int, limit: int, scan_cap: int) -> list[str]:
        """Remove up to `limit` jobs of `state` older than `grace_ms`; returns their ids."""
        if state not in _CLEAN_STATES:
            raise ConfigError(f"clean state must be one of {sorted(_CLEAN_STATES)}, got {state!r}")
        reply = await self._call(
            self.CLEAN, state=state, grace_ms=grace_ms, limit=limit, scan_cap=scan_cap,
            **self._queue,
        )  # fmt: skip
        return [text(x) for x in reply]

    OBLITERATE = _spec(
        "obliterate", keys="active meta events", argv="maxlen force", events="obliterating"
    )

    async def obliterate(self, *, force: bool) -> None:
        """Pause the queue for the deletion of its keys.

        Raises:
            QueueStateError: jobs are active and `force` is False (nothing changed).
        """
        code = int(
            await self._call(
                self.OBLITERATE, maxlen=self.events_maxlen, force="1" if force else "0"
            )
        )
        raise_for_code(code, f"queue {self.keys.queue} (pass force=True to obliterate anyway)")

    LOG = _spec("log", keys="logs(id) job(id)", argv="line max_lines")

    async def log(self, job_id: str, line: str, *, max_lines: int) -> int:
        """Append a line to a job's log, keeping the newest `max_lines`; returns its length.

        Raises:
            JobNotFoundError: no such job (nothing written).
        """
        keys = [self.keys.logs(job_id), self.keys.job(job_id)]
        n = int(await self._call(self.LOG, keys=keys, line=line, max_lines=max_lines))
        raise_for_code(n, f"job {job_id} of queue {self.keys.queue}")
        return n


_FINISH_TAKE = Scripts.FINISH.index("take")
_FINISH_M = Scripts.FINISH.index("m")

SPECS: Mapping[str, ScriptSpec] = {
    spec.name: spec for spec in vars(Scripts).values() if isinstance(spec, ScriptSpec)
}
"""Every script's declared contract, by script name."""
