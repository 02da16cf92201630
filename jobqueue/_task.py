"""One task: a function under a stable name, its arguments bound and checked at enqueue and
again for each job, and the engine handler that calls it (see `jobqueue.tasks`).

`jobqueue.queue` depends on this module, so this one depends on no queue: what a task needs of
a queue and of a job is described by the `TaskQueue` and `TaskJob` protocols.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, cast

from .config import MAX_PRIORITY
from .core._aio import is_async_callable
from .errors import ConfigError, InvalidJobError

__all__ = [
    "Task",
    "TaskHandler",
    "TaskJob",
    "TaskQueue",
    "check_attempts",
    "check_name",
    "check_priority",
    "default_task_name",
]

P = ParamSpec("P")
R = TypeVar("R")
J = TypeVar("J")
J_co = TypeVar("J_co", covariant=True)

_OPTIONS = ("job_id", "delay", "priority", "attempts")
_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


class TaskQueue(Protocol[J_co]):
    """What tasks need of a queue (`jobqueue.Queue` is one): its name and `add`."""

    @property
    def name(self) -> str:
        """The queue name."""
        ...

    async def add(
        self,
        name: str,
        data: Any = None,
        *,
        job_id: str | None = None,
        delay: float = 0.0,
        priority: int = 0,
        attempts: int | None = None,
    ) -> J_co:
        """Add one job; validates everything before writing (see `Queue.add`)."""
        ...


class TaskJob(Protocol):
    """What a task's handler reads of a job (`jobqueue.Job` is one)."""

    @property
    def id(self) -> str:
        """The job id."""
        ...

    @property
    def name(self) -> str:
        """The job name: the task's name."""
        ...

    @property
    def data(self) -> Any:
        """The job data: `{"args": [...], "kwargs": {...}}`."""
        ...


TaskHandler = Callable[[TaskJob], Any]
"""An engine handler that runs one task: a coroutine function for an `async def` task, a plain
function for a plain `def` task (the worker runs those off its event loop)."""


def default_task_name(fn: Callable[..., Any]) -> str:
    """The stable name of a function: `<module>.<qualname>`, e.g. `myapp.tasks.count_words`.

    A function defined in `__main__` is named after the module `python -m` ran (its
    `__spec__.name`), so `python -m myapp.tasks` and a worker importing `myapp.tasks` agree. A
    script run by path (`python myapp/tasks.py`) has no such name: its functions are
    `__main__.<qualname>`, which only that process knows; give them a `name=` if another
    process (a worker started with `python -m jobqueue worker`) must run them.

    Raises:
        ConfigError: the callable has no `__module__` / `__qualname__`, or is a lambda.
    """
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise ConfigError(f"{fn!r} has no __module__ and __qualname__: give the task a name=")
    if qualname.endswith("<lambda>"):
        raise ConfigError(f"a lambda has no stable name ({module}.{qualname}): give it a name=")
    if module == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if spec is not None and spec.name:
            module = spec.name
    return f"{module}.{qualname}"


def check_name(name: object) -> str:
    """`name` if it can name a task (1-200 printable characters), else ConfigError."""
    if not isinstance(name, str) or not 0 < len(name) <= 200 or not name.isprintable():
        raise ConfigError(f"task name {name!r} is invalid: use 1-200 printable characters")
    return name


def check_attempts(attempts: object) -> int | None:
    """`attempts` if None or an int >= 1, else ConfigError."""
    if attempts is not None and (
        isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
    ):
        raise ConfigError(f"attempts must be None or an int >= 1, got {attempts!r}")
    return attempts


def check_priority(priority: object) -> int:
    """`priority` if an int within the engine's range, else ConfigError."""
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not -MAX_PRIORITY <= priority <= MAX_PRIORITY
    ):
        raise ConfigError(f"priority must be an int within +-{MAX_PRIORITY}, got {priority!r}")
    return priority


def _shape(data: Any) -> str:
    """What a job's data looks like, without its values (they may hold anything)."""
    if isinstance(data, dict):
        keys = sorted(str(k) for k in data)
        return f"an object with keys {keys[:5]}{'...' if len(keys) > 5 else ''}"
    return "null" if data is None else f"a JSON {type(data).__name__}"


