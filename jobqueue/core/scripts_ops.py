"""The operations scripts of a queue (pause, cancel, remove, retry, drain, clean, obliterate,
log): one method per script, as in `jobqueue.core.scripts`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ._runner import ScriptRunner, spec
from .codec import text
from .replies import CancelOutcome, raise_for_code

__all__ = ["CANCEL_OUTCOMES", "OperationScripts"]

_JOB_KEYS = (
    "wait prio priorities delayed active completed failed cancels events costs groups id_counter"
    " jobs"
)

CANCEL_OUTCOMES: dict[int, CancelOutcome] = {
    0: "not_found",
    1: "removed",
    2: "signalled",
    3: "finished",
}
_CLEAN_STATES = frozenset({"completed", "failed", "waiting", "delayed"})


class OperationScripts(ScriptRunner):
    """The scripts that change jobs on an operator's request."""

    PAUSE = spec("pause", keys="meta marker events", argv="maxlen pause", events="paused resumed")

    async def pause(self, paused: bool) -> bool:
        """Pause or resume job starts; True when the state changed."""
        changed = await self._call(
            self.PAUSE, maxlen=self.events_maxlen, pause="1" if paused else "0"
        )
        return bool(changed)

    CANCEL = spec(
        "cancel",
        keys=_JOB_KEYS,
        argv="base maxlen id reason channel",
        events="removed cancelling failed waiting",
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
        return CANCEL_OUTCOMES[code]

    REMOVE = spec("remove", keys=_JOB_KEYS, argv="base maxlen id", events="removed failed waiting")

    async def remove(self, job_id: str) -> bool:
        """Delete a job that is not running; False when there is none.

        Raises:
            QueueStateError: the job is active.
        """
        code = int(await self._call(self.REMOVE, id=job_id, **self._queue))
        raise_for_code(code, f"job {job_id} of queue {self.keys.queue}")
        return code == 1

    RETRY = spec(
        "retry",
        keys="failed wait prio priorities id_counter marker events groups jobs",
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

    PROMOTE = spec(
        "promote",
        keys="delayed wait prio priorities id_counter marker events groups jobs",
        argv="base maxlen id",
        events="waiting",
    )

    async def promote(self, job_id: str) -> None:
        """Make a delayed job ready to run now.

        Raises:
            JobNotFoundError: no such job.
            QueueStateError: the job is not delayed.
        """
        code = int(await self._call(self.PROMOTE, id=job_id, **self._queue))
        raise_for_code(code, f"job {job_id} of queue {self.keys.queue}")

    DRAIN = spec(
        "drain",
        keys="wait prio priorities delayed cancels events costs groups id_counter jobs",
        argv="base maxlen batch",
        events="removed failed waiting",
    )

    async def drain(self, batch: int) -> tuple[int, int]:
        """Remove up to `batch` waiting and delayed jobs. Returns (removed, left)."""
        removed, left = await self._call(self.DRAIN, batch=batch, **self._queue)
        return int(removed), int(left)

    CLEAN = spec(
        "clean",
        keys=(
            "wait prio priorities delayed completed failed cancels events costs groups id_counter"
            " jobs"
        ),
        argv="base maxlen state grace_ms limit scan_cap",
        events="removed failed waiting",
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

    OBLITERATE = spec(
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

    LOG = spec("log", keys="logs(id) jobs legacy_job(id)", argv="id line max_lines")

    async def log(self, job_id: str, line: str, *, max_lines: int) -> int:
        """Append a line to a job's log, keeping the newest `max_lines`; returns its length.

        Raises:
            JobNotFoundError: no such job (nothing written).
        """
        k = self.keys
        keys = [k.logs(job_id), k.jobs, k.legacy_job(job_id)]
        n = int(await self._call(self.LOG, keys=keys, id=job_id, line=line, max_lines=max_lines))
        raise_for_code(n, f"job {job_id} of queue {self.keys.queue}")
        return n

    BEAT = spec(
        "beat", keys="worker(id) worker_set", argv="name ttl_ms keep_ms n", group="field value"
    )

    async def beat(
        self, name: str, fields: Mapping[str, Any], *, ttl_ms: int, keep_ms: int
    ) -> bool:
        """Write worker `name`'s heartbeat (`fields`, and `beat` = the Redis time in ms);
        True when its hash was gone (a first beat, or Redis lost its data)."""
        keys = [self.keys.worker(name), self.keys.worker_set]
        groups = [(k, v) for k, v in fields.items() if k != "beat"]
        created = await self._call(
            self.BEAT, groups, keys=keys, name=name, ttl_ms=ttl_ms, keep_ms=keep_ms,
            n=len(groups),
        )  # fmt: skip
        return int(created) == len(groups) + 1
