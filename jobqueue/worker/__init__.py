"""The worker side of a queue: `Worker` and what runs beside it."""

from .hooks import WorkerHooks
from .isolation import HandlerCrashedError, IsolatedHandlerError, ProcessIsolation
from .worker import Handler, Worker

__all__ = [
    "Handler",
    "HandlerCrashedError",
    "IsolatedHandlerError",
    "ProcessIsolation",
    "Worker",
    "WorkerHooks",
]