class Task(Generic[P, R, J]):
    """A function registered on a queue under a stable name. Calling the task calls the
    function here and now; `enqueue` adds a job that a worker of its queue runs.

    Made by `@queue.task` (see `TaskRegistry.task`), not directly.

    Attributes:
        name: the job name of its jobs (`<module>.<qualname>` unless given).
        fn: the function.
        queue: the queue its jobs go to.
        attempts: default attempts of its jobs (None: the queue's `attempts`).
        priority: default priority of its jobs.
        signature: the function's signature, which arguments are bound to.
        handler: the engine handler that runs it for a job (see `TaskHandler`).
    """

    # copied from the function by functools.update_wrapper (help(), inspect.signature)
    __name__: str
    __qualname__: str
    __wrapped__: Callable[P, R]

    def __init__(
        self,
        fn: Callable[P, R],
        queue: TaskQueue[J],
        *,
        name: str,
        attempts: int | None,
        priority: int,
    ) -> None:
        # first, so that the function's own attributes cannot shadow the task's
        functools.update_wrapper(self, fn)
        try:
            self.signature = inspect.signature(fn)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"task {name!r}: cannot read the signature of {fn!r}: {exc}"
            ) from None
        self.fn = fn
        self.queue = queue
        self.name = name
        self.attempts = attempts
        self.priority = priority
        # for messages: annotations are noise there (and only strings under PEP 563)
        self._call_shape = str(
            self.signature.replace(
                parameters=[
                    p.replace(annotation=p.empty) for p in self.signature.parameters.values()
                ],
                return_annotation=inspect.Signature.empty,
            )
        )
        self._keyword_params = frozenset(
            p.name for p in self.signature.parameters.values() if p.kind in _KEYWORD_KINDS
        )
        self.handler: TaskHandler = self._make_handler()

    def __repr__(self) -> str:
        return f"<Task {self.name!r} of queue {self.queue.name!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function directly (no job)."""
        return self.fn(*args, **kwargs)

    @property
    def is_async(self) -> bool:
        """Whether the function is an `async def` (its handler then is one too)."""
        return is_async_callable(self.fn)

    async def enqueue(
        self,
        *args: Any,
        job_id: str | None = None,
        delay: float | None = None,
        priority: int | None = None,
        attempts: int | None = None,
        **kwargs: Any,
    ) -> J:
        """Add a job that calls the function with these arguments.

        Args:
            *args: the function's positional arguments (JSON values).
            job_id: your own id, for deduplication (see `Queue.add`).
            delay: seconds before the job may start (default 0).
            priority: higher is taken first (default: the task's).
            attempts: total attempts (default: the task's, else the queue's).
            **kwargs: the function's keyword arguments (JSON values). A function whose own
                parameters are named like these options takes them through `enqueue_call`.

        Returns:
            The job (an existing one when `job_id` was already used).

        Raises:
            InvalidJobError: the arguments do not bind to the function's signature, are not
                JSON, or an option is invalid; `PayloadTooLargeError` when they are too large.
                Nothing is written then.
        """
        given = dict(zip(_OPTIONS, (job_id, delay, priority, attempts), strict=True))
        ambiguous = sorted(
            k for k, v in given.items() if v is not None and k in self._keyword_params
        )
        if ambiguous:
            raise InvalidJobError(
                f"task {self.name!r}: {', '.join(ambiguous)} is both an enqueue() option and a "
                "parameter of the function; use enqueue_call(args, kwargs, ...) to say which"
            )
        return await self.enqueue_call(
            args, kwargs, job_id=job_id, delay=delay, priority=priority, attempts=attempts
        )

    async def enqueue_call(
        self,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        job_id: str | None = None,
        delay: float | None = None,
        priority: int | None = None,
        attempts: int | None = None,
    ) -> J:
        """Like `enqueue`, with the function's arguments apart from the job's options.

        Args:
            args: the function's positional arguments.
            kwargs: the function's keyword arguments.
            job_id: see `enqueue`.
            delay: see `enqueue`.
            priority: see `enqueue`.
            attempts: see `enqueue`.

        Returns:
            The job.

        Raises:
            InvalidJobError: as `enqueue` (nothing is written).
        """
        data = self.call_data(args, kwargs)
        try:
            return await self.queue.add(
                self.name,
                data,
                job_id=job_id,
                delay=0.0 if delay is None else delay,
                priority=self.priority if priority is None else priority,
                attempts=self.attempts if attempts is None else attempts,
            )
        except InvalidJobError as exc:
            # the queue's own checks (JSON, size, options), named after the task
            raise type(exc)(f"task {self.name!r}: {exc}") from None

    def call_data(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The job data of a call, `{"args": [...], "kwargs": {...}}`, once the arguments bind
        to the function's signature (JSON is checked by the queue when the job is added).

        Raises:
            InvalidJobError: `args` is not a sequence, `kwargs` not a mapping with str keys,
                or they do not bind to the signature.
        """
        if isinstance(args, str | bytes) or not isinstance(args, Sequence):
            raise InvalidJobError(f"task {self.name!r}: args must be a list or tuple, got {args!r}")
        kwargs = {} if kwargs is None else kwargs
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
            raise InvalidJobError(
                f"task {self.name!r}: kwargs must be a mapping with str keys, got {kwargs!r}"
            )
        self._bind(args, kwargs, "")
        return {"args": list(args), "kwargs": dict(kwargs)}

    def _bind(self, args: Sequence[Any], kwargs: Mapping[str, Any], where: str) -> None:
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidJobError(
                f"task {self.name!r}{where}: arguments do not match {self._call_shape}: {exc}"
            ) from None

    def arguments(self, job: TaskJob) -> tuple[list[Any], dict[str, Any]]:
        """The positional and keyword arguments a job holds, checked as at enqueue.

        Raises:
            InvalidJobError: the data is not `{"args": [...], "kwargs": {...}}`, or does not
                bind to the function's signature (the job then fails without retry).
        """
        data = job.data
        where = f" (job {job.id} on queue {self.queue.name!r})"
        if not (
            isinstance(data, dict)
            and data.keys() == {"args", "kwargs"}
            and isinstance(data["args"], list)
            and isinstance(data["kwargs"], dict)
        ):
            raise InvalidJobError(
                f"task {self.name!r}{where}: job data must be "
                f'{{"args": [...], "kwargs": {{...}}}}, got {_shape(data)}'
            )
        self._bind(data["args"], data["kwargs"], where)
        return data["args"], data["kwargs"]

    def _make_handler(self) -> TaskHandler:
        # sync for a sync function and async for an async one: the worker runs a plain
        # handler off its event loop, so a blocking task cannot stall the other jobs
        fn: Callable[..., Any] = self.fn
        if self.is_async:

            async def run_async(job: TaskJob) -> Any:
                args, kwargs = self.arguments(job)
                return await cast(Callable[..., Awaitable[Any]], fn)(*args, **kwargs)

            handler: TaskHandler = run_async
        else:

            def run_sync(job: TaskJob) -> Any:
                args, kwargs = self.arguments(job)
                return fn(*args, **kwargs)

            handler = run_sync
        handler.__qualname__ = handler.__name__ = f"task:{self.name}"
        return handler
