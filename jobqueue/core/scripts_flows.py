"""The flow scripts of a queue (`add_flow`, `add_children`, `cancel_tree`): one method per
script, as in `jobqueue.core.scripts`. Their jobs may live on other queues of the same hash
slot: those are named by their base (`QueueKeys.base`) in ARGV."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from ._runner import ScriptRunner, spec
from .codec import text
from .replies import raise_for_code

__all__ = ["FlowNodeArgs", "FlowScripts", "TreeCancel"]


class FlowNodeArgs(NamedTuple):
    """One job of a flow for `add_flow` (its ARGV group, in header order); parents first."""

    qbase: str
    """`QueueKeys.base` of the job's queue (in the root's hash slot)."""
    queue: str
    job_id: str
    """'' = its queue's counter gives the id."""
    name: str
    envelope: str
    delay_ms: int
    priority: int
    cost: str
    parent: int
    """Index of the parent node; -1 for the root (`add_flow`) or a child of the running job
    (`add_children`)."""
    on_failure: str
    """'fail', 'ignore' or 'continue'; '' for the root of `add_flow`."""
    group: str = ""
    """`<cap>:<group>` (cap 0 = none) for a job of a group (fair share), '' for none."""


class TreeCancel(NamedTuple):
    """What `cancel_tree` did: the root's code (as `cancel`), and the references
    `<queue>:<id>` of the jobs under it that were removed and signalled."""

    root: int
    removed: tuple[str, ...]
    signalled: tuple[str, ...]


class FlowScripts(ScriptRunner):
    """The scripts that add and cancel trees of jobs."""

    ADD_FLOW = spec(
        "add_flow",
        keys="id_counter marker events jobs",
        argv="base maxlen n",
        group="qbase queue id name envelope delay_ms priority cost parent on_failure group",
        events="added",
    )

    async def add_flow(self, nodes: Sequence[FlowNodeArgs]) -> tuple[bool, list[str]]:
        """Store a tree of jobs atomically. Returns (True, the ids in node order), or (False,
        [root id]) when the root existed already (nothing written).

        Raises:
            InvalidJobError: a child's id is taken by an existing job (nothing written).
        """
        reply = await self._call(self.ADD_FLOW, nodes, n=len(nodes), **self._queue)
        code = int(reply[0])
        if code < 0:
            bad = nodes[int(reply[1])]
            raise_for_code(code, f"job {bad.job_id} of queue {bad.queue}")
        return code == 1, [text(x) for x in reply[1:]]

    ADD_CHILDREN = spec(
        "add_children",
        keys="active cancels jobs",
        argv="base maxlen job token n",
        group="qbase queue id name envelope delay_ms priority cost parent on_failure group",
        events="added",
    )

    async def add_children(
        self, job_id: str, token: str, nodes: Sequence[FlowNodeArgs]
    ) -> tuple[int, list[str]]:
        """Add children (and their own) to a running job, atomically, fenced by its lease
        token; children the job knows already are left as they are. Returns (how many jobs
        were written, every node's id in node order).

        Raises:
            LeaseLostError: the token no longer holds the job (nothing written).
            QueueStateError: the job is being cancelled (nothing written).
            InvalidJobError: a node's id is taken by an unrelated job (nothing written).
        """
        reply = await self._call(
            self.ADD_CHILDREN, nodes, job=job_id, token=token, n=len(nodes), **self._queue
        )
        code = int(reply[0])
        if code < 0:
            context = f"job {job_id}"
            if code == -7:
                bad = nodes[int(reply[1])]
                context = f"job {bad.job_id} of queue {bad.queue}"
            raise_for_code(code, context)
        return int(reply[1]), [text(x) for x in reply[2:]]

    CANCEL_TREE = spec(
        "cancel_tree",
        keys="events cancels jobs",
        argv="base maxlen id reason",
        events="removed cancelling failed waiting",
    )

    async def cancel_tree(self, job_id: str, reason: str) -> TreeCancel:
        """Cancel a job and every job under it that has not ended (see `cancel_tree.lua`)."""
        root, removed, signalled = await self._call(
            self.CANCEL_TREE, id=job_id, reason=reason, **self._queue
        )
        return TreeCancel(
            int(root), tuple(text(r) for r in removed), tuple(text(r) for r in signalled)
        )
