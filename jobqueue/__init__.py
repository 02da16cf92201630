"""jobqueue: an asyncio job queue whose every state change is one atomic Redis Lua script.

queue = Queue(QueueConfig("emails", attempts=5), redis="redis://localhost:6379/0")
await queue.add("send", {"to": "a@example.com"})
await Worker(queue, handler, concurrency=10).run()

Or RQ style: `@queue.task` on a function, `await fn.enqueue(...)`, `Worker(queue, queue.tasks)`
(or `python -m jobqueue worker myapp.tasks`); see `jobqueue.tasks`.
"""

from .config import QueueConfig, RateLimit
from .core.backoff import exponential_delay
from .core.connection import connect
from .core.keys import QueueKeys
from .core.redact import redact, redact_url
from .core.states import JobState
from .dedup import Dedup
from .errors import (
    ConfigError,
    CrossSlotFlowError,
    ErrorType,
    InvalidJobError,
    JobFailedError,
    JobNotFoundError,
    JobQueueError,
    LeaseLostError,
    NotDurableError,
    PayloadTooLargeError,
    QueueFullError,
    QueueStateError,
    RetryAfter,
    UnrecoverableError,
    UnsafeRedisError,
    WaitForChildren,
)
from .events import Event, QueueEvents
from .flows import Child, ChildFailure, OnFailure
from .job import Job, get_current_job
from .limits import Breaker, Bucket, Limiter
from .limits.state import BreakerState, BucketState, LimiterState
from .loop import run
from .maintenance import cleanup_old_jobs, discover_queues
from .queue import Queue
from .queue_limits import QueueLimits
from .queue_ops import CancelOutcome, TreeCancelResult
from .retry import (
    Classification,
    ErrorTypeInfo,
    ErrorVerdict,
    backoff_delay,
    classify_error,
    error_type_info,
    register_error_rule,
    register_error_type,
    retry_after_seconds,
    unregister_error_rule,
    unregister_error_type,
    with_retry,
)
from .schedules import Schedule
from .tasks import Task, TaskRegistry
from .worker import (
    HandlerCrashedError,
    IsolatedHandlerError,
    ProcessIsolation,
    Worker,
    WorkerHooks,
)
from .worker.outcomes import is_final_failure
from .workerinfo import WorkerInfo

__all__ = [
    "Breaker",
    "BreakerState",
    "Bucket",
    "BucketState",
    "CancelOutcome",
    "Child",
    "ChildFailure",
    "Classification",
    "ConfigError",
    "CrossSlotFlowError",
    "Dedup",
    "ErrorType",
    "ErrorTypeInfo",
    "ErrorVerdict",
    "Event",
    "HandlerCrashedError",
    "InvalidJobError",
    "IsolatedHandlerError",
    "Job",
    "JobFailedError",
    "JobNotFoundError",
    "JobQueueError",
    "JobState",
    "LeaseLostError",
    "Limiter",
    "LimiterState",
    "NotDurableError",
    "OnFailure",
    "PayloadTooLargeError",
    "ProcessIsolation",
    "Queue",
    "QueueConfig",
    "QueueEvents",
    "QueueFullError",
    "QueueKeys",
    "QueueLimits",
    "QueueStateError",
    "RateLimit",
    "RetryAfter",
    "Schedule",
    "Task",
    "TaskRegistry",
    "TreeCancelResult",
    "UnrecoverableError",
    "UnsafeRedisError",
    "WaitForChildren",
    "Worker",
    "WorkerHooks",
    "WorkerInfo",
    "backoff_delay",
    "classify_error",
    "cleanup_old_jobs",
    "connect",
    "discover_queues",
    "error_type_info",
    "exponential_delay",
    "get_current_job",
    "is_final_failure",
    "redact",
    "redact_url",
    "register_error_rule",
    "register_error_type",
    "retry_after_seconds",
    "run",
    "unregister_error_rule",
    "unregister_error_type",
    "with_retry",
]
