"""The typed script layer: one method per Lua script under `lua/`.

Each method owns its script's call: the keys it touches (by `QueueKeys` name, in the order of
the script's header), its ARGV (by name), the decoding of its reply into the types of
`jobqueue.core.replies`, and the mapping of its return codes to errors (one table,
`replies.CODE_ERRORS`). Callers and tests use only these methods; `tests/unit` keeps each
method's declared names equal to its script's header.

Scripts run by EVALSHA and are loaded again when the server answers NOSCRIPT (after a restart
or SCRIPT FLUSH); on a plain fast connection as Redis's default user they run as one function
library instead (`FCALL`, loaded again when the server lost it: `jobqueue.core._library`,
`JOBQUEUE_FUNCTIONS`). The calls go through a `FastConnection` (one multiplexed hiredis socket, see
`jobqueue.core.fastconn`) made from the redis-py client's connection settings: a fraction of
redis-py's client CPU per round trip. Opt out with `Scripts(..., fastconn=False)` or
`JOBQUEUE_FASTCONN=0`; clients the fast path cannot copy (TLS, Sentinel, Cluster, credential
providers, fakeredis) stay on redis-py.

On a fakeredis client (`connection.is_fakeredis`) the scripts are loaded without their `#!lua`
shebang line, which fakeredis's Lua cannot parse (`_loader.load_script(name, shebang=False)`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from ..errors import JobQueueError
from ._runner import FASTCONN_ENV, BlockFirst, ScriptSpec, fastconn_enabled, spec
from .codec import text
from .replies import (
    AddedJob,
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
from .scripts_flows import FlowScripts
from .scripts_ops import OperationScripts
from .scripts_schedules import ScheduleScripts

__all__ = ["FASTCONN_ENV", "SPECS", "BlockFirst", "ScriptSpec", "Scripts", "fastconn_enabled"]

_TAKE_KEYS = (
    "wait prio priorities delayed active meta limiter limited marker events id_counter failed"
    " groups"
)
_SHARED_KEYS = " shared_limiter shared_hold breaker breaker_fails costs"
_TAKE_ARGV = (
    "base maxlen take worker lease_ms concurrency rate_max rate_per_ms limiter buckets cost breaker"
)

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
                int(step),
            ),
        )
        for i, env, t, a, step in zip(*[iter(reply[1:])] * 5, strict=True)
    ]
    return TakeReply(jobs, int(reply[0]))


def _decode_added(reply: Sequence[Any]) -> list[AddedJob]:
    """add.lua's and add_plain.lua's reply: `{id1, code1, id2, code2, ...}`."""
    return [AddedJob.from_reply(text(reply[i]), int(reply[i + 1])) for i in range(0, len(reply), 2)]


def _decode_added_one(reply: Sequence[Any]) -> AddedJob:
    return _decode_added(reply)[0]


class Scripts(OperationScripts, FlowScripts, ScheduleScripts):
    """The scripts of one queue, one typed method each (the operations ones come from
    `OperationScripts`, the schedulers' from `ScheduleScripts`); see `ScriptRunner` for the
    arguments."""

    _finish_head: tuple[TakeLimits, Retention, list[Any]] | None = None

    # -- adding and running jobs -----------------------------------------------------------

    ADD = spec(
        "add",
        keys="id_counter wait prio delayed priorities marker events costs groups jobs",
        argv="base maxlen n",
        group="id name envelope delay_ms priority cost group dedup",
        events="added deduplicated",
    )

    async def add(self, jobs: Sequence[NewJob]) -> list[AddedJob]:
        """Store new jobs, ready or delayed; a job whose id exists already is left as it is,
        a duplicate by dedup key is dropped or replaces its waiting holder."""
        if len(jobs) == 1:  # `Queue.add` with options: packed once but for the job's fields
            head = (self.keys.base, self.events_maxlen, 1)
            fields = tuple(map(str, jobs[0]))
            return [await self._send_tail("add", head, fields, _decode_added_one)]
        return _decode_added(await self._call(self.ADD, jobs, n=len(jobs), **self._queue))

    ADD_PLAIN = spec(
        "add_plain",
        keys="id_counter wait marker events jobs",
        argv="base maxlen name envelope",
        events="added",
    )

    def add_plain(self, name: str, envelope: str) -> Awaitable[AddedJob]:
        """Store one new job with only a name and data (`envelope` is its JSON), ready at the
        end of the FIFO list; code `exists` when a job of the counter's next id exists.

        On the fast path the command is sent before this returns (see `_send_tail`): await
        the result once the caller's own work is done."""
        head = (self.keys.base, self.events_maxlen)
        return self._send_tail("add_plain", head, (name, envelope), _decode_added_one)

    TAKE = spec(
        "take",
        keys=_TAKE_KEYS + _SHARED_KEYS + " jobs",
        argv=_TAKE_ARGV,
        events="active failed breaker waiting",
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

    async def take(
        self, n: int, limits: TakeLimits, *, behind: BlockFirst | None = None
    ) -> TakeReply:
        """Lease up to `n` ready jobs to `limits.worker`; with `behind`, on its connection right
        after its `BZPOPMIN` ends (woken or timed out), with no round trip between."""
        args = self.TAKE.pack({"take": n, **self._limits(limits), **self._queue})
        if behind is None:
            reply = await self._eval("take", self._keys["take"], args)
        else:
            reply = await self._eval_behind(behind, "take", self._keys["take"], args)
        return _decode_take(reply)

    FINISH = spec(
        "finish",
        keys=_TAKE_KEYS + " completed cancels" + _SHARED_KEYS + " jobs",
        argv=_TAKE_ARGV + " keep_completed keep_completed_ms keep_failed keep_failed_ms m",
        group="id token kind payload error_type delay_ms limit",
        events="completed failed retrying returned active breaker waiting waiting-children",
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
        codes, reply, active = await self._eval("finish", self._keys["finish"], args)
        return FinishReply([int(c) for c in codes], _decode_take(reply), int(active))

    RENEW = spec("renew", keys="active cancels", argv="base lease_ms m", group="id token")

    async def renew(self, leases: Sequence[tuple[str, str]], *, lease_ms: int) -> RenewReply:
        """Extend the leases `(job id, token)` by `lease_ms` from now; report the lost ones and
        the cancel requests of the held ones."""
        lost, cancels = await self._call(
            self.RENEW, leases, base=self.keys.base, lease_ms=lease_ms, m=len(leases)
        )
        pairs = [text(x) for x in cancels]
        return RenewReply([text(x) for x in lost], dict(zip(pairs[::2], pairs[1::2], strict=True)))

    RECOVER = spec(
        "recover",
        keys=(
            "stall_lock active wait prio priorities id_counter failed cancels marker events groups"
            " jobs"
        ),
        argv="base maxlen max_stalls lock_ms batch owner keep_failed keep_failed_ms",
        events="stalled failed waiting",
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

    PROGRESS = spec(
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

    SETTLE = spec("settle", keys="active shared_limiter", argv="base id token usage buckets")

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

    RESERVE = spec("reserve", keys="active shared_limiter", argv="base id token cost buckets")

    async def reserve(
        self, job_id: str, token: str, cost: str, *, buckets: str
    ) -> tuple[float, str | None, float | None]:
        """Hold `cost` (`bucket=n,...`) more of the shared limiter for a running job, given
        back at its next settle.

        Returns:
            (seconds until the buckets could pay it, None, None) once held; (0, bucket,
            capacity) when a bucket's capacity is below the amount (nothing held).

        Raises:
            LeaseLostError: the token no longer holds the job (nothing written).
        """
        reply = await self._call(
            self.RESERVE, base=self.keys.base, id=job_id, token=token, cost=cost, buckets=buckets
        )
        if not isinstance(reply, list):
            raise_for_code(int(reply), f"job {job_id}: nothing reserved")
            raise JobQueueError(f"reserve of job {job_id} answered {reply!r}")
        if int(reply[0]) == 0:
            return 0.0, text(reply[1]), float(text(reply[2]))
        return int(reply[1]) / 1000.0, None, None

    LEARN = spec("learn", keys="shared_limiter", argv="bucket limit remaining buckets")

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

    GETJOB = spec("getjob", keys="delayed meta jobs", argv="base id")

    async def get_job(self, job_id: str) -> JobRecord | None:
        """One job read atomically, or None."""
        reply = await self._call(self.GETJOB, base=self.keys.base, id=job_id)
        if not reply:
            return None
        env, state, flat = reply
        run_state = {text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
        return JobRecord(env, text(state), run_state)

    COUNTS = spec(
        "counts",
        keys="wait prio active delayed completed failed meta limited waiting_children groups",
    )

    async def counts(self) -> Counts:
        """Jobs per state, in one snapshot."""
        return Counts(*(int(x) for x in await self._call(self.COUNTS)))


_FINISH_TAKE = Scripts.FINISH.index("take")
_FINISH_M = Scripts.FINISH.index("m")

SPECS: Mapping[str, ScriptSpec] = Scripts.specs()
"""Every script's declared contract, by script name."""
