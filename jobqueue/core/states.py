"""The states of a job."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["TERMINAL_STATES", "JobState"]


class JobState(StrEnum):
    """Where a job is in its life."""

    WAITING = "waiting"
    WAITING_CHILDREN = "waiting-children"
    """A flow parent: it runs once each of its children has ended (see `Queue.add_flow`)."""
    PAUSED = "paused"
    DELAYED = "delayed"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"


TERMINAL_STATES = frozenset({JobState.COMPLETED, JobState.FAILED})
"""States a job does not leave by itself."""
