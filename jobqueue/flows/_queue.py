"""`Queue.add_flow` (mixed into `Queue`) and the queue's side of `Job.add_children`: validate a
tree of jobs, then add it in one script."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import _tracing
from .._encode import encode_job
from ..config import QueueConfig
from ..core.codec import decode_envelope
from ..core.keys import QueueKeys, validate_queue_name
from ..core.scripts import Scripts
from ..core.scripts_flows import FlowNodeArgs
from ..core.states import JobState
from ..errors import ConfigError, CrossSlotFlowError, InvalidJobError
from ..job import Job
from .types import ON_FAILURE, Child

__all__ = ["MAX_FLOW_JOBS", "QueueFlowsMixin"]

log = logging.getLogger(__name__)

MAX_FLOW_JOBS = 10_000
"""Most jobs in one flow (one atomic script writes them all)."""


def slot_tag(keys: QueueKeys) -> str:
    """The hash tag of a queue's keys: its shared slot (`QueueConfig.slot`, else its limiter's
    name), or its own name."""
    return keys.slot or keys.queue


class QueueFlowsMixin:
    """`add_flow` of `Queue`."""

    # provided by Queue
    config: QueueConfig
    keys: QueueKeys
    prefix: str
    scripts: Scripts

    if TYPE_CHECKING:

        @property
        def name(self) -> str: ...

        async def get_job(self, job_id: str) -> Job | None: ...

    async def add_flow(
        self,
        name: str,
        data: Any = None,
        *,
        children: Sequence[Child],
        job_id: str | None = None,
        priority: int = 0,
        attempts: int | None = None,
        cost: Mapping[str, float] | None = None,
        group: str | None = None,
        group_concurrency: int | None = None,
    ) -> Job:
        """Add a parent job of this queue with its children, atomically, as one tree.

        The parent waits in state `waiting-children` until every child has ended (completed,
        or failed for good, cancelled or removed: then its `on_failure` decides), then it runs
        and reads `await job.children_results()` (and `job.children_failures()`). Children
        may have children. Every job of the flow lives in this queue's Redis Cluster hash slot:
        this queue, queues on the same shared limiter (`QueueConfig(limiter=...)`), or queues
        given the same `QueueConfig(slot=...)` (each may keep its own limiter).

        Args:
            name: the parent's job name.
            data: the parent's JSON data.
            children: at least one `Child`.
            job_id: the parent's own id: adding a flow whose parent exists already writes
                nothing and returns that job.
            priority: the parent's priority once it is ready.
            attempts: the parent's total attempts (default: the queue's).
            cost: the parent's cost of the shared limiter (see `Queue.add`).
            group: the parent's group once it is ready (see `Queue.add`); each child takes
                its own `Child.group`.
            group_concurrency: the cap of the parent's group (see `Queue.add`).

        Returns:
            The parent job (state `waiting-children`).

        Raises:
            InvalidJobError: a bad job of the tree, a bad `on_failure`, two jobs with one id, a
                child id taken by an existing job (nothing written).
            CrossSlotFlowError: a child's queue is not in this queue's hash slot.
        """
        if isinstance(children, Child) or not isinstance(children, Sequence) or not children:
            raise InvalidJobError(f"children must be a non-empty list of Child, got {children!r}")
        root = encode_job(
            self.config, name, data, job_id, 0.0, priority, attempts, cost, group,
            group_concurrency,
        )  # fmt: skip
        nodes = [
            FlowNodeArgs(
                self.keys.base, self.name, root.job_id, root.name, root.envelope, 0,
                root.priority, root.cost, -1, "", root.group,
            )
        ]  # fmt: skip
        seen: set[tuple[str, str]] = set()
        if job_id is not None:
            seen.add((self.keys.base, job_id))
        self._flatten(children, 0, nodes, seen)
        if _tracing.enabled():  # one `send` span for the tree, its context in every job
            created, ids = await _tracing.send(
                self.name, nodes, self.scripts.add_flow, lambda reply: reply[1][0]
            )
        else:
            created, ids = await self.scripts.add_flow(nodes)
        if not created:
            existing = await self.get_job(ids[0])
            if existing is not None:
                return existing
        else:
            log.info("queue %s: flow %s added (%d job(s))", self.name, ids[0], len(nodes))
        state = JobState.WAITING_CHILDREN if created else JobState.WAITING
        return Job(self, ids[0], decode_envelope(root.envelope), state=state)  # type: ignore[arg-type]

    async def _add_children(
        self,
        job_id: str,
        token: str,
        children: Sequence[Child],
        *,
        id_prefix: str,
        first: int = 0,
    ) -> list[str]:
        """Add children to the running job `job_id` of this queue (see `Job.add_children`).

        A child without `job_id` gets `<id_prefix><n>`, n from `first` (its own children
        `<its id>.<n>`), so
        a handler that adds the same children again after a retry adds nothing twice.
        Returns the direct children's references `"<queue>:<id>"`, in order.
        """
        if isinstance(children, Child) or not isinstance(children, Sequence) or not children:
            raise InvalidJobError(f"children must be a non-empty list of Child, got {children!r}")
        named = [_with_ids(c, f"{id_prefix}{i}") for i, c in enumerate(children, first)]
        nodes: list[FlowNodeArgs] = []
        self._flatten(named, -1, nodes, set())
        if _tracing.enabled():  # `send` spans (one per queue), their context in every job

            async def add(traced: list[FlowNodeArgs]) -> tuple[int, list[str]]:
                return await self.scripts.add_children(job_id, token, traced)

            added, ids = await _tracing.send(self.name, nodes, add, lambda reply: None)
        else:
            added, ids = await self.scripts.add_children(job_id, token, nodes)
        if added:
            log.info("queue %s: job %s added %d child job(s)", self.name, job_id, added)
        return [f"{nd.queue}:{i}" for nd, i in zip(nodes, ids, strict=True) if nd.parent < 0]

    def _flatten(
        self,
        children: Sequence[Child],
        parent: int,
        nodes: list[FlowNodeArgs],
        seen: set[tuple[str, str]],
    ) -> None:
        for child in children:
            if not isinstance(child, Child):
                raise InvalidJobError(f"a flow child must be a Child, got {child!r}")
            if child.on_failure not in ON_FAILURE:
                raise InvalidJobError(
                    f"on_failure must be one of {sorted(ON_FAILURE)}, got {child.on_failure!r}"
                )
            kids = child.children
            if isinstance(kids, Child) or not isinstance(kids, Sequence):
                raise InvalidJobError(f"children must be a list of Child, got {kids!r}")
            if kids and child.delay:
                raise InvalidJobError(
                    f"child {child.name!r}: a child with children cannot have a delay"
                )
            keys, config = self._child_queue(child)
            new = encode_job(
                config, child.name, child.data, child.job_id, child.delay, child.priority,
                child.attempts, child.cost, child.group, child.group_concurrency,
            )  # fmt: skip
            if child.job_id is not None:
                if (keys.base, child.job_id) in seen:
                    raise InvalidJobError(
                        f"job id {child.job_id!r} appears twice in the flow on queue {keys.queue}"
                    )
                seen.add((keys.base, child.job_id))
            if len(nodes) >= MAX_FLOW_JOBS:
                raise InvalidJobError(f"a flow holds at most {MAX_FLOW_JOBS} jobs")
            nodes.append(
                FlowNodeArgs(
                    keys.base, keys.queue, new.job_id, new.name, new.envelope, new.delay_ms,
                    new.priority, new.cost, parent, child.on_failure, new.group,
                )
            )  # fmt: skip
            if kids:
                self._flatten(kids, len(nodes) - 1, nodes, seen)

    def _child_queue(self, child: Child) -> tuple[QueueKeys, QueueConfig]:
        """The child's queue keys, and the settings that validate its job (its queue's, or this
        queue's for a queue given by name)."""
        target = child.queue
        if isinstance(target, str):
            validate_queue_name(target)
            if target == self.name:
                return self.keys, self.config
            if self.keys.slot is None:
                raise CrossSlotFlowError(
                    f"child queue {target!r}: the flow's queue {self.name!r} has no shared "
                    "limiter or slot, so no other queue shares its hash slot (a flow lives in "
                    "one slot)"
                )
            # a name: the queue of that name in this queue's slot (only its base is used here)
            return QueueKeys(self.prefix, target, self.keys.slot), self.config
        keys = getattr(target, "keys", None)
        if not isinstance(target, QueueFlowsMixin) or not isinstance(keys, QueueKeys):
            raise ConfigError(f"a child's queue must be a Queue or a queue name, got {target!r}")
        if keys.prefix != self.prefix:
            raise ConfigError(
                f"child queue {keys.queue!r} has prefix {keys.prefix!r}, the flow's queue "
                f"{self.name!r} has {self.prefix!r}: a flow lives under one prefix"
            )
        if slot_tag(keys) != slot_tag(self.keys):
            raise CrossSlotFlowError(
                f"child queue {keys.queue!r} is in hash slot {{{slot_tag(keys)}}}, the flow's "
                f"queue {self.name!r} in {{{slot_tag(self.keys)}}}: every queue of a flow must "
                "share one slot (the same queue, queues on one shared limiter, or queues given "
                "one QueueConfig.slot)"
            )
        return keys, target.config


def _derived_id(candidate: str) -> str:
    # a job id holds at most 200 characters: a longer derived one is replaced by its digest
    if len(candidate) <= 200:
        return candidate
    return "dyn:" + hashlib.sha256(candidate.encode()).hexdigest()


def _with_ids(child: Child, candidate: str) -> Child:
    """The child, and its own children, each with a job id (derived when it has none)."""
    if not isinstance(child, Child):
        return child  # refused by _flatten, naming it
    job_id = child.job_id if child.job_id is not None else _derived_id(candidate)
    kids = child.children
    if isinstance(kids, Sequence) and not isinstance(kids, Child):
        kids = [_with_ids(k, f"{job_id}.{i}") for i, k in enumerate(kids)]
    return dataclasses.replace(child, job_id=job_id, children=kids)
