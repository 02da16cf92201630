"""The values of a flow: a child to add, and a child's failure as its parent reads it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = ["ON_FAILURE", "Child", "ChildFailure", "ChildQueue", "OnFailure"]


class ChildQueue(Protocol):
    """A queue a child may be added to: a `Queue` (named by shape: the queue module imports
    this one)."""

    @property
    def name(self) -> str:
        """The queue's name."""
        ...


OnFailure = Literal["fail", "ignore", "continue"]
"""What a child's failure (for good: retries are spent; or it was cancelled or removed) does to
its parent: `fail` it at once, `ignore` the child, or `continue`: the parent runs with the
failure in `Job.children_failures()`."""

ON_FAILURE: frozenset[str] = frozenset({"fail", "ignore", "continue"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Child:
    """One child of a flow (`Queue.add_flow`); it may have children of its own.

    Attributes:
        queue: the child's queue: a `Queue` (same prefix, same Redis), or the name of a queue
            in the parent queue's hash slot: the parent's own queue, a queue on the same
            shared limiter, or one given the same `QueueConfig.slot` (see docs/design.md: a
            flow lives in one Redis Cluster slot).
        name: the job name.
        data: any JSON value.
        on_failure: what its failure does to its parent (`OnFailure`).
        children: its own children (it then waits for them before it runs).
        job_id: your own id (unique in its queue; an existing id refuses the whole flow).
        delay: seconds before it may start (only for a child without children).
        priority: higher is taken first.
        attempts: total attempts (default: its queue's).
        cost: what it costs of the shared limiter, per bucket (see `Queue.add`).
        group: its group (fair share, see `Queue.add`): once ready (now, after its delay, or
            when its own children have ended) it waits in its group, served in turn with the
            other groups of its priority level.
        group_concurrency: at most this many jobs of its group run at once (default: its
            queue's `QueueConfig.group_concurrency`, when `queue` is a `Queue`).
    """

    queue: ChildQueue | str
    name: str
    data: Any = None
    on_failure: OnFailure = "fail"
    children: Sequence[Child] = ()
    job_id: str | None = None
    delay: float = 0.0
    priority: int = 0
    attempts: int | None = None
    cost: Mapping[str, float] | None = None
    group: str | None = None
    group_concurrency: int | None = None


@dataclass(frozen=True, slots=True)
class ChildFailure:
    """A child with `on_failure="continue"` that failed, as its parent reads it.

    Attributes:
        error_type: e.g. `UNKNOWN`, `CANCELLED`, `STALLED` (see `ErrorType`).
        message: its last error message (or the cancel reason).
    """

    error_type: str
    message: str
