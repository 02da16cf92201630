"""What the scripts take and give back, typed: the values `Scripts` methods accept and return,
and the one table from script return codes to errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from ..errors import (
    InvalidJobError,
    JobNotFoundError,
    JobQueueError,
    LeaseLostError,
    QueueStateError,
)
from ._inputs import cut

__all__ = [
    "CODE_ERRORS",
    "LEASE_LOST",
    "AddCode",
    "AddedJob",
    "CancelOutcome",
    "Counts",
    "FinishReply",
    "JobRecord",
    "NewJob",
    "Outcome",
    "OutcomeKind",
    "RecoverReply",
    "RenewReply",
    "Retention",
    "TakeLimits",
    "TakeReply",
    "TakenJob",
    "raise_for_code",
]

# The one table from script return codes to errors: nothing parses error strings.
CODE_ERRORS: dict[int, tuple[type[JobQueueError], str]] = {
    -1: (JobNotFoundError, "job not found"),
    -2: (LeaseLostError, "the lease on this job was lost"),
    -3: (QueueStateError, "the job is not in a state that allows this"),
    -4: (QueueStateError, "the queue has active jobs"),
    -5: (QueueStateError, "the job is active (running); cancel it instead"),
    -6: (QueueStateError, "the job has not failed"),
    -7: (InvalidJobError, "a job of the flow has the id of an existing job (nothing written)"),
    -8: (QueueStateError, "the job is being cancelled: no children added"),
    -9: (QueueStateError, "the job is not delayed"),
}

LEASE_LOST = -2
"""The code `finish` gives an outcome it refused: the worker no longer held the job's lease."""


def raise_for_code(code: int, context: str = "") -> None:
    """Raise the typed error for a negative script return code (no-op for codes >= 0)."""
    if code >= 0:
        return
    cls, message = CODE_ERRORS.get(code, (JobQueueError, f"script returned code {code}"))
    # the context names a job id given by the caller: cut, so a 10 KB id is not echoed whole
    raise cls(f"{message}: {cut(context)}" if context else message)


OutcomeKind = Literal["c", "f", "r", "d", "b", "h", "w"]
"""`c` completed, `f` failed attempt, `r` rate limited (holds the queue, or every queue of its
shared limiter), `d` deferred without an attempt, `b` deferred by a server-side failure under a
circuit breaker (without an attempt, within the breaker's max wait), `h` handed back at
shutdown, `w` waiting for the children it added (without an attempt)."""


class Outcome(NamedTuple):
    """One finished attempt as `finish` records it (its ARGV group, in header order)."""

    job_id: str
    token: str
    kind: OutcomeKind
    payload: str
    """The result JSON (completed) or the error message."""
    error_type: str
    delay_ms: int
    """Failed: the retry delay (< 0 = not retried). Rate limited, deferred: the deferral."""
    limit: int
    """Failed: the job's attempts in all. Rate limited, deferred: the most deferrals."""


class NewJob(NamedTuple):
    """One job for `add` (its ARGV group, in header order)."""

    job_id: str
    """'' = the queue's counter gives the id."""
    name: str
    envelope: str
    """The job's JSON object; the server appends its creation time."""
    delay_ms: int
    priority: int
    cost: str = ""
    """Its cost of the queue's shared limiter (`bucket=n,...`; '' = the queue's default)."""
    group: str = ""
    """`<cap>:<group>` (cap 0 = none) for a job of a group, '' for none."""
    dedup: str = ""
    """`<ttl_ms>:<d|r>:<key>` (drop or replace a duplicate) with a dedup key, '' for none."""


AddCode = Literal["created", "exists", "dropped", "replaced"]
"""What `add` did with one job: created; nothing (a job with this id existed); dropped as a
duplicate of the job whose id it returns (dedup key); replaced that waiting job's data."""

_ADD_CODES: tuple[AddCode, ...] = ("exists", "created", "dropped", "replaced")


class AddedJob(NamedTuple):
    """What `add` did with one job."""

    job_id: str
    """The job created, or the existing one (same id, or the holder of the dedup key)."""
    code: AddCode

    @property
    def created(self) -> bool:
        """True when a new job was stored."""
        return self.code == "created"

    @classmethod
    def from_reply(cls, job_id: str, code: int) -> AddedJob:
        """From add.lua's reply pair."""
        return cls(job_id, _ADD_CODES[code])


@dataclass(frozen=True, slots=True)
class TakeLimits:
    """What every take applies: who takes, for how long, and the queue's shared caps.

    Attributes:
        worker: the worker's id, the prefix of each lease token.
        lease_ms: the lease of each job taken.
        concurrency: cap on active jobs across all workers (0 = none).
        rate_max: job starts per `rate_per_ms` (0 = no rate limit).
        rate_per_ms: the rate limit's period.
        limiter: the queue's shared limiter ('' = none).
        buckets: its configured buckets (`Limiter.encode_buckets`).
        cost: the queue's default job cost (`bucket=n,...`).
        breaker: its breaker (`Limiter.encode_breaker`, '' = none).
    """

    worker: str
    lease_ms: int
    concurrency: int = 0
    rate_max: int = 0
    rate_per_ms: int = 0
    limiter: str = ""
    buckets: str = ""
    cost: str = ""
    breaker: str = ""


@dataclass(frozen=True, slots=True)
class Retention:
    """Finished jobs kept: counts and ages in ms, -1 = unbounded."""

    completed: int = -1
    completed_ms: int = -1
    failed: int = -1
    failed_ms: int = -1


class TakenJob(NamedTuple):
    """A job moved to active for this worker."""

    job_id: str
    envelope: bytes
    token: str
    attempt: int
    """The number of the attempt starting now, from 1."""
    step: int = 0
    """How many times the job waited for children it added (`Job.step`)."""


@dataclass(frozen=True, slots=True)
class TakeReply:
    """Jobs taken, or (none taken) how long a worker may block before anything can change.

    Attributes:
        jobs: the jobs taken.
        wait_ms: with no job taken, ms until the next delayed job or token is due (0 = only
            a new job or a resume can change anything); -1 when jobs were taken.
    """

    jobs: list[TakenJob]
    wait_ms: int


@dataclass(frozen=True, slots=True)
class FinishReply:
    """Per outcome 1 (the job ended), 2 (it will run again) or `LEASE_LOST` (refused), the
    jobs taken in the same call, and how many jobs are active on the queue after it (this
    worker's and every other's)."""

    codes: list[int]
    taken: TakeReply
    active: int = 0


@dataclass(frozen=True, slots=True)
class RenewReply:
    """Leases this worker lost, and held jobs someone asked to cancel (id -> reason)."""

    lost: list[str]
    cancels: dict[str, str]


@dataclass(frozen=True, slots=True)
class RecoverReply:
    """Jobs the stall check put back in the queue, and those it failed for good."""

    requeued: list[str]
    failed: list[str]


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One job as stored: its envelope, its state and its run-state hash (raw values)."""

    envelope: bytes
    state: str
    run_state: dict[str, bytes]


@dataclass(frozen=True, slots=True)
class Counts:
    """A consistent snapshot of the number of jobs per state (`paused`: ready jobs held back
    by a paused queue) and ms left of a rate-limit hold."""

    waiting: int
    active: int
    delayed: int
    completed: int
    failed: int
    paused: int
    limited_ms: int
    waiting_children: int = 0
    """Flow parents waiting for their children."""


CancelOutcome = Literal["removed", "signalled", "not_found", "finished"]
"""What `cancel` did: removed a waiting/delayed job, signalled a running one's worker, found no
such job, or found it finished already (nothing changed)."""
