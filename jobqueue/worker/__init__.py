"""The worker side of a queue: `Worker` and what runs beside it."""

from .hooks import WorkerHooks
from .worker import Handler, Worker

__all__ = ["Handler", "Worker", "WorkerHooks"]
