"""Flows: a parent job with children, added atomically as one tree (`Queue.add_flow`).

The parent waits in state `waiting-children` until every child has ended, then runs and reads
its children's results (`Job.children_results()`, `Job.children_failures()`). What a child's
failure does to its parent is the child's `on_failure`: `"fail"` fails the parent at once,
`"ignore"` forgets the child, `"continue"` runs the parent with the failure recorded.
The fan-in is one atomic step of the Lua state machine (see docs/design.md, "Flows").
"""

from .types import Child, ChildFailure, OnFailure

__all__ = ["Child", "ChildFailure", "OnFailure"]
